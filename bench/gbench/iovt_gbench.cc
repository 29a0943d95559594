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
//       writer:2          (engine only) a background thread doing what a guest
//                         does to the same domain: guest table map or unmap of
//                         one 4 KiB page + a PSI + iovt_queue_fence on its own
//                         queue (sync, sink call, tree update and RCU retire),
//                         in another IOVA region, paced at ~WRITER2_OPS_PER_S
//                         (counter writer_Mops = achieved map/unmap+PSI+wait
//                         per s; writer_errors must be 0). A world of its own.
//       writer:3          (engine only) writer:1 with 256 KiB extents (64
//                         pages, not 2 MiB blocks: 64 lookup-cache keys each),
//                         paced at ~WRITER3_OPS_PER_S: a strict guest's
//                         storage I/O unmapping its buffers (writer:1 and 3:
//                         counter writer_ns_per_op = the writer's time per
//                         insert or remove, pacing sleeps excluded)
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
//   intake/<wfcq|rte_ring>/burst:<b>/pages:<p>/real_time/threads:<1|2>
//       the whole intake path: each thread owns an iovt_queue (that backend)
//       and posts PSIs with iovt_queue_post, b items per call, and an
//       iovt_queue_fence every INTAKE_FENCE_EVERY items (drained inline by the
//       poster: gather into the pending set, sync). The PSIs cycle over p
//       4 KiB pages, 8 KiB apart, of an empty domain (one per thread), so the
//       sync is cheap: p=1, every PSI coalesces into one range (the intake
//       alone); p=64, 64 ranges pending and walked per fence.
//       items_per_second = aggregate PSIs posted and drained per s.
//       rte_ring only when iovt_dpdk_available().
//   intake_raw/<wfcq|wfcq_node_per_item|rte_ring>/burst:<b>/real_time/threads:2
//       the ring alone: thread 0 pushes b placeholder items per call, thread 1
//       pops up to b per call (cf. DPDK's rte_ring burst vs single figures);
//       items_per_second = items moved per s.
//
// JSON: iovt-gbench --benchmark_format=json (or --benchmark_out=F
// --benchmark_out_format=json). Debian's libbenchmark is a debug build (the
// context says "library_build_type": "debug"); the timed code is iovt's.
#include <benchmark/benchmark.h>

#include <type_traits>

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
#include "iovt_dpdk.h"
extern "C" {
#include "tree/shadow_tree.h"  // engine-internal C API (no C++ guards)
}

namespace {

constexpr uint64_t K4 = 0x1000;
constexpr size_t IDX_N = 1u << 16;  // random index stream length (power of 2)
constexpr double WRITER_OPS_PER_S = 1e6;
constexpr uint64_t WRITER_SLOTS = 4096;  // writer's 4 KiB slots, 8 KiB apart
constexpr double WRITER2_OPS_PER_S = 200e3;  // writer:2 map|unmap + PSI + wait per s
constexpr double WRITER3_OPS_PER_S = 100e3;  // writer:3 insert|remove of 256 KiB extents per s
constexpr uint64_t WRITER3_PAGES = 64;
constexpr uint64_t WRITER3_SLOTS = 256;      // 512 KiB apart, from GB_WRITER_BASE + 1 GiB
// writer:2 guest addresses (region 0's data area; the leaves use gpa < 256 MiB):
// slot k at GB_WRITER_BASE + k*8K -> WR_SLOT_GPA + k*8K, keeper at +4K ->
// WR_KEEP_GPA + k*8K: never host-contiguous, so each is its own extent.
constexpr uint64_t WR_SLOT_GPA = 512ull << 20;
constexpr uint64_t WR_KEEP_GPA = 768ull << 20;
constexpr unsigned INTAKE_FENCE_EVERY = 256;  // items between two fences
constexpr unsigned INTAKE_MAX_THREADS = 2;

double now_s()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// A writer's pacing: the next burst is due `period` s after the previous
// one; sleep until then. Far behind (CPU stolen): do not burst to catch up.
void pace(double &next, double period)
{
	next += period;
	double t = now_s();
	if (t < next) {
		timespec ts;
		ts.tv_sec = (time_t)next;
		ts.tv_nsec = (long)((next - (double)ts.tv_sec) * 1e9);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
	} else if (t - next > 0.01) {
		next = t;
	}
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
	void insert_big(uint64_t iova)
	{
		iovt_extent x = ext4k(iova);
		x.size = WRITER3_PAGES * K4;
		if (shadow_tree_insert(t, &x))
			abort();
	}
	void remove_big(uint64_t iova)
	{
		if (shadow_tree_remove_range(t, iova, iova + WRITER3_PAGES * K4 - 1, nullptr, nullptr) != 1)
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
	double secs = 0, busy = 0; /* busy: time in the bursts, pacing sleeps excluded */
	void start(Impl *impl, bool big = false)
	{
		th = std::thread([this, impl, big] {
			impl->writer_thread_start();
			double t0 = now_s(), next = t0;
			uint64_t k = 0;
			while (!stop.load(std::memory_order_relaxed)) {
				double b0 = now_s();
				for (int b = 0; b < BURST / 2; b++, k++) {
					if constexpr (std::is_same<Impl, Engine>::value) {
						if (big) {
							uint64_t iova = GB_WRITER_BASE + (1ull << 30) +
									(k % WRITER3_SLOTS) * 2 * WRITER3_PAGES * K4;
							impl->insert_big(iova);
							impl->remove_big(iova);
							continue;
						}
					}
					uint64_t iova = GB_WRITER_BASE + (k % WRITER_SLOTS) * 2 * K4;
					impl->insert(iova);
					impl->remove(iova);
				}
				busy += now_s() - b0;
				ops += BURST;
				pace(next, BURST / (big ? WRITER3_OPS_PER_S : WRITER_OPS_PER_S));
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

// writer:2's world: the same n sparse leaves, its own engine, keepers
// between the writer's slots (mapped by the guest and synced once).
gb_world *fence_world(uint64_t n)
{
	std::lock_guard<std::mutex> g(cache_mu);
	auto &w = worlds[{ n, 100 + (int)GB_SPARSE_8K }];
	if (!w) {
		w = gb_world_create(n, GB_SPARSE_8K);
		if (!w)
			abort();
		for (uint64_t k = 0; k < WRITER_SLOTS; k++)
			if (gb_guest_map(w, GB_WRITER_BASE + k * 2 * K4 + K4, WR_KEEP_GPA + k * 2 * K4, K4))
				abort();
		if (iovt_invalidate_dsi(gb_engine(w), gb_did(w)) || iovt_fence(gb_engine(w)))
			abort();
	}
	return w;
}

// writer:2: the guest's map/unmap + PSI + wait on the readers' domain, in
// bursts of BURST ops paced at ~WRITER2_OPS_PER_S. Ends on a whole pair, so
// the slots are unmapped again for the next run.
struct FenceWriter {
	static constexpr int BURST = 100;
	std::thread th;
	std::atomic<bool> stop{ false };
	uint64_t ops = 0;
	int errors = 0;
	double secs = 0;
	void start(gb_world *w)
	{
		th = std::thread([this, w] {
			iovt_thread_register();
			iovt_queue *q;
			if (iovt_queue_create(gb_engine(w), nullptr, &q)) {
				errors++;
				iovt_thread_unregister();
				return;
			}
			const uint16_t did = gb_did(w);
			double t0 = now_s(), next = t0;
			uint64_t k = 0;
			while (!stop.load(std::memory_order_relaxed)) {
				for (int b = 0; b < BURST / 2; b++, k++) {
					uint64_t slot = k % WRITER_SLOTS;
					uint64_t iova = GB_WRITER_BASE + slot * 2 * K4;
					errors += gb_guest_map(w, iova, WR_SLOT_GPA + slot * 2 * K4, K4) != 0;
					errors += iovt_queue_psi(q, did, iova, 0, false) != 0;
					errors += iovt_queue_fence(q) != 0;
					errors += gb_guest_unmap(w, iova, K4) != 0;
					errors += iovt_queue_psi(q, did, iova, 0, true) != 0;
					errors += iovt_queue_fence(q) != 0;
				}
				ops += BURST;
				pace(next, BURST / WRITER2_OPS_PER_S);
			}
			secs = now_s() - t0;
			iovt_queue_destroy(q);
			iovt_thread_unregister();
		});
	}
	void finish()
	{
		stop.store(true);
		th.join();
	}
};

// Readers on writer:2's world (same lookups as Engine).
void BM_translate_fence_writer(benchmark::State &st)
{
	const uint64_t n = (uint64_t)st.range(0);
	gb_world *gw = fence_world(n);
	iovt_domain *d = gb_domain(gw);
	const std::vector<uint64_t> &addr = lookup_stream(n);
	iovt_thread_register();
	FenceWriter w;
	uint64_t calls0 = gb_sink_calls(gw);
	if (st.thread_index() == 0)
		w.start(gw);
	size_t i = (size_t)st.thread_index() * 7919;
	uint64_t misses = 0;
	for (auto _ : st) {
		iovt_extent e;
		bool hit = iovt_translate(d, addr[i++ & (IDX_N - 1)], &e) == 0;
		misses += !hit;
		benchmark::DoNotOptimize(e);
	}
	if (st.thread_index() == 0) {
		w.finish();
		st.counters["writer_Mops"] = benchmark::Counter(w.secs > 0 ? w.ops / w.secs / 1e6 : 0);
		st.counters["writer_sink_calls_per_op"] =
			benchmark::Counter(w.ops ? (double)(gb_sink_calls(gw) - calls0) / w.ops : 0);
		st.counters["writer_errors"] = benchmark::Counter((double)w.errors);
		if (w.errors)
			st.SkipWithError("writer: guest edit, PSI or fence failed");
	}
	st.counters["misses"] = benchmark::Counter((double)misses);
	st.SetItemsProcessed(st.iterations());
	if (st.thread_index() != 0)
		iovt_thread_unregister();
}

template <class Impl> void BM_translate(benchmark::State &st, int writer)
{
	const uint64_t n = (uint64_t)st.range(0);
	Impl *impl = instance<Impl>(n);
	const std::vector<uint64_t> &addr = lookup_stream(n);
	iovt_thread_register();
	Writer<Impl> w;
	const bool with_writer = writer != 0;
	if (st.thread_index() == 0 && with_writer)
		w.start(impl, writer == 3);
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
		st.counters["writer_ns_per_op"] = benchmark::Counter(w.busy / (double)w.ops * 1e9);
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
	st.counters["height"] = benchmark::Counter((double)shadow_tree_height(t));
	st.counters["bytes_per_extent"] =
		benchmark::Counter((double)shadow_tree_memory_bytes(t) / (double)shadow_tree_count(t));
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

// ---- intake ----------------------------------------------------------------

// Empty domains 1..INTAKE_MAX_THREADS (one per benchmark thread) on one engine.
gb_world *intake_world()
{
	std::lock_guard<std::mutex> g(cache_mu);
	auto &w = worlds[{ 0, -1 }];
	if (!w) {
		w = gb_world_create(0, GB_SPARSE_8K);
		if (!w)
			abort();
		for (unsigned did = 2; did <= INTAKE_MAX_THREADS; did++)
			if (gb_world_add_domain(w, (uint16_t)did))
				abort();
	}
	return w;
}

inline void spin_pause()
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

const char *backend_name(iovt_queue_backend b) { return b == IOVT_QUEUE_RTE_RING ? "rte_ring" : "wfcq"; }

void BM_intake(benchmark::State &st, iovt_queue_backend backend)
{
	const unsigned burst = (unsigned)st.range(0), pages = (unsigned)st.range(1);
	gb_world *w = intake_world();
	iovt_engine *e = gb_engine(w);
	const uint16_t did = (uint16_t)(1 + st.thread_index());
	iovt_thread_register();
	iovt_queue_config qc{};
	qc.backend = backend;
	qc.group = (unsigned)st.thread_index();
	iovt_queue *q;
	if (iovt_queue_create(e, &qc, &q)) {
		st.SkipWithError("iovt_queue_create failed");
		return;
	}
	// PSI targets: `pages` pages 8 KiB apart (never adjacent: each one is
	// its own pending range until the fence), repeated so that any burst
	// starting in the first `pages` entries reads contiguously.
	std::vector<iovt_inval> pat(pages + 32);
	for (size_t j = 0; j < pat.size(); j++) {
		pat[j] = iovt_inval{};
		pat[j].addr = GB_IOVA_BASE + (j % pages) * 2 * K4;
		pat[j].did = did;
		pat[j].kind = IOVT_INVAL_PSI;
	}
	iovt_stats s0, s1;
	iovt_stats_get(e, &s0);
	unsigned pos = 0, since_fence = 0;
	uint64_t fences = 0;
	int err = 0;
	for (auto _ : st) {
		err |= iovt_queue_post(q, &pat[pos], burst);
		pos = (pos + burst) % pages;
		since_fence += burst;
		if (since_fence >= INTAKE_FENCE_EVERY) {
			err |= iovt_queue_fence(q);
			since_fence = 0;
			fences++;
		}
	}
	err |= iovt_queue_fence(q);  // what the last partial batch left (untimed)
	iovt_stats_get(e, &s1);
	iovt_queue_destroy(q);
	if (err)
		st.SkipWithError("post or fence failed");
	st.SetItemsProcessed((int64_t)(st.iterations() * burst));
	st.counters["fences"] = benchmark::Counter((double)fences);
	if (st.thread_index() == 0)  // engine-wide: any thread's full waits meanwhile
		st.counters["queue_full_waits"] =
			benchmark::Counter((double)(s1.queue_full_waits - s0.queue_full_waits));
	if (st.thread_index() != 0)
		iovt_thread_unregister();
}

// One queue per backend whose ring the raw benchmark drives directly.
iovt_queue *raw_queue(iovt_queue_backend backend)
{
	static std::map<int, iovt_queue *> cache;
	gb_world *w = intake_world();
	std::lock_guard<std::mutex> g(cache_mu);
	auto &q = cache[(int)backend];
	if (!q) {
		iovt_queue_config qc{};
		qc.backend = backend;
		qc.group = 1000;  // no worker or poller runs here anyway
		if (iovt_queue_create(gb_engine(w), &qc, &q))
			abort();
	}
	return q;
}

// A ring as the raw benchmark drives it: push n / pop up to max, how many moved.
struct raw_ring {
	unsigned (*push)(void *, unsigned);
	unsigned (*pop)(void *, unsigned);
	void *(*get)(void);  // the shared instance (created once)
};

template <iovt_queue_backend B> void *raw_backend_queue() { return raw_queue(B); }
unsigned raw_backend_push(void *q, unsigned n) { return gb_ring_push((iovt_queue *)q, n); }
unsigned raw_backend_pop(void *q, unsigned n) { return gb_ring_pop((iovt_queue *)q, n); }

void *raw_node_queue()
{
	static gb_node_queue *q = gb_node_queue_create();
	return q;
}
unsigned raw_node_push(void *q, unsigned n) { return gb_node_queue_push((gb_node_queue *)q, n); }
unsigned raw_node_pop(void *q, unsigned n) { return gb_node_queue_pop((gb_node_queue *)q, n); }

void BM_intake_raw(benchmark::State &st, raw_ring ring)
{
	const unsigned burst = (unsigned)st.range(0);
	void *q = ring.get();
	if (st.thread_index() == 0) {  // producer
		for (auto _ : st)
			for (unsigned done = 0, n; done < burst; done += n)
				if (!(n = ring.push(q, burst - done)))
					spin_pause();  // full
		st.SetItemsProcessed((int64_t)(st.iterations() * burst));
	} else {  // consumer: as many items in all as the producer pushed
		uint64_t got = 0, want = 0;
		for (auto _ : st) {
			want += burst;
			while (got < want) {
				unsigned n = ring.pop(q, burst);
				if (!n)
					spin_pause();  // empty
				got += n;
			}
		}
	}
}

void register_intake()
{
	std::vector<iovt_queue_backend> backends = { IOVT_QUEUE_WFCQ };
	if (iovt_dpdk_available())
		backends.push_back(IOVT_QUEUE_RTE_RING);
	for (iovt_queue_backend b : backends) {
		std::string name = std::string("intake/") + backend_name(b);
		benchmark::RegisterBenchmark(name.c_str(), BM_intake, b)
			->ArgNames({ "burst", "pages" })
			->ArgsProduct({ { 1, 8, 32 }, { 1, 64 } })
			->Threads(1)
			->Threads(2)
			->UseRealTime();
	}
	std::vector<std::pair<std::string, raw_ring>> rings = {
		{ "wfcq", { raw_backend_push, raw_backend_pop, raw_backend_queue<IOVT_QUEUE_WFCQ> } },
		{ "wfcq_node_per_item", { raw_node_push, raw_node_pop, raw_node_queue } },
	};
	if (iovt_dpdk_available())
		rings.push_back({ "rte_ring", { raw_backend_push, raw_backend_pop,
						raw_backend_queue<IOVT_QUEUE_RTE_RING> } });
	for (auto &r : rings) {
		std::string name = "intake_raw/" + r.first;
		benchmark::RegisterBenchmark(name.c_str(), BM_intake_raw, r.second)
			->ArgName("burst")
			->Arg(1)
			->Arg(8)
			->Arg(32)
			->Threads(2)
			->UseRealTime();
	}
}

template <class Impl> void register_translate()
{
	for (int wr = 0; wr < 2; wr++) {
		std::string name = std::string("translate/") + Impl::name + "/writer:" + std::to_string(wr);
		benchmark::RegisterBenchmark(name.c_str(), BM_translate<Impl>, wr)
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
	benchmark::RegisterBenchmark("translate/engine/writer:3", BM_translate<Engine>, 3)
		->Arg(1024)
		->Arg(65536)
		->Threads(1)
		->Threads(2)
		->UseRealTime();
	benchmark::RegisterBenchmark("translate/engine/writer:2", BM_translate_fence_writer)
		->Arg(1024)
		->Arg(65536)
		->Threads(1)
		->Threads(2)
		->UseRealTime();
	register_intake();
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
		"translate items_per_second = aggregate lookups/s (real time); walk_diff items = PTEs walked; "
		"intake items = PSIs posted and drained (intake_raw: ring items moved)");
	benchmark::AddCustomContext("writer_target_ops_per_s", std::to_string((long)WRITER_OPS_PER_S));
	benchmark::AddCustomContext("writer2_target_ops_per_s", std::to_string((long)WRITER2_OPS_PER_S));
	benchmark::AddCustomContext("intake_fence_every", std::to_string(INTAKE_FENCE_EVERY));
	iovt_thread_register();
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	for (auto &kv : worlds)
		gb_world_destroy(kv.second);
	return 0;
}
