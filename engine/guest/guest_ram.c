/* SPDX-License-Identifier: MIT */
/* Guest RAM map: an immutable sorted region array, published under RCU. */
#include "guest_ram.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rcu.h"

struct region_set {
	struct rcu_head rcu;
	uint64_t gen; /* unique in the process, never 0: names this set in tl_find */
	uint32_t n;
	struct guest_ram_region r[]; /* sorted by gpa, disjoint */
};

struct guest_ram {
	struct region_set *cur; /* RCU; never NULL */
	pthread_mutex_t lock;   /* serialises writers */
	uint32_t next_id;
};

static size_t set_bytes(uint32_t n)
{
	return sizeof(struct region_set) + (size_t)n * sizeof(struct guest_ram_region);
}

/* Set generations: every set ever allocated, of any map, gets the next. */
static uint64_t g_set_gen;

static struct region_set *set_alloc(uint32_t n)
{
	struct region_set *s = iovt_zalloc(0, set_bytes(n));
	if (s) {
		s->n = n;
		s->gen = __atomic_add_fetch(&g_set_gen, 1, __ATOMIC_RELAXED);
	}
	return s;
}

static void set_free(struct region_set *s)
{
	iovt_free(0, s, set_bytes(s->n));
}

static void set_free_rcu(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	set_free(caa_container_of(h, struct region_set, rcu));
}

struct guest_ram *guest_ram_create(void)
{
	struct guest_ram *ram = iovt_zalloc(0, sizeof(*ram));
	if (!ram)
		return NULL;
	ram->cur = set_alloc(0);
	if (!ram->cur) {
		iovt_free(0, ram, sizeof(*ram));
		return NULL;
	}
	pthread_mutex_init(&ram->lock, NULL);
	ram->next_id = 1; /* 0 stays free as "no region" for callers */
	return ram;
}

void guest_ram_destroy(struct guest_ram *ram)
{
	if (!ram)
		return;
	set_free(ram->cur);
	pthread_mutex_destroy(&ram->lock);
	iovt_free(0, ram, sizeof(*ram));
}

/* Index of the last region with gpa <= addr, or -1. */
static long set_search(const struct region_set *s, uint64_t addr)
{
	long lo = 0, hi = (long)s->n - 1, ans = -1;
	while (lo <= hi) {
		long mid = lo + (hi - lo) / 2;
		if (s->r[mid].gpa <= addr) {
			ans = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return ans;
}

/* Publishes `next` and retires the current set after a grace period. */
static void publish(struct guest_ram *ram, struct region_set *next)
{
	struct region_set *old = ram->cur;
	iovt_rcu_assign(ram->cur, next);
	iovt_call_rcu(&old->rcu, set_free_rcu);
}

/*
 * A new region's id: what an extent records of its region, 24 bits in the
 * shadow tree's record (GUEST_RAM_ID_LIMIT). Ids wrap past the limit,
 * skipping those still in the map: a removed region's extents are purged
 * and its IOTLB entries dropped before its removal returns (and a refused
 * removal puts it back under the same engine lock, before any add), so no
 * record names an id that has left the map. Ids only grew before: after
 * 2^24 adds (RAM plug churn), every mapping into new RAM was refused by the
 * tree, uncounted, and devices faulted there (found by review).
 */
static uint32_t new_id(struct guest_ram *ram, const struct region_set *s)
{
	for (;;) {
		uint32_t id = ram->next_id++;
		if (ram->next_id >= GUEST_RAM_ID_LIMIT)
			ram->next_id = 1;
		bool used = false;
		for (uint32_t k = 0; k < s->n && !used; k++)
			used = s->r[k].id == id;
		if (!used)
			return id; /* at most GUEST_RAM_MAX_REGIONS ids are in use */
	}
}

uint32_t guest_ram_test_next_id(struct guest_ram *ram, uint32_t next)
{
	uint32_t old = ram->next_id;
	ram->next_id = next;
	return old;
}

/* Publishes a copy of the array with r inserted (r->id 0: a new id). Writer lock. */
static int insert_locked(struct guest_ram *ram, struct guest_ram_region r, uint32_t *id_out)
{
	struct region_set *s = ram->cur;
	long i = set_search(s, r.gpa + r.size - 1);
	if (i >= 0 && s->r[i].gpa + (s->r[i].size - 1) >= r.gpa)
		return -EEXIST;
	if (s->n >= GUEST_RAM_MAX_REGIONS)
		return -ENOSPC;
	struct region_set *n = set_alloc(s->n + 1);
	if (!n)
		return -ENOMEM;
	if (!r.id)
		r.id = new_id(ram, s);
	size_t at = (size_t)(i + 1);
	memcpy(n->r, s->r, at * sizeof(n->r[0]));
	n->r[at] = r;
	memcpy(n->r + at + 1, s->r + at, (s->n - at) * sizeof(n->r[0]));
	if (id_out)
		*id_out = r.id;
	publish(ram, n);
	return 0;
}

int guest_ram_add(struct guest_ram *ram, uint64_t gpa, uint64_t size, void *hva, uint32_t *id_out)
{
	/* The host address too: a table is read through it with 8-byte loads
	 * and every MAP passes it on, so NULL, an address off a page boundary
	 * (misaligned loads; a VFIO sink refuses every such MAP, forever) or a
	 * range past the top of the address space is refused here, not met by
	 * the first walk (a NULL one crashed it; found by review). */
	const uint64_t h = (uint64_t)(uintptr_t)hva;
	if (!size || (gpa | size) & 0xfff || gpa + size - 1 < gpa || !h || h & 0xfff ||
	    h + size - 1 < h)
		return -EINVAL;
	/* gpa + size == 0 (a region ending exactly at 2^64) is allowed. */
	pthread_mutex_lock(&ram->lock);
	int rc = insert_locked(ram, (struct guest_ram_region){ gpa, size, (uint64_t)(uintptr_t)hva, 0 },
			       id_out);
	pthread_mutex_unlock(&ram->lock);
	return rc;
}

int guest_ram_remove(struct guest_ram *ram, uint64_t gpa)
{
	return guest_ram_take(ram, gpa, NULL);
}

int guest_ram_restore(struct guest_ram *ram, const struct guest_ram_region *r)
{
	pthread_mutex_lock(&ram->lock);
	int rc = insert_locked(ram, *r, NULL); /* the same id: extents recorded with it stay valid */
	pthread_mutex_unlock(&ram->lock);
	return rc;
}

int guest_ram_take(struct guest_ram *ram, uint64_t gpa, struct guest_ram_region *removed)
{
	pthread_mutex_lock(&ram->lock);
	struct region_set *s = ram->cur;
	int rc = 0;
	long i = set_search(s, gpa);
	if (i < 0 || s->r[i].gpa != gpa) {
		rc = -ENOENT;
		goto out;
	}
	struct region_set *n = set_alloc(s->n - 1);
	if (!n) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(n->r, s->r, (size_t)i * sizeof(n->r[0]));
	memcpy(n->r + i, s->r + i + 1, (s->n - (size_t)i - 1) * sizeof(n->r[0]));
	if (removed)
		*removed = s->r[i];
	publish(ram, n);
out:
	pthread_mutex_unlock(&ram->lock);
	return rc;
}

/*
 * The two regions this thread found last, and the generation of the set
 * they were copied from. A walk looks up two regions, its tables' and its
 * data's (guestsim and most VMMs keep them apart), walk after walk: the
 * search and the copy were ~48 instructions a lookup, two a walk (callgrind,
 * perm-churn), and an IOTLB miss pays both. A set is immutable and its
 * generation unique (a freed set's address may come back, its generation
 * never does), so an entry with the current set's generation is that set's
 * own region: no invalidation is needed, a new set simply misses. Regions
 * of size 0 (a fresh thread's) hold no gpa. Initial-exec, as every
 * thread-local of the library.
 */
static __thread struct {
	uint64_t gen;
	struct guest_ram_region r[2]; /* r[0] the most recent */
} tl_find;

static __attribute__((noinline)) bool find_slow(const struct region_set *s, uint64_t gpa,
						 struct guest_ram_region *out)
{
	long i = set_search(s, gpa);
	if (i < 0 || gpa - s->r[i].gpa >= s->r[i].size)
		return false;
	*out = s->r[i];
	if (tl_find.gen != s->gen) {
		tl_find.gen = s->gen;
		tl_find.r[1].size = 0;
	} else {
		tl_find.r[1] = tl_find.r[0];
	}
	tl_find.r[0] = s->r[i];
	return true;
}

bool guest_ram_find(const struct guest_ram *ram, uint64_t gpa, struct guest_ram_region *out)
{
	const struct region_set *s = iovt_rcu_dereference(((struct guest_ram *)ram)->cur);
	if (tl_find.gen == s->gen) {
		for (unsigned k = 0; k < 2; k++) {
			if (gpa - tl_find.r[k].gpa < tl_find.r[k].size) {
				*out = tl_find.r[k];
				return true;
			}
		}
	}
	return find_slow(s, gpa, out);
}

bool guest_ram_find_next(const struct guest_ram *ram, uint64_t gpa, struct guest_ram_region *out)
{
	const struct region_set *s = iovt_rcu_dereference(((struct guest_ram *)ram)->cur);
	long i = set_search(s, gpa);
	if (i >= 0 && gpa - s->r[i].gpa < s->r[i].size) {
		*out = s->r[i];
		return true;
	}
	if ((size_t)(i + 1) >= s->n)
		return false;
	*out = s->r[i + 1];
	return true;
}

int guest_ram_read_u64(const struct guest_ram *ram, uint64_t gpa, uint64_t *val)
{
	struct guest_ram_region r;
	if (gpa & 7)
		return -EINVAL;
	if (!guest_ram_find(ram, gpa, &r))
		return -EFAULT;
	const uint64_t *p = (const uint64_t *)(uintptr_t)(r.hva + (gpa - r.gpa));
	*val = __atomic_load_n(p, __ATOMIC_RELAXED);
	return 0;
}
