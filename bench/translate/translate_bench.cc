// SPDX-License-Identifier: MIT
//
// iovt-translate-bench: the translation service (issue 12) against two
// baselines written from their documented behaviour (translate_impls.hh has
// them and the workload; the storm driver runs the same code through
// translate_run.h):
//
//   vhost/<impl>/pool:<P>/inval:<0|1>/real_time/threads:<1|2>
//       each iteration = 2 lookups: one of 4 hot descriptor-ring pages and
//       the next buffer of a pool of P 4 KiB IOVAs (8 KiB apart, scattered
//       GPAs), cycling. inval:1 adds a thread doing what a strict-mode guest
//       does: unmap a pool buffer + PSI + wait, map it back + PSI + wait,
//       paced to IOVT_TRANSLATE_INVAL_RATE pairs a second (default 50000,
//       the same on every side; 0: flat out). IOVT_TRANSLATE_INVAL_DRY=1:
//       the same pace and PTE stores, no PSI and no wait (counter
//       inval_dry): what the pacing alone costs the readers.
//       items_per_second = lookups/s (all threads); counters: hit_rate,
//       p99_ns (1 lookup in 64 timed), inval_kops (invalidator's unmap+map
//       pairs per s), inval_target_kops (its pace), inval_cpu_ns (its own
//       CPU time per pair: the guest edits, two PSIs and two waits).
//   vhost_shuffled/<impl>/pool:<P>/inval:0/real_time/threads:1
//       the same with the pool visited in a fixed permuted order: in the
//       plain order the engine's set and entry lines are read in address
//       order (iotlb_set_at keeps IOVA order; each slot's entry line sits
//       at its set's place in the table's line array).
//   miss/<impl>    every lookup a miss (a cyclic scan of 64K pages; the
//                  engine's capacity fixed at 4096, as its default grows
//                  to hold the scan): time per op = the cost of a miss
//                  (walk + insert); hit_rate shows it (engine).
//   ref/lines/pool:<P>/shuffled:<0|1>
//                  the hardware's share: the vhost lookup pattern over
//                  plain memory laid out like the engine's IOTLB at that
//                  pool (a set line naming an entry line), nothing
//                  else; lookups/s as vhost/*.
//   miss/walk      the same scan, only the guest walk of each page (the
//                  walker all three use): what a miss costs at least.
//   miss_scattered/<impl>, miss_scattered/walk
//                  the same over a pool of 1M pages (16 MiB of leaf
//                  tables) in a fixed permuted order: no prefetchable
//                  pattern, the leaf entry out of L2 at every walk — a
//                  device's miss on a buffer it has not touched lately,
//                  where miss/* reads tables the scan keeps hot. Each
//                  lookup waits for the one before (latency, as
//                  ref/lines: a device waits for the translation it
//                  missed on).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "translate_impls.hh"

namespace {

using namespace tbench;

template <class Impl> Bench<Impl> *&bench_slot()
{
	static Bench<Impl> *b;
	return b;
}

template <class Impl, bool Shuffled = false> void BM_vhost(benchmark::State &st)
{
	const uint64_t pool = (uint64_t)st.range(0);
	const bool with_inval = st.range(1) != 0;
	iovt_thread_register();
	if (st.thread_index() == 0) {
		bench_slot<Impl>() = new Bench<Impl>(pool);
		bench_slot<Impl>()->shuffled = Shuffled;
		bench_slot<Impl>()->warm_up();
		if (with_inval)
			bench_slot<Impl>()->inval = std::thread(&Bench<Impl>::invalidator, bench_slot<Impl>());
	}
	// Google Benchmark starts every thread's loop together (a barrier).
	uint64_t h = 0, m = 0, i = (uint64_t)st.thread_index() * 7919, n = 0;
	std::vector<uint32_t> lat;
	lat.reserve(1 << 16);
	uint64_t h0 = 0, m0 = 0;
	for (auto _ : st) {
		Bench<Impl> *b = bench_slot<Impl>();
		if (n == 0 && st.thread_index() == 0) {
			if constexpr (std::is_same<Impl, Engine>::value)
				b->impl.stats(&h0, &m0);
		}
		iovt_extent x[2];
		bool timed = (n & 63) == 0;
		auto t0 = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
		int hit = vhost_step(b, i, x);
		benchmark::DoNotOptimize(x);
		if (timed && lat.size() < (1u << 20))
			lat.push_back((uint32_t)std::chrono::duration_cast<std::chrono::nanoseconds>(
					      std::chrono::steady_clock::now() - t0).count() / 2);
		h += hit;
		m += 2 - hit;
		i++;
		n++;
	}
	Bench<Impl> *b = bench_slot<Impl>();
	b->hits += h;
	b->misses += m;
	b->threads_done.fetch_add(1, std::memory_order_release); /* b is not touched after this */
	std::sort(lat.begin(), lat.end());
	if (!lat.empty())
		st.counters["p99_ns"] = benchmark::Counter((double)lat[lat.size() * 99 / 100],
							   benchmark::Counter::kAvgThreads);
	st.SetItemsProcessed((int64_t)st.iterations() * 2);
	if (st.thread_index() == 0) {
		// Every thread's loop has ended (the closing barrier), but the others
		// may not have added their counts yet: wait for each (a fixed 20 ms
		// sleep here let a thread preempted longer on a loaded machine use
		// the deleted Bench: one segfault in 4 full runs at load 8).
		while (b->threads_done.load(std::memory_order_acquire) < st.threads())
			std::this_thread::yield();
		if (with_inval) {
			b->stop = true;
			b->inval.join();
			st.counters["inval_kops"] = benchmark::Counter(b->inval_ops / b->inval_secs / 1e3);
			st.counters["inval_target_kops"] = benchmark::Counter(b->inval_rate / 1e3);
			if (b->inval_dry)
				st.counters["inval_dry"] = benchmark::Counter(1);
			if (b->inval_ops)
				st.counters["inval_cpu_ns"] = benchmark::Counter(
					b->inval_cpu_secs * 1e9 / (double)b->inval_ops);
		}
		double hr;
		if constexpr (std::is_same<Impl, Engine>::value) {
			uint64_t h1, m1;
			b->impl.stats(&h1, &m1);
			hr = (double)(h1 - h0) / (double)((h1 - h0) + (m1 - m0) + 1);
		} else {
			hr = (double)b->hits / (double)(b->hits + b->misses + 1);
		}
		st.counters["hit_rate"] = benchmark::Counter(hr);
		delete b;
		bench_slot<Impl>() = nullptr;
	}
	iovt_thread_unregister();
}

// Every lookup a miss: a cyclic scan of 64K pool pages, larger than every
// cache (Scattered: miss_scattered/*, 1M pages in a permuted order).
template <class Impl, bool Scattered = false> void BM_miss(benchmark::State &st)
{
	iovt_thread_register();
	Bench<Impl> &b = *miss_bench<Impl>(Scattered ? SCATTERED_POOL : 65536);
	uint64_t i = 0, h0 = 0, m0 = 0;
	if constexpr (std::is_same<Impl, Engine>::value)
		b.impl.stats(&h0, &m0);
	uint64_t dep = 0;
	for (auto _ : st) {
		iovt_extent x;
		b.impl.lookup(b.g.buf(Scattered ? scattered(i++ + dep) : i++) + 8, &x);
		benchmark::DoNotOptimize(x);
		if (Scattered)
			dep = x.gpa >> 60; // 0, from the answer: see BM_walk
	}
	st.SetItemsProcessed((int64_t)st.iterations());
	if constexpr (std::is_same<Impl, Engine>::value) {
		uint64_t h1, m1;
		b.impl.stats(&h1, &m1);
		st.counters["hit_rate"] =
			benchmark::Counter((double)(h1 - h0) / (double)((h1 - h0) + (m1 - m0) + 1));
	}
	delete &b;
	iovt_thread_unregister();
}

// The hardware's share of the pool-size gap: the same lookup pattern as
// vhost/* (4 ring pages + the next pool buffer, plain or permuted order)
// over plain memory laid out as the engine's IOTLB is at that pool — a set
// line (iotlb_set_at's index), then its way 0's entry line in the table's
// line array (iotlb_line: way-major) — with
// nothing else: two dependent cache lines per lookup. Sets: as many as the
// engine's table has once grown for that pool (4096 entries for 256, 262144
// for 64K). What ref/lines loses from 256 to 64K, the engine cannot avoid
// with this layout.
void BM_ref_lines(benchmark::State &st)
{
	const uint64_t pool = (uint64_t)st.range(0);
	const bool shuffled = st.range(1) != 0;
	const uint64_t nsets = (pool > 4096 ? 262144 : 4096) / 8, shift = 64 - __builtin_ctzll(nsets);
	struct alignas(64) Line { uint64_t key, idx, pad[6]; };
	std::vector<Line> sets(nsets, Line{}), ents(nsets, Line{});
	// The engine's set index (engine/iotlb/iotlb_hit.h, iotlb_set_at):
	// groups of 64 consecutive pages on consecutive sets from a hashed base.
	auto set_of = [&](uint64_t page) {
		return (((page >> 6) * 0x9E3779B97F4A7C15ull >> shift) + page) & (nsets - 1);
	};
	for (uint64_t i = 0; i < pool + 4; i++) { // fill order: ring, then the pool
		uint64_t page = i < 4 ? (RING_IOVA >> 12) + i : (POOL_IOVA >> 12) + 2 * (i - 4);
		uint64_t set = set_of(page);
		ents[set].key = page;
		sets[set].idx = set; // collisions overwrite: a miss reads a wrong key, as dear
	}
	// Each lookup waits for the one before (dep: always 0, but loaded from
	// the entry): latency, not overlapped misses, as a lookup behind a call,
	// an RCU section and a copy-out effectively is. Without it the loads of
	// successive lookups overlap and 64K looks nearly free.
	uint64_t i = 0, sum = 0, dep = 0;
	for (auto _ : st) {
		uint64_t b = shuffled ? (i * 2654435761ull) % pool : i % pool;
		uint64_t pages[2] = { (RING_IOVA >> 12) + (i & 3), (POOL_IOVA >> 12) + 2 * b };
		for (uint64_t page : pages) {
			const Line &e = ents[sets[set_of(page + dep)].idx];
			sum += e.key == page;
			dep = e.pad[0]; // 0
		}
		i++;
	}
	benchmark::DoNotOptimize(sum);
	st.SetItemsProcessed((int64_t)st.iterations() * 2);
}

// The bare walk a miss should cost about (issue 12: "a miss costs about one
// walk"): the same cyclic scan as miss/*, each lookup only the guest walk of
// its page (the walker every implementation uses), nothing cached.
template <bool Scattered = false> void BM_walk(benchmark::State &st)
{
	Guest g(Scattered ? SCATTERED_POOL : 65536);
	uint64_t i = 0, dep = 0;
	for (auto _ : st) {
		iovt_extent x;
		bool ok = guest_walk(&g, g.buf(Scattered ? scattered(i++ + dep) : i++), &x);
		// Scattered: each walk waits for the one before (dep is 0 but
		// read from the answer), as a device waits for the translation it
		// missed on; without it the out-of-order core overlaps the cache
		// misses of successive walks, which the engine's locked
		// instructions (its fill's claim and publication) do not allow.
		if (Scattered)
			dep = ok ? x.gpa >> 60 : 1;
		benchmark::DoNotOptimize(ok);
		benchmark::DoNotOptimize(x);
	}
	st.SetItemsProcessed((int64_t)st.iterations());
}

template <class Impl> void reg()
{
	std::string n = std::string("vhost/") + Impl::name;
	benchmark::RegisterBenchmark(n.c_str(), BM_vhost<Impl>)
		->ArgNames({ "pool", "inval" })
		->ArgsProduct({ { 256, 4096, 65536 }, { 0, 1 } })
		->Threads(1)
		->Threads(2)
		->UseRealTime();
	n = std::string("vhost_shuffled/") + Impl::name;
	benchmark::RegisterBenchmark(n.c_str(), BM_vhost<Impl, true>)
		->ArgNames({ "pool", "inval" })
		->ArgsProduct({ { 256, 65536 }, { 0 } })
		->Threads(1)
		->UseRealTime();
	n = std::string("miss/") + Impl::name;
	benchmark::RegisterBenchmark(n.c_str(), BM_miss<Impl>)->UseRealTime();
	n = std::string("miss_scattered/") + Impl::name;
	benchmark::RegisterBenchmark(n.c_str(), BM_miss<Impl, true>)->UseRealTime();
}

}  // namespace

int main(int argc, char **argv)
{
	iovt_thread_register();
	reg<Engine>();
	reg<Qemu>();
	reg<Dpdk>();
	benchmark::RegisterBenchmark("miss/walk", BM_walk<>)->UseRealTime();
	benchmark::RegisterBenchmark("miss_scattered/walk", BM_walk<true>)->UseRealTime();
	benchmark::RegisterBenchmark("ref/lines", BM_ref_lines)
		->ArgNames({ "pool", "shuffled" })
		->ArgsProduct({ { 256, 4096, 65536 }, { 0, 1 } })
		->UseRealTime();
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::AddCustomContext("iovt_note",
		"items = lookups (2 per iteration: ring + buffer); hit_rate from the engine's "
		"iotlb counters or the baseline's own; p99_ns over 1 lookup pair in 64, per lookup");
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	iovt_thread_unregister();
	return 0;
}
