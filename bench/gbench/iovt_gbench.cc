// SPDX-License-Identifier: MIT
//
// iovt-gbench: Google Benchmark microbenchmarks over iovt's C API.
//
//   translate/<impl>/writer:<0|1>/<extents>/real_time/threads:<1|2>
//       impl engine       iovt_translate(): RCU read side + radix shadow tree
//       impl locked_ghash QEMU-style IOTLB: GHashTable keyed by page number
//                         under one pthread mutex (built when glib-2.0 is found)
//       impl locked_map   std::map interval lookup (QEMU iova-tree-like) under
//                         one pthread mutex
//       writer:1          a background thread inserting/removing 4 KiB extents
//                         in another IOVA region of the same structure (between
//                         resident neighbours, so no table is emptied), paced
//                         at ~1M ops/s (counter writer_Mops = achieved rate)
//       items_per_second  = aggregate lookups/s over all reader threads
//   tree/insert_remove/<prefill>   shadow_tree_insert + shadow_tree_remove_range
//                                  of one 4 KiB extent (items = 2 ops)
//   tree/lookup/<extents>          raw shadow_tree_lookup (no iovt_translate wrapper)
//   walk_diff/dsi_unchanged/<leaves>/<layout>
//       a domain with N 4 KiB leaves (layout 0: contiguous GPAs, few extents;
//       1: shuffled GPAs, N extents); each iteration is iovt_invalidate_dsi +
//       iovt_fence on the unchanged domain (walk whole table + diff, 0 sink
//       calls). items = PTEs walked, so 1/items_per_second = time per PTE;
//       counter ns_per_pte says it directly.
//
// JSON: iovt-gbench --benchmark_format=json (or --benchmark_out=F
// --benchmark_out_format=json). Debian's libbenchmark is a debug build (the
// context says "library_build_type": "debug"); the timed code is iovt's.
#include <benchmark/benchmark.h>

#include <pthread.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifdef IOVT_GB_HAVE_GLIB
#include <glib.h>
#endif

#include "gbench_support.h"
#include "iovt.h"
extern "C" {
#include "tree/shadow_tree.h"  // engine-internal C API (no C++ guards)
}

namespace {

constexpr uint64_t K4 = 0x1000;
constexpr size_t IDX_N = 1u << 16;  // random index stream length (power of 2)
constexpr double WRITER_OPS_PER_S = 1e6;
constexpr uint64_t WRITER_SLOTS = 4096;  // writer's 4 KiB slots, 8 KiB apart

double now_s()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

uint64_t sparse_iova(uint64_t i) { return GB_IOVA_BASE + i * 2 * K4; }

iovt_extent ext4k(uint64_t iova)
{
	iovt_extent x{};
	x.iova = iova;
	x.size = K4;
	x.gpa = iova & 0x3fffffffull;
	x.hva = 0x7f0000000000ull + (iova & 0x3fffffffull);
	x.perm = IOVT_PERM_RW;
	x.region = 0;
	return x;
}

std::mutex cache_mu;

// Random lookup addresses over n sparse extents (cached per n).
const std::vector<uint64_t> &lookup_stream(uint64_t n)
{
	static std::map<uint64_t, std::vector<uint64_t>> cache;
	std::lock_guard<std::mutex> g(cache_mu);
	auto &v = cache[n];
	if (v.empty()) {
		uint64_t s = 0x9e3779b97f4a7c15ull ^ n;
		v.resize(IDX_N);
		for (auto &x : v) {
			s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
			uint64_t r = s * 0x2545F4914F6CDD1Dull;
			x = sparse_iova(r % n) + (r >> 52);  // somewhere inside the 4 KiB page
		}
	}
	return v;
}

std::map<std::pair<uint64_t, int>, gb_world *> worlds;

gb_world *world(uint64_t n, gb_layout layout)
{
	std::lock_guard<std::mutex> g(cache_mu);
	auto &w = worlds[{ n, (int)layout }];
	if (!w) {
		w = gb_world_create(n, layout);
		if (!w) {
			fprintf(stderr, "iovt-gbench: world (%llu leaves) failed\n", (unsigned long long)n);
			abort();
		}
	}
	return w;
}

// ---- the implementations under test -------------------------------------

struct Engine {
	static constexpr const char *name = "engine";
	iovt_domain *d;
	shadow_tree *t;
	explicit Engine(uint64_t n)
	{
		gb_world *w = world(n, GB_SPARSE_8K);
		d = gb_domain(w);
		t = gb_domain_tree(d);
	}
	bool lookup(uint64_t iova, iovt_extent *out) { return iovt_translate(d, iova, out) == 0; }
	void writer_thread_start() { iovt_thread_register(); }
	void writer_thread_end() { iovt_thread_unregister(); }
	void insert(uint64_t iova)
	{
		iovt_extent x = ext4k(iova);
		if (shadow_tree_insert(t, &x))
			abort();
	}
	void remove(uint64_t iova)
	{
		if (shadow_tree_remove_range(t, iova, iova + K4 - 1, nullptr, nullptr) != 1)
			abort();
	}
};

struct LockedMap {
	static constexpr const char *name = "locked_map";
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	std::map<uint64_t, iovt_extent> m;
	explicit LockedMap(uint64_t n)
	{
		for (uint64_t i = 0; i < n; i++)
			m.emplace(sparse_iova(i), ext4k(sparse_iova(i)));
	}
	bool lookup(uint64_t iova, iovt_extent *out)
	{
		bool hit = false;
		pthread_mutex_lock(&mu);
		auto it = m.upper_bound(iova);
		if (it != m.begin()) {
			--it;
			if (iova - it->first < it->second.size) {
				*out = it->second;
				hit = true;
			}
		}
		pthread_mutex_unlock(&mu);
		return hit;
	}
	void writer_thread_start() {}
	void writer_thread_end() {}
	void insert(uint64_t iova)
	{
		pthread_mutex_lock(&mu);
		m.emplace(iova, ext4k(iova));
		pthread_mutex_unlock(&mu);
	}
	void remove(uint64_t iova)
	{
		pthread_mutex_lock(&mu);
		m.erase(iova);
		pthread_mutex_unlock(&mu);
	}
};

#ifdef IOVT_GB_HAVE_GLIB
// QEMU's VT-d IOTLB shape (hw/i386/intel_iommu.c): a GHashTable of entries
// keyed by page frame, guarded by one mutex (one probe per lookup here; QEMU
// probes up to three page-size levels on a miss of the smaller ones).
struct LockedGHash {
	static constexpr const char *name = "locked_ghash";
	struct Entry {
		uint64_t key;
		iovt_extent e;
	};
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	GHashTable *h;
	explicit LockedGHash(uint64_t n) : h(g_hash_table_new_full(g_int64_hash, g_int64_equal, nullptr, g_free))
	{
		for (uint64_t i = 0; i < n; i++)
			put(sparse_iova(i));
	}
	void put(uint64_t iova)
	{
		Entry *en = g_new(Entry, 1);
		en->key = iova >> 12;
		en->e = ext4k(iova);
		g_hash_table_replace(h, &en->key, en);
	}
	bool lookup(uint64_t iova, iovt_extent *out)
	{
		uint64_t key = iova >> 12;
		pthread_mutex_lock(&mu);
		auto *en = static_cast<Entry *>(g_hash_table_lookup(h, &key));
		if (en)
			*out = en->e;
		pthread_mutex_unlock(&mu);
		return en != nullptr;
	}
	void writer_thread_start() {}
	void writer_thread_end() {}
	void insert(uint64_t iova)
	{
		pthread_mutex_lock(&mu);
		put(iova);
		pthread_mutex_unlock(&mu);
	}
	void remove(uint64_t iova)
	{
		uint64_t key = iova >> 12;
		pthread_mutex_lock(&mu);
		g_hash_table_remove(h, &key);
		pthread_mutex_unlock(&mu);
	}
};
#endif

template <class Impl> Impl *instance(uint64_t n)
{
	static std::map<uint64_t, Impl *> cache;
	static std::mutex mu;
	std::lock_guard<std::mutex> g(mu);
	auto &p = cache[n];
	if (!p) {
		p = new Impl(n);
		// Keepers between the writer's slots, so that the writer's removes
		// never empty a table (which would add table retirement per op).
		for (uint64_t k = 0; k < WRITER_SLOTS; k++)
			p->insert(GB_WRITER_BASE + k * 2 * K4 + K4);
	}
	return p;
}

// Background writer: insert+remove pairs of 4 KiB extents in another IOVA
// region, in bursts of BURST ops, sleeping to hold ~WRITER_OPS_PER_S.
template <class Impl> struct Writer {
	static constexpr int BURST = 500;
	std::thread th;
	std::atomic<bool> stop{ false };
	uint64_t ops = 0;
	double secs = 0;
	void start(Impl *impl)
	{
		th = std::thread([this, impl] {
			impl->writer_thread_start();
			double t0 = now_s(), next = t0;
			uint64_t k = 0;
			while (!stop.load(std::memory_order_relaxed)) {
				for (int b = 0; b < BURST / 2; b++, k++) {
					uint64_t iova = GB_WRITER_BASE + (k % WRITER_SLOTS) * 2 * K4;
					impl->insert(iova);
					impl->remove(iova);
				}
				ops += BURST;
				next += BURST / WRITER_OPS_PER_S;
				double t = now_s();
				if (t < next) {
					timespec ts;
					ts.tv_sec = (time_t)next;
					ts.tv_nsec = (long)((next - (double)ts.tv_sec) * 1e9);
					clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
				} else if (t - next > 0.01) {
					next = t;  // far behind (CPU stolen): do not burst to catch up
				}
			}
			secs = now_s() - t0;
			impl->writer_thread_end();
		});
	}
	void finish()
	{
		stop.store(true);
		th.join();
	}
};

template <class Impl> void BM_translate(benchmark::State &st, bool with_writer)
{
	const uint64_t n = (uint64_t)st.range(0);
	Impl *impl = instance<Impl>(n);
	const std::vector<uint64_t> &addr = lookup_stream(n);
	iovt_thread_register();
	Writer<Impl> w;
	if (st.thread_index() == 0 && with_writer)
		w.start(impl);
	size_t i = (size_t)st.thread_index() * 7919;
	uint64_t misses = 0;
	for (auto _ : st) {
		iovt_extent e;
		bool hit = impl->lookup(addr[i++ & (IDX_N - 1)], &e);
		misses += !hit;
		benchmark::DoNotOptimize(e);
	}
	if (st.thread_index() == 0 && with_writer) {
		w.finish();
		st.counters["writer_Mops"] = benchmark::Counter(w.ops / w.secs / 1e6);
	}
	st.counters["misses"] = benchmark::Counter((double)misses);
	st.SetItemsProcessed(st.iterations());
	if (st.thread_index() != 0)
		iovt_thread_unregister();
}

void BM_tree_insert_remove(benchmark::State &st)
{
	const uint64_t n = (uint64_t)st.range(0);
	iovt_thread_register();
	shadow_tree *t = shadow_tree_create(48);
	for (uint64_t i = 0; i < n; i++) {
		iovt_extent x = ext4k(sparse_iova(i));
		if (shadow_tree_insert(t, &x))
			abort();
	}
	const std::vector<uint64_t> &addr = lookup_stream(n ? n : 1);
	size_t i = 0;
	for (auto _ : st) {
		// the free 4 KiB page just after a random existing extent
		uint64_t iova = (addr[i++ & (IDX_N - 1)] & ~(K4 - 1)) + K4;
		iovt_extent x = ext4k(iova);
		if (shadow_tree_insert(t, &x))
			abort();
		if (shadow_tree_remove_range(t, iova, iova + K4 - 1, nullptr, nullptr) != 1)
			abort();
	}
	st.SetItemsProcessed(2 * st.iterations());
	shadow_tree_destroy(t);
}

void BM_tree_lookup(benchmark::State &st)
{
	const uint64_t n = (uint64_t)st.range(0);
	iovt_thread_register();
	shadow_tree *t = gb_domain_tree(gb_domain(world(n, GB_SPARSE_8K)));
	const std::vector<uint64_t> &addr = lookup_stream(n);
	size_t i = 0;
	uint64_t misses = 0;
	for (auto _ : st) {
		iovt_extent e;
		gb_rcu_read_lock();
		bool hit = shadow_tree_lookup(t, addr[i++ & (IDX_N - 1)], &e);
		gb_rcu_read_unlock();
		misses += !hit;
		benchmark::DoNotOptimize(e);
	}
	st.counters["misses"] = benchmark::Counter((double)misses);
	st.SetItemsProcessed(st.iterations());
}

void BM_walk_diff(benchmark::State &st)
{
	const uint64_t n = (uint64_t)st.range(0);
	gb_world *w = world(n, st.range(1) ? GB_SCATTER_GPA : GB_CONTIG);
	iovt_engine *e = gb_engine(w);
	iovt_domain *d = gb_domain(w);
	iovt_stats s0, s1;
	iovt_domain_stats_get(d, &s0);
	uint64_t calls0 = gb_sink_calls(w);
	int err = 0;
	auto t0 = std::chrono::steady_clock::now();
	for (auto _ : st) {
		err |= iovt_invalidate_dsi(e, gb_did(w));
		err |= iovt_fence(e);
	}
	double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	iovt_domain_stats_get(d, &s1);
	uint64_t ptes = s1.ptes_walked - s0.ptes_walked;
	if (err)
		st.SkipWithError("invalidate/fence failed");
	st.SetItemsProcessed((int64_t)ptes);
	double it = (double)st.iterations();
	st.counters["ptes_per_dsi"] = benchmark::Counter(ptes / it);
	st.counters["ns_per_pte"] = benchmark::Counter(ptes ? secs * 1e9 / ptes : 0);
	st.counters["extents"] = benchmark::Counter((double)s1.extents);
	st.counters["sink_calls_per_dsi"] = benchmark::Counter((gb_sink_calls(w) - calls0) / it);
}

template <class Impl> void register_translate()
{
	for (int wr = 0; wr < 2; wr++) {
		std::string name = std::string("translate/") + Impl::name + "/writer:" + std::to_string(wr);
		benchmark::RegisterBenchmark(name.c_str(), BM_translate<Impl>, wr != 0)
			->Arg(1024)
			->Arg(65536)
			->Threads(1)
			->Threads(2)
			->UseRealTime();
	}
}

}  // namespace

int main(int argc, char **argv)
{
	register_translate<Engine>();
#ifdef IOVT_GB_HAVE_GLIB
	register_translate<LockedGHash>();
#endif
	register_translate<LockedMap>();
	benchmark::RegisterBenchmark("tree/insert_remove", BM_tree_insert_remove)->Arg(1024)->Arg(65536);
	benchmark::RegisterBenchmark("tree/lookup", BM_tree_lookup)->Arg(1024)->Arg(65536);
	benchmark::RegisterBenchmark("walk_diff/dsi_unchanged", BM_walk_diff)
		->ArgNames({ "leaves", "scattered" })
		->Args({ 4096, 0 })
		->Args({ 4096, 1 })
		->Args({ 131072, 0 })
		->Args({ 131072, 1 })
		->Unit(benchmark::kMicrosecond);

	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::AddCustomContext("iovt_note",
		"translate items_per_second = aggregate lookups/s (real time); walk_diff items = PTEs walked");
	benchmark::AddCustomContext("writer_target_ops_per_s", std::to_string((long)WRITER_OPS_PER_S));
	iovt_thread_register();
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	for (auto &kv : worlds)
		gb_world_destroy(kv.second);
	return 0;
}
