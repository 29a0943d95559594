/* SPDX-License-Identifier: MIT */
/*
 * Trace replay: parses a recorded guest trace once (replay_load), then
 * replays it into a fresh world per side (engine, baseline) like a scenario.
 *
 * Guest edits (map/unmap) are held per domain until the first invalidation
 * that covers them (a PSI overlapping them, a DSI of their domain, a global)
 * and written into the simulated guest table just before it: what was never
 * invalidated never reaches the world, so the judges (which compare the sink
 * with the guest truth over every range edited since the last fence) only
 * judge what the guest told the IOMMU about. A trace recorded on several
 * CPUs, or from a lazy-mode guest, interleaves edits of one CPU with another
 * CPU's waits; applied eagerly, those edits would look like sink errors.
 * A PSI covering part of an edit applies that part (splitting it at the
 * PSI's aligned block) and keeps the rest pending.
 */
#define _POSIX_C_SOURCE 200809L

#include "replay.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "world.h"

#define K 0x1000ull
#define MAX_DOMS 64u
#define MAX_REPORTED 10ul

enum ev_kind { EV_MAP, EV_UNMAP, EV_PSI, EV_DSI, EV_GLOBAL, EV_WAIT };

struct ev {
	uint8_t kind, dom, perm, am; /* perm: map; am: psi */
	bool ih;
	uint64_t a, b, c;            /* map: iova gpa size; unmap: iova - size; psi: addr */
};

static struct {
	struct ev *ev;
	size_t n, cap;
	uint16_t did[MAX_DOMS]; /* trace DID of each world domain index */
	unsigned ndoms;
	unsigned long malformed, lines;
	char name[256], what[512];
	struct scenario table[2];
	bool loaded;
} T;

/* ---- parsing ---- */

static void bad_line(unsigned long line, const char *why, const char *text)
{
	if (T.malformed++ < MAX_REPORTED)
		fprintf(stderr, "replay: line %lu: malformed (%s): %.80s\n", line, why, text);
}

static bool hexnum(const char *s, uint64_t *v)
{
	if (!s || !isxdigit((unsigned char)s[0]))
		return false;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 16);
	if (errno || *end || end == s)
		return false;
	*v = x;
	return true;
}

static bool did_index(uint64_t did, uint8_t *out)
{
	if (did > 0xffff)
		return false;
	for (unsigned i = 0; i < T.ndoms; i++)
		if (T.did[i] == did) {
			*out = (uint8_t)i;
			return true;
		}
	if (T.ndoms == MAX_DOMS)
		return false;
	T.did[T.ndoms] = (uint16_t)did;
	*out = (uint8_t)T.ndoms++;
	return true;
}

static bool push(const struct ev *e)
{
	if (T.n == T.cap) {
		size_t cap = T.cap ? T.cap * 2 : 1024;
		struct ev *p = realloc(T.ev, cap * sizeof(*p));
		if (!p)
			return false;
		T.ev = p;
		T.cap = cap;
	}
	T.ev[T.n++] = *e;
	return true;
}

/* A range [a, a+size) of 4 KiB pages that does not wrap. */
static bool page_range(uint64_t a, uint64_t size)
{
	return size && !(a & (K - 1)) && !(size & (K - 1)) && a + (size - 1) >= a;
}

/* Parses one line (comment already cut). Returns 0, 1 (blank), or -1 (bad; *why set). */
static int parse_line(char *s, struct ev *e, const char **why)
{
	char *tok[8], *save = NULL;
	int n = 0;
	for (char *t = strtok_r(s, " \t\r\n\v\f", &save); t; t = strtok_r(NULL, " \t\r\n\v\f", &save)) {
		if (n == 8) {
			*why = "too many fields";
			return -1;
		}
		tok[n++] = t;
	}
	if (!n)
		return 1;
	uint64_t v[5];
	memset(e, 0, sizeof(*e));
	*why = "bad number";
#define NUMS(count)                                              \
	do {                                                     \
		if (n != (count) + 1) {                          \
			*why = "wrong number of fields";         \
			return -1;                               \
		}                                                \
		for (int i_ = 0; i_ < (count); i_++)             \
			if (!hexnum(tok[i_ + 1], &v[i_]))        \
				return -1;                       \
	} while (0)
	if (!strcmp(tok[0], "map")) {
		if (n != 6) {
			*why = "wrong number of fields";
			return -1;
		}
		for (int i = 0; i < 4; i++)
			if (!hexnum(tok[i + 1], &v[i]))
				return -1;
		const char *p = tok[5];
		if (!strcmp(p, "r"))
			e->perm = IOVT_PERM_R;
		else if (!strcmp(p, "w"))
			e->perm = IOVT_PERM_W;
		else if (!strcmp(p, "rw") || !strcmp(p, "wr"))
			e->perm = IOVT_PERM_RW;
		else {
			*why = "perm is not r, w or rw";
			return -1;
		}
		if (!page_range(v[1], v[3]) || !page_range(v[2], v[3])) {
			*why = "iova, gpa or size not 4 KiB aligned, empty or wrapping";
			return -1;
		}
		e->kind = EV_MAP;
		e->a = v[1], e->b = v[2], e->c = v[3];
	} else if (!strcmp(tok[0], "unmap")) {
		NUMS(3);
		if (!page_range(v[1], v[2])) {
			*why = "iova or size not 4 KiB aligned, empty or wrapping";
			return -1;
		}
		e->kind = EV_UNMAP;
		e->a = v[1], e->c = v[2];
	} else if (!strcmp(tok[0], "psi")) {
		NUMS(4);
		if (v[2] > 63 || v[3] > 1) {
			*why = "am above 63 or ih not 0/1";
			return -1;
		}
		e->kind = EV_PSI;
		e->a = v[1], e->am = (uint8_t)v[2], e->ih = v[3];
	} else if (!strcmp(tok[0], "dsi")) {
		NUMS(1);
		e->kind = EV_DSI;
	} else if (!strcmp(tok[0], "global")) {
		NUMS(0);
		e->kind = EV_GLOBAL;
		return 0;
	} else if (!strcmp(tok[0], "wait")) {
		NUMS(0);
		e->kind = EV_WAIT;
		return 0;
	} else {
		*why = "unknown event";
		return -1;
	}
#undef NUMS
	if (v[0] > 0xffff) {
		*why = "domain id above 0xffff";
		return -1;
	}
	if (!did_index(v[0], &e->dom)) {
		*why = "more than 64 domains";
		return -1;
	}
	return 0;
}

/* Opens path, or a `gzip -dc` pipe for ".gz" (*pid set). */
static FILE *open_trace(const char *path, pid_t *pid)
{
	size_t len = strlen(path);
	*pid = 0;
	if (len < 3 || strcmp(path + len - 3, ".gz"))
		return fopen(path, "r");
	if (access(path, R_OK))
		return NULL;
	int fd[2];
	if (pipe(fd))
		return NULL;
	pid_t p = fork();
	if (p < 0) {
		close(fd[0]);
		close(fd[1]);
		return NULL;
	}
	if (!p) {
		dup2(fd[1], STDOUT_FILENO);
		close(fd[0]);
		close(fd[1]);
		execlp("gzip", "gzip", "-dc", "--", path, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	FILE *f = fdopen(fd[0], "r");
	if (!f) {
		close(fd[0]);
		waitpid(p, NULL, 0);
		return NULL;
	}
	*pid = p;
	return f;
}

static void set_name(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	char tmp[200];
	snprintf(tmp, sizeof(tmp), "%s", base);
	size_t l = strlen(tmp);
	if (l > 3 && !strcmp(tmp + l - 3, ".gz"))
		tmp[l -= 3] = 0;
	if (l > 6 && !strcmp(tmp + l - 6, ".trace"))
		tmp[l -= 6] = 0;
	snprintf(T.name, sizeof(T.name), "replay:%s", tmp);
}

static int run_replay(double scale, bool baseline, struct side_result *out);

int replay_load(const char *path)
{
	replay_free();
	pid_t pid;
	FILE *f = open_trace(path, &pid);
	if (!f) {
		int err = errno ? errno : EIO;
		fprintf(stderr, "replay: %s: %s\n", path, strerror(err));
		return -err;
	}
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	while (getline(&line, &cap, f) >= 0) {
		T.lines++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char copy[96];
		snprintf(copy, sizeof(copy), "%s", line);
		copy[strcspn(copy, "\r\n")] = 0;
		struct ev e;
		const char *why = NULL;
		int r = parse_line(line, &e, &why);
		if (r < 0)
			bad_line(T.lines, why, copy);
		else if (!r && !push(&e)) {
			rc = -ENOMEM;
			break;
		}
	}
	free(line);
	if (ferror(f) && !rc)
		rc = -EIO;
	fclose(f);
	if (pid) {
		int status = 0;
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "replay: %s: gzip -dc failed (exit %d)%s\n", path,
				WIFEXITED(status) ? WEXITSTATUS(status) : -1,
				T.lines ? "; replaying what it gave" : "");
			if (!T.lines && !rc)
				rc = -EIO;
		}
	}
	if (rc) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(-rc));
		replay_free();
		return rc;
	}
	if (T.malformed)
		fprintf(stderr, "replay: %s: %lu malformed line%s skipped\n", path, T.malformed,
			T.malformed == 1 ? "" : "s");
	set_name(path);
	snprintf(T.what, sizeof(T.what), "trace %s: %zu events, %u domain%s", path, T.n,
		 T.ndoms ? T.ndoms : 1, T.ndoms > 1 ? "s" : "");
	T.table[0] = (struct scenario){ T.name, T.what, run_replay };
	memset(&T.table[1], 0, sizeof(T.table[1]));
	T.loaded = true;
	return 0;
}

const struct scenario *replay_scenarios(void)
{
	return T.loaded ? T.table : NULL;
}

unsigned long replay_malformed(void)
{
	return T.malformed;
}

void replay_free(void)
{
	free(T.ev);
	memset(&T, 0, sizeof(T));
}

/* ---- replay ---- */

struct pend {
	uint8_t kind, perm;
	uint64_t first, last, gpa; /* inclusive IOVA range; map: gpa of first */
};

struct pvec {
	struct pend *p;
	size_t n, cap;
};

struct rstate {
	struct world *w;
	struct pvec pend[MAX_DOMS], scratch;
	uint64_t fold_base, fold_mask; /* trace gpa -> fold_base + (gpa & fold_mask) */
	uint64_t edits_failed;
	bool since_wait;
};

static void pv_push(struct pvec *v, const struct pend *p)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 64;
		v->p = realloc(v->p, v->cap * sizeof(*v->p));
		if (!v->p)
			abort();
	}
	v->p[v->n++] = *p;
}

static void apply(struct rstate *s, unsigned dom, const struct pend *p, uint64_t lo, uint64_t hi)
{
	int rc;
	if (p->kind == EV_MAP)
		rc = world_map(s->w, dom, lo, p->gpa + (lo - p->first), hi - lo + 1, p->perm, 0);
	else
		rc = world_unmap(s->w, dom, lo, hi - lo + 1);
	if (rc && s->edits_failed++ < MAX_REPORTED)
		fprintf(stderr, "replay: %s [0x%" PRIx64 ", 0x%" PRIx64 "] in domain %u failed (%d)\n",
			p->kind == EV_MAP ? "map" : "unmap", lo, hi, T.did[dom], rc);
}

/* Applies the parts of dom's pending edits inside [lo, hi], in order. */
static void flush(struct rstate *s, unsigned dom, uint64_t lo, uint64_t hi)
{
	struct pvec *v = &s->pend[dom];
	size_t i = 0;
	while (i < v->n && (v->p[i].last < lo || v->p[i].first > hi))
		i++;
	if (i == v->n)
		return;
	struct pvec *o = &s->scratch;
	o->n = 0;
	for (size_t k = 0; k < v->n; k++) {
		struct pend p = v->p[k];
		if (p.last < lo || p.first > hi) {
			pv_push(o, &p);
			continue;
		}
		uint64_t a = p.first > lo ? p.first : lo, b = p.last < hi ? p.last : hi;
		apply(s, dom, &p, a, b);
		if (p.first < a) {
			struct pend left = p;
			left.last = a - 1;
			pv_push(o, &left);
		}
		if (p.last > b) {
			struct pend right = p;
			right.first = b + 1;
			right.gpa = p.gpa + (right.first - p.first);
			pv_push(o, &right);
		}
	}
	struct pvec t = *v;
	*v = *o;
	*o = t;
}

static void hold(struct rstate *s, unsigned dom, uint8_t kind, uint64_t iova, uint64_t size,
		 uint64_t gpa, uint8_t perm)
{
	struct pend p = { kind, perm, iova, iova + size - 1, gpa };
	pv_push(&s->pend[dom], &p);
}

/* A trace map, its GPAs folded into region 1, split where the fold wraps
 * (the fold is a power of two >= 1 GiB, so 2 MiB and 1 GiB alignment stay). */
static void hold_map(struct rstate *s, const struct ev *e)
{
	uint64_t iova = e->a, gpa = e->b, size = e->c;
	while (size) {
		uint64_t off = gpa & s->fold_mask, len = s->fold_mask + 1 - off;
		if (len > size)
			len = size;
		hold(s, e->dom, EV_MAP, iova, len, s->fold_base + off, e->perm);
		iova += len, gpa += len, size -= len;
	}
}

static int run_replay(double scale, bool baseline, struct side_result *out)
{
	(void)scale;
	struct world_config cfg = {
		.baseline = baseline,
		.domains = T.ndoms ? T.ndoms : 1, .addr_width = 48, .allow_2m = true,
		.allow_1g = true, .regions = 2, .region_size = 1ull << 30,
		.flavor = IOVT_MODEL_TYPE1, .multi_unmap = true, .max_mappings = 65535,
		.unmap_cost_ns = 14000, .judge = true,
	};
	struct rstate *s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	if (world_create(&cfg, &s->w)) {
		free(s);
		return -1;
	}
	uint64_t rgpa, rsize, data = world_region_data_size(s->w, 1);
	world_region(s->w, 1, &rgpa, &rsize);
	uint64_t fold = 1ull << 30;
	while (fold * 2 <= data && fold < (1ull << 62))
		fold *= 2;
	s->fold_base = rgpa;
	s->fold_mask = fold - 1;

	for (size_t i = 0; i < T.n; i++) {
		const struct ev *e = &T.ev[i];
		switch (e->kind) {
		case EV_MAP:
			hold_map(s, e);
			break;
		case EV_UNMAP:
			hold(s, e->dom, EV_UNMAP, e->a, e->c, 0, 0);
			break;
		case EV_PSI: {
			uint64_t span = e->am >= 52 ? ~0ull : (K << e->am) - 1;
			uint64_t lo = e->a & ~span;
			flush(s, e->dom, lo, lo + span < lo ? ~0ull : lo + span);
			world_psi(s->w, e->dom, e->a, e->am, e->ih);
			s->since_wait = true;
			break;
		}
		case EV_DSI:
			flush(s, e->dom, 0, ~0ull);
			world_dsi(s->w, e->dom);
			s->since_wait = true;
			break;
		case EV_GLOBAL:
			for (unsigned d = 0; d < cfg.domains; d++)
				flush(s, d, 0, ~0ull);
			world_global(s->w);
			s->since_wait = true;
			break;
		case EV_WAIT:
			world_fence(s->w);
			s->since_wait = false;
			break;
		}
	}
	/* A trace cut after an invalidation but before its wait: finish it. */
	if (s->since_wait)
		world_fence(s->w);
	uint64_t never = 0;
	for (unsigned d = 0; d < MAX_DOMS; d++) {
		never += s->pend[d].n;
		free(s->pend[d].p);
	}
	free(s->scratch.p);
	if (never)
		fprintf(stderr, "replay %s: %" PRIu64 " guest edit%s never invalidated (not replayed)\n",
			baseline ? "baseline" : "engine", never, never == 1 ? "" : "s");
	if (s->edits_failed)
		fprintf(stderr, "replay %s: %" PRIu64 " guest edits failed\n",
			baseline ? "baseline" : "engine", s->edits_failed);
	int bad = scenario_finish(s->w, out);
	free(s);
	return bad;
}
