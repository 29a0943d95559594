/* SPDX-License-Identifier: MIT */
/*
 * iovt-tree-bench: the shadow tree's memory and speed at 1M extents.
 *   bytes/extent   dense 4 KiB extents (contiguous IOVAs) and 1M scattered
 *                  randomly over 48 bits (tree accounting, and RSS growth)
 *   translate      random hits vs a plain uint64 array indexed by page
 *                  number over the same pages and the same index sequence;
 *                  also a dependent-load chain (each result names the next)
 *   insert/remove  ascending and shuffled
 * Usage: iovt-tree-bench [--json FILE] [--n EXTENTS]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/rcu.h"
#include "tree/shadow_tree.h"

#define K4 0x1000ull
#define BASE (3ull << 40) /* away from 0, inside 48 bits */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rs = 0x1234567887654321ull;
static uint64_t rnd(void)
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return rs * 0x2545F4914F6CDD1Dull;
}

static void shuffle(uint64_t *v, size_t n)
{
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rnd() % (i + 1);
		uint64_t x = v[i];
		v[i] = v[j];
		v[j] = x;
	}
}

static uint64_t rss_bytes(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void die(const char *what)
{
	fprintf(stderr, "iovt-tree-bench: %s failed\n", what);
	exit(1);
}

static struct iovt_extent ext(uint64_t iova, uint64_t hva)
{
	struct iovt_extent e = { iova, K4, iova, hva, IOVT_PERM_RW, 1 };
	return e;
}

struct result { const char *name; double value; const char *unit; };
static struct result res[32];
static int nres;

static void report(const char *name, double v, const char *unit)
{
	res[nres++] = (struct result){ name, v, unit };
	printf("%-50s %10.2f %s\n", name, v, unit);
}

/* Inserts pages[i] for every i (in the given order); ns per insert. */
static double insert_all(struct shadow_tree *t, const uint64_t *iova, const uint64_t *hva, size_t n)
{
	double t0 = now();
	for (size_t i = 0; i < n; i++) {
		struct iovt_extent e = ext(iova[i], hva ? hva[i] : iova[i]);
		if (shadow_tree_insert(t, &e))
			die("insert");
	}
	return (now() - t0) * 1e9 / (double)n;
}

static double remove_all(struct shadow_tree *t, const uint64_t *iova, size_t n)
{
	double t0 = now();
	for (size_t i = 0; i < n; i++)
		if (shadow_tree_remove_range(t, iova[i], iova[i], NULL, NULL) != 1)
			die("remove");
	return (now() - t0) * 1e9 / (double)n;
}

int main(int argc, char **argv)
{
	const char *json = NULL;
	size_t n = 1u << 20;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--n") && i + 1 < argc)
			n = strtoull(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "usage: %s [--json FILE] [--n EXTENTS]\n", argv[0]);
			return 2;
		}
	}
	urcu_memb_register_thread();
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	printf("iovt-tree-bench: %zu extents, %ld cpus\n", n, ncpu);

	uint64_t *asc = malloc(n * 8), *shuf = malloc(n * 8), *next = malloc(n * 8);
	uint64_t *arr = malloc(n * 8);
	size_t nidx = 1u << 24;
	uint32_t *idx = malloc(nidx * 4);
	if (!asc || !shuf || !next || !arr || !idx)
		die("malloc");
	for (size_t i = 0; i < n; i++)
		asc[i] = shuf[i] = BASE + i * K4;
	shuffle(shuf, n);
	for (size_t i = 0; i < nidx; i++)
		idx[i] = (uint32_t)(rnd() % n);
	/* a single cycle through all pages: next[page] = following page */
	for (size_t i = 0; i < n; i++)
		next[(shuf[i] - BASE) / K4] = shuf[(i + 1) % n];

	/* ---- dense: memory, insert/remove ascending ---- */
	struct shadow_tree *t = shadow_tree_create(48);
	if (!t)
		die("create");
	uint64_t m0 = shadow_tree_memory_bytes(t), r0 = rss_bytes();
	report("insert ascending (ns/op)", insert_all(t, asc, next, n), "ns");
	uint64_t r1 = rss_bytes();
	report("dense 4K: bytes/extent (tree accounting)",
	       (double)(shadow_tree_memory_bytes(t) - m0) / (double)n, "B");
	report("dense 4K: bytes/extent (RSS growth)", (double)(r1 - r0) / (double)n, "B");

	/* ---- translate: random independent hits ---- */
	for (size_t i = 0; i < n; i++)
		arr[i] = next[i];
	uint64_t sink = 0;
	size_t reps = nidx;
	double t0 = now();
	for (size_t i = 0; i < reps; i++) {
		struct iovt_extent o;
		iovt_rcu_read_lock();
		bool h = shadow_tree_lookup(t, BASE + (uint64_t)idx[i] * K4, &o);
		iovt_rcu_read_unlock();
		sink += h ? o.hva : 0;
	}
	double tree_ns = (now() - t0) * 1e9 / (double)reps;
	t0 = now();
	for (size_t i = 0; i < reps; i++)
		sink += arr[idx[i]];
	double arr_ns = (now() - t0) * 1e9 / (double)reps;
	report("translate random hit, tree (ns/op)", tree_ns, "ns");
	report("translate random hit, u64 array (ns/op)", arr_ns, "ns");
	report("translate ratio tree/array", tree_ns / arr_ns, "x");

	/* ---- dependent chain: each lookup's result is the next address ---- */
	size_t steps = 1u << 22;
	uint64_t a = BASE;
	t0 = now();
	for (size_t i = 0; i < steps; i++) {
		struct iovt_extent o;
		iovt_rcu_read_lock();
		if (!shadow_tree_lookup(t, a, &o))
			die("chain lookup");
		iovt_rcu_read_unlock();
		a = o.hva;
	}
	double tree_dep = (now() - t0) * 1e9 / (double)steps;
	sink += a;
	a = BASE;
	t0 = now();
	for (size_t i = 0; i < steps; i++)
		a = arr[(a - BASE) / K4];
	double arr_dep = (now() - t0) * 1e9 / (double)steps;
	sink += a;
	report("translate dependent chain, tree (ns/op)", tree_dep, "ns");
	report("translate dependent chain, u64 array (ns/op)", arr_dep, "ns");
	report("translate dependent ratio tree/array", tree_dep / arr_dep, "x");

	report("remove ascending (ns/op)", remove_all(t, asc, n), "ns");
	if (shadow_tree_count(t) != 0)
		die("count");

	/* ---- shuffled insert/remove ---- */
	report("insert shuffled (ns/op)", insert_all(t, shuf, NULL, n), "ns");
	shuffle(shuf, n);
	report("remove shuffled (ns/op)", remove_all(t, shuf, n), "ns");
	shadow_tree_destroy(t);

	/* ---- scattered over 48 bits: the honest worst case for memory ---- */
	t = shadow_tree_create(48);
	if (!t)
		die("create");
	m0 = shadow_tree_memory_bytes(t);
	r0 = rss_bytes();
	t0 = now();
	for (size_t i = 0; i < n;) {
		struct iovt_extent e = ext((rnd() % (1ull << 36)) * K4, 0);
		if (shadow_tree_insert(t, &e) == 0)
			i++;
	}
	double ins_sc = (now() - t0) * 1e9 / (double)n;
	r1 = rss_bytes();
	report("scattered 48-bit: bytes/extent (tree accounting)",
	       (double)(shadow_tree_memory_bytes(t) - m0) / (double)n, "B");
	report("scattered 48-bit: bytes/extent (RSS growth)", (double)(r1 - r0) / (double)n, "B");
	report("scattered 48-bit: insert (ns/op)", ins_sc, "ns");
	shadow_tree_destroy(t);

	if (json) {
		FILE *f = fopen(json, "w");
		if (!f)
			die("open json");
		fprintf(f, "{\n  \"extents\": %zu,\n  \"cpus\": %ld,\n  \"results\": {\n", n, ncpu);
		for (int i = 0; i < nres; i++)
			fprintf(f, "    \"%s\": %.3f%s\n", res[i].name, res[i].value,
				i + 1 < nres ? "," : "");
		fprintf(f, "  }\n}\n");
		fclose(f);
	}
	fprintf(stderr, "(checksum %" PRIu64 ")\n", sink);
	urcu_memb_unregister_thread();
	free(asc);
	free(shuf);
	free(next);
	free(arr);
	free(idx);
	return 0;
}
