// SPDX-License-Identifier: MIT
//
// fence/<workload>/<side>: issue 13's fixed-cost table as benchmarks. Each
// iteration is one guest PTE edit + one strict PSI + the wait on a null sink
// (bench/gbench/fence_support.h); sides engine_queue (iovt_queue_psi +
// iovt_queue_fence, drained inline), engine_legacy (iovt_invalidate_psi +
// iovt_fence) and baseline (the QEMU-style baseline) run the same guest.
// Counters: p50_ns / p90_ns / p99_ns / tmean_ns (the mean of p10..p90) /
// mean_ns (of every iteration: what a churn step's occasional leaf copy
// costs shows here and in p90, not in p50) of single iterations (rdtsc,
// calibrated against CLOCK_MONOTONIC), calls_per_step
// (sink calls). first_post/engine_legacy runs each step on a new thread (its
// creation and exit are not in p50, but are in the mean): p50 is a thread's
// first PSI + wait, implicit queue included. Compare sides in one run:
//   iovt-gbench --benchmark_filter='^fence/' --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <time.h>
#include <x86intrin.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fence_support.h"

namespace {

double tsc_ns_per_tick()
{
	static double r = [] {
		timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		uint64_t t0 = __rdtsc();
		do
			clock_gettime(CLOCK_MONOTONIC, &b);
		while ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec) < 20e6);
		uint64_t t1 = __rdtsc();
		return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / double(t1 - t0);
	}();
	return r;
}

void BM_fence(benchmark::State &state, fb_workload wl, fb_side side)
{
	fb_world *w = fb_create(side, wl);
	if (!w) {
		state.SkipWithError("setup failed");
		return;
	}
	std::vector<uint32_t> ticks;
	ticks.reserve(1 << 20);
	uint64_t i = 0, calls0 = fb_sink_calls(w), errors = 0;
	const bool new_thread = wl == FB_FIRST_POST && side == FB_LEGACY;
	for (auto _ : state) {
		uint64_t dt;
		if (new_thread) {
			dt = fb_step_new_thread(w, i++);
			errors += dt == UINT64_MAX;
		} else {
			uint64_t t0 = __rdtsc();
			errors += fb_step(w, i++) != 0;
			dt = __rdtsc() - t0;
		}
		if (ticks.size() < ticks.capacity())
			ticks.push_back(uint32_t(std::min<uint64_t>(dt, UINT32_MAX)));
	}
	if (errors)
		state.SkipWithError("a fence failed");
	if (!ticks.empty()) {
		std::sort(ticks.begin(), ticks.end());
		double k = tsc_ns_per_tick();
		state.counters["p50_ns"] = ticks[ticks.size() / 2] * k;
		state.counters["p90_ns"] = ticks[ticks.size() * 90 / 100] * k;
		state.counters["p99_ns"] = ticks[ticks.size() * 99 / 100] * k;
		/* The mean of the middle 80%: finer than p50 where the TSC reads
		 * in 10 ns steps (its quantisation averages out), and like p50
		 * deaf to the preemptions a busy machine adds. */
		size_t lo = ticks.size() / 10, hi = ticks.size() - ticks.size() / 10;
		double sum = 0;
		for (size_t j = lo; j < hi; j++)
			sum += ticks[j];
		state.counters["tmean_ns"] = hi > lo ? sum / double(hi - lo) * k : 0;
		double all = 0;
		for (uint32_t t : ticks)
			all += t;
		state.counters["mean_ns"] = all / double(ticks.size()) * k;
	}
	state.counters["calls_per_step"] = double(fb_sink_calls(w) - calls0) / double(i ? i : 1);
	state.SetItemsProcessed(int64_t(i));
	fb_destroy(w);
}

struct Register {
	Register()
	{
		for (int wl = 0; wl < FB_WORKLOADS; wl++)
			for (int side : { FB_QUEUE, FB_LEGACY, FB_BASELINE }) {
				if (!fb_has_side(fb_workload(wl), fb_side(side)))
					continue;
				std::string name = std::string("fence/") + fb_workload_name(fb_workload(wl)) + "/" +
						   fb_side_name(fb_side(side));
				benchmark::RegisterBenchmark(name.c_str(), BM_fence, fb_workload(wl), fb_side(side));
			}
	}
} reg;

} // namespace
