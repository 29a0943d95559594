/* SPDX-License-Identifier: MIT */
#include "coalesce.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void range_set_init(struct range_set *s, size_t max_ranges)
{
	memset(s, 0, sizeof(*s));
	s->max = max_ranges ? max_ranges : 1024;
}

void range_set_free(struct range_set *s)
{
	free(s->r);
	memset(s, 0, sizeof(*s));
}

void range_set_clear(struct range_set *s)
{
	s->n = 0;
	s->all = false;
}

void range_set_add_all(struct range_set *s)
{
	s->all = true;
	s->n = 0;
}

void range_set_take(struct range_set *to, struct range_set *from)
{
	struct range *r = to->r;
	size_t cap = to->cap;

	to->r = from->r;
	to->cap = from->cap;
	to->n = from->n;
	to->all = from->all;
	from->r = r;
	from->cap = cap;
	from->n = 0;
	from->all = false;
}

/* First index whose range ends at or after `first - 1` (could touch it). */
static size_t lower_touching(const struct range_set *s, uint64_t first)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->r[mid].last != UINT64_MAX && s->r[mid].last + 1 < first)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool range_set_overlaps(const struct range_set *s, uint64_t first, uint64_t last)
{
	if (s->all)
		return true;
	size_t i = lower_touching(s, first);
	if (i < s->n && s->r[i].last < first)
		i++; /* it ends at first - 1: the next one ends at or after first */
	return i < s->n && s->r[i].first <= last;
}

int range_set_add(struct range_set *s, uint64_t first, uint64_t last)
{
	if (s->all)
		return 0;
	size_t i = lower_touching(s, first);
	size_t j = i;
	/* Absorb every range that overlaps or touches [first, last]. */
	while (j < s->n && (last == UINT64_MAX || s->r[j].first <= last + 1)) {
		if (s->r[j].first < first)
			first = s->r[j].first;
		if (s->r[j].last > last)
			last = s->r[j].last;
		j++;
	}
	if (j > i) {
		s->r[i].first = first;
		s->r[i].last = last;
		memmove(&s->r[i + 1], &s->r[j], (s->n - j) * sizeof(*s->r));
		s->n -= j - i - 1;
		return 0;
	}
	if (s->n >= s->max) {
		/* Full: widen the nearer neighbour to swallow the new range. */
		size_t k;
		if (i == 0)
			k = 0;
		else if (i == s->n)
			k = s->n - 1;
		else
			k = (first - s->r[i - 1].last) <= (s->r[i].first - last) ? i - 1 : i;
		s->forced_merges++;
		uint64_t f = first < s->r[k].first ? first : s->r[k].first;
		uint64_t l = last > s->r[k].last ? last : s->r[k].last;
		/* Remove k, then re-add the union (it may now touch another range). */
		memmove(&s->r[k], &s->r[k + 1], (s->n - k - 1) * sizeof(*s->r));
		s->n--;
		return range_set_add(s, f, l);
	}
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		struct range *p = realloc(s->r, ncap * sizeof(*p));
		if (!p) {
			range_set_add_all(s);
			return -ENOMEM;
		}
		s->r = p;
		s->cap = ncap;
	}
	memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(*s->r));
	s->r[i].first = first;
	s->r[i].last = last;
	s->n++;
	return 0;
}

void range_set_remove(struct range_set *s, uint64_t first, uint64_t last)
{
	if (s->all)
		return; /* "everything" minus a range is not representable: keep it */
	size_t i = lower_touching(s, first);
	while (i < s->n && s->r[i].first <= last) {
		struct range *r = &s->r[i];
		if (r->last < first) {
			i++;
			continue;
		}
		bool left = r->first < first, right = r->last > last;
		if (left && right) {
			/* Split in two; without room keep it whole (a span left in a
			 * retry set is only retried once more, never lost). */
			if (s->n >= s->max)
				return;
			if (s->n == s->cap) {
				size_t ncap = s->cap ? s->cap * 2 : 16;
				struct range *p = realloc(s->r, ncap * sizeof(*p));
				if (!p)
					return;
				s->r = p;
				s->cap = ncap;
				r = &s->r[i];
			}
			memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(*s->r));
			s->n++;
			s->r[i].last = first - 1;
			s->r[i + 1].first = last + 1;
			return;
		}
		if (left) {
			r->last = first - 1;
			i++;
		} else if (right) {
			r->first = last + 1;
			return;
		} else {
			memmove(&s->r[i], &s->r[i + 1], (s->n - i - 1) * sizeof(*s->r));
			s->n--;
		}
	}
}

int range_set_split_at(struct range_set *s, uint64_t addr)
{
	if (s->all || !addr)
		return 0;
	size_t i = lower_touching(s, addr);
	while (i < s->n && s->r[i].last < addr)
		i++;
	if (i == s->n || s->r[i].first >= addr)
		return 0; /* no range straddles addr */
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		struct range *p = realloc(s->r, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		s->r = p;
		s->cap = ncap;
	}
	memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(*s->r));
	s->n++;
	s->r[i].last = addr - 1;
	s->r[i + 1].first = addr;
	return 0;
}
