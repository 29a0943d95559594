// SPDX-License-Identifier: MIT
//
// The tree/* family of iovt-gbench: the shadow tree against the QEMU-style
// baseline's GTree (bench/baseline/baseline.c), side by side in one run.
//
//   tree/insert_remove_pair/pages:N/aligned:A
//       shadow_tree_insert + shadow_tree_remove_range of one N-page extent,
//       then shadow_tree_flush (the engine flushes at the end of each sync),
//       in a tree of 1024 one-page extents 16 MiB apart; the pair lands in
//       the gap after a random one, at a 4 MiB-aligned IOVA (A=1) or one page
//       past it (A=0). Time per iteration = one pair.
//   tree/gtree_pair/pages:N/aligned:A
//       the same on a GTree as the baseline keeps it: a malloc'd 40-byte
//       DMAMap, g_tree_insert, g_tree_remove (which frees it), overlap
//       compare. The goal (issue 13): insert_remove_pair <= 2x gtree_pair.
//   tree/shadow_lookup/<extents>, tree/gtree_lookup/<extents>
//       lookups of random IOVAs inside one-page extents 8 KiB apart: the
//       shadow tree inside an RCU read-side section vs the GTree unlocked.
//
// The file compiles against the radix shadow of earlier commits too (no
// shadow_tree_flush there: it is called only when linked), so old and new
// can be compared with the same harness.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#ifdef IOVT_GB_HAVE_GLIB
#include <glib.h>
#endif

#include "gbench_support.h"
#include "iovt.h"
extern "C" {
#include "tree/shadow_tree.h"
void shadow_tree_flush(struct shadow_tree *t) __attribute__((weak));
}

namespace {

constexpr uint64_t K4 = 0x1000;
constexpr uint64_t M16 = 16ull << 20;
constexpr uint64_t BG = 1024;  // background extents of the pair benchmarks
constexpr size_t STREAM = 1u << 16;

uint64_t xorshift(uint64_t &s)
{
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

// Where the i-th pair goes: 4 MiB into the gap after background extent i.
std::vector<uint64_t> pair_stream(bool aligned)
{
	std::vector<uint64_t> v(STREAM);
	uint64_t s = 0x9E3779B97F4A7C15ull;
	for (auto &x : v)
		x = (xorshift(s) % BG) * M16 + (4ull << 20) + (aligned ? 0 : K4);
	return v;
}

iovt_extent ext(uint64_t iova, uint64_t size)
{
	return iovt_extent{ iova, size, iova + (1ull << 40), 0x7f0000000000ull + iova, 3, 1 };
}

void BM_shadow_pair(benchmark::State &st)
{
	const uint64_t pages = (uint64_t)st.range(0);
	const bool aligned = st.range(1) != 0;
	iovt_thread_register();
	shadow_tree *t = shadow_tree_create(48);
	for (uint64_t i = 0; i < BG; i++) {
		iovt_extent x = ext(i * M16, K4);
		if (shadow_tree_insert(t, &x))
			abort();
	}
	const std::vector<uint64_t> addr = pair_stream(aligned);
	size_t i = 0;
	for (auto _ : st) {
		uint64_t iova = addr[i++ & (STREAM - 1)];
		iovt_extent x = ext(iova, pages * K4);
		if (shadow_tree_insert(t, &x))
			abort();
		if (shadow_tree_flush)
			shadow_tree_flush(t);
		if (shadow_tree_remove_range(t, iova, iova + pages * K4 - 1, nullptr, nullptr) != 1)
			abort();
		if (shadow_tree_flush)
			shadow_tree_flush(t);
	}
	st.SetItemsProcessed(st.iterations());
	st.counters["tree_bytes"] = benchmark::Counter((double)shadow_tree_memory_bytes(t));
	shadow_tree_destroy(t);
	iovt_thread_unregister();
}


// The same random lookup addresses for every implementation: STREAM of them,
// each inside one of the n extents at 8 KiB spacing (odd offsets included).
std::vector<uint64_t> lookup_stream(uint64_t n)
{
	std::vector<uint64_t> addr(STREAM);
	uint64_t s = 12345;
	for (auto &a : addr)
		a = (xorshift(s) % n) * 2 * K4 + (s >> 52);
	return addr;
}

void BM_shadow_lookup(benchmark::State &st)
{
	const uint64_t n = (uint64_t)st.range(0);
	iovt_thread_register();
	shadow_tree *t = shadow_tree_create(48);
	for (uint64_t i = 0; i < n; i++) {
		iovt_extent x = ext(i * 2 * K4, K4);
		if (shadow_tree_insert(t, &x))
			abort();
	}
	std::vector<uint64_t> addr = lookup_stream(n);
	size_t i = 0;
	uint64_t misses = 0;
	for (auto _ : st) {
		iovt_extent e;
		gb_rcu_read_lock();
		misses += !shadow_tree_lookup(t, addr[i++ & (STREAM - 1)], &e);
		gb_rcu_read_unlock();
		benchmark::DoNotOptimize(e);
	}
	if (misses)
		st.SkipWithError("lookup missed");
	st.SetItemsProcessed(st.iterations());
	st.counters["tree_bytes"] = benchmark::Counter((double)shadow_tree_memory_bytes(t));
	shadow_tree_destroy(t);
	iovt_thread_unregister();
}

#ifdef IOVT_GB_HAVE_GLIB
// The baseline's DMAMap and compare (overlapping ranges compare equal).
struct DMAMap {
	uint64_t iova, size, gpa, hva;
	uint32_t perm, region;
};

gint map_cmp(gconstpointer a, gconstpointer b, gpointer)
{
	auto *x = (const DMAMap *)a, *y = (const DMAMap *)b;
	if (x->iova + x->size <= y->iova)
		return -1;
	if (y->iova + y->size <= x->iova)
		return 1;
	return 0;
}

DMAMap *dmamap(uint64_t iova, uint64_t size)
{
	auto *m = (DMAMap *)malloc(sizeof(DMAMap));
	*m = DMAMap{ iova, size, iova + (1ull << 40), 0x7f0000000000ull + iova, 3, 1 };
	return m;
}

void BM_gtree_pair(benchmark::State &st)
{
	const uint64_t pages = (uint64_t)st.range(0);
	const bool aligned = st.range(1) != 0;
	GTree *g = g_tree_new_full(map_cmp, nullptr, free, nullptr);
	for (uint64_t i = 0; i < BG; i++) {
		DMAMap *m = dmamap(i * M16, K4);
		g_tree_insert(g, m, m);
	}
	const std::vector<uint64_t> addr = pair_stream(aligned);
	size_t i = 0;
	for (auto _ : st) {
		uint64_t iova = addr[i++ & (STREAM - 1)];
		DMAMap *m = dmamap(iova, pages * K4);
		g_tree_insert(g, m, m);
		DMAMap key{ iova, pages * K4, 0, 0, 0, 0 };
		if (!g_tree_remove(g, &key))  // frees m
			abort();
	}
	st.SetItemsProcessed(st.iterations());
	g_tree_destroy(g);
}

void BM_gtree_lookup(benchmark::State &st)
{
	const uint64_t n = (uint64_t)st.range(0);
	GTree *g = g_tree_new_full(map_cmp, nullptr, free, nullptr);
	for (uint64_t i = 0; i < n; i++) {
		DMAMap *m = dmamap(i * 2 * K4, K4);
		g_tree_insert(g, m, m);
	}
	std::vector<uint64_t> addr = lookup_stream(n);
	size_t i = 0;
	uint64_t misses = 0;
	for (auto _ : st) {
		DMAMap key{ addr[i++ & (STREAM - 1)], 1, 0, 0, 0, 0 };
		auto *m = (DMAMap *)g_tree_lookup(g, &key);
		misses += !m;
		benchmark::DoNotOptimize(m);
	}
	if (misses)
		st.SkipWithError("lookup missed");
	st.SetItemsProcessed(st.iterations());
	g_tree_destroy(g);
}
#endif

const std::vector<int64_t> kPages = { 1, 2, 3, 8, 31, 32, 33, 64, 100, 511, 512, 513, 1000, 1024 };

int register_tree_family()
{
	auto *b = benchmark::RegisterBenchmark("tree/insert_remove_pair", BM_shadow_pair);
	b->ArgNames({ "pages", "aligned" })->ArgsProduct({ kPages, { 1, 0 } });
#ifdef IOVT_GB_HAVE_GLIB
	b = benchmark::RegisterBenchmark("tree/gtree_pair", BM_gtree_pair);
	b->ArgNames({ "pages", "aligned" })->ArgsProduct({ kPages, { 1, 0 } });
#endif
	benchmark::RegisterBenchmark("tree/shadow_lookup", BM_shadow_lookup)->Arg(1024)->Arg(65536);
#ifdef IOVT_GB_HAVE_GLIB
	benchmark::RegisterBenchmark("tree/gtree_lookup", BM_gtree_lookup)->Arg(1024)->Arg(65536);
#endif
	return 0;
}

const int registered = register_tree_family();

}  // namespace
