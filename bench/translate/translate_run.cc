// SPDX-License-Identifier: MIT
// translate_run.h: the workload of translate_impls.hh timed by the clock
// instead of Google Benchmark (the storm driver has no gbench).
#include "translate_run.h"

#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>

#include "translate_impls.hh"

using namespace tbench;

namespace {

using clk = std::chrono::steady_clock;

// One line each: two readers' hit counts, bumped every step, in one line
// bounced it between their CPUs.
struct alignas(64) Reader {
	uint64_t lookups = 0, hits = 0;
	std::vector<uint32_t> lat;
};

template <class Impl>
int vhost(unsigned pool, unsigned threads, bool inval, double seconds, translate_figures *out)
{
	std::unique_ptr<Bench<Impl>> b(new Bench<Impl>(pool));
	b->warm_up();
	std::atomic<bool> go{ false }, stop{ false };
	std::vector<Reader> rd(threads);
	std::vector<std::thread> th;
	uint64_t h0 = 0, m0 = 0;
	if constexpr (std::is_same<Impl, Engine>::value)
		b->impl.stats(&h0, &m0);
	for (unsigned t = 0; t < threads; t++)
		th.emplace_back([&, t] {
			iovt_thread_register();
			Reader &r = rd[t];
			r.lat.reserve(1 << 16);
			uint64_t i = (uint64_t)t * 7919, n = 0;
			while (!go.load(std::memory_order_acquire))
				;
			while (!stop.load(std::memory_order_relaxed)) {
				iovt_extent x[2];
				bool timed = (n & 63) == 0;
				auto t0 = timed ? clk::now() : clk::time_point();
				r.hits += vhost_step(b.get(), i, x);
				if (timed && r.lat.size() < (1u << 20))
					r.lat.push_back((uint32_t)(std::chrono::duration_cast<
						std::chrono::nanoseconds>(clk::now() - t0).count() / 2));
				i++;
				n++;
			}
			r.lookups = 2 * n;
			iovt_thread_unregister();
		});
	if (inval)
		b->inval = std::thread(&Bench<Impl>::invalidator, b.get());
	auto t0 = clk::now();
	go.store(true, std::memory_order_release);
	std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
	stop = true;
	for (auto &t : th)
		t.join();
	double secs = std::chrono::duration<double>(clk::now() - t0).count();
	if (inval) {
		b->stop = true;
		b->inval.join();
	}
	uint64_t lookups = 0, hits = 0;
	std::vector<uint32_t> lat;
	for (auto &r : rd) {
		lookups += r.lookups;
		hits += r.hits;
		lat.insert(lat.end(), r.lat.begin(), r.lat.end());
	}
	std::sort(lat.begin(), lat.end());
	*out = translate_figures{};
	out->lookups_per_s = lookups / secs;
	if constexpr (std::is_same<Impl, Engine>::value) {
		uint64_t h1, m1;
		b->impl.stats(&h1, &m1);
		uint64_t all = (h1 - h0) + (m1 - m0);
		out->hit_rate = all ? (double)(h1 - h0) / all : 0;
	} else {
		out->hit_rate = lookups ? (double)hits / lookups : 0;
	}
	out->p99_ns = lat.empty() ? 0 : lat[(lat.size() - 1) * 99 / 100];
	out->inval_kops = inval && b->inval_secs > 0 ? b->inval_ops / b->inval_secs / 1e3 : 0;
	out->inval_target_kops = inval ? b->inval_rate / 1e3 : 0;
	out->inval_dry = inval && b->inval_dry ? 1 : 0;
	return 0;
}

template <class Impl> int miss(double seconds, translate_figures *out)
{
	std::unique_ptr<Bench<Impl>> bp(miss_bench<Impl>());
	Bench<Impl> &b = *bp;
	uint64_t i = 0;
	auto t0 = clk::now(), end = t0 + std::chrono::duration_cast<clk::duration>(
						 std::chrono::duration<double>(seconds));
	volatile uint64_t sink = 0;
	do {
		for (int k = 0; k < 256; k++) {
			iovt_extent x = {};
			b.impl.lookup(b.g.buf(i++) + 8, &x);
			sink = sink + x.hva;
		}
	} while (clk::now() < end);
	double secs = std::chrono::duration<double>(clk::now() - t0).count();
	*out = translate_figures{};
	out->miss_ns = secs * 1e9 / i;
	out->lookups_per_s = i / secs;
	return 0;
}

}  // namespace

extern "C" const char *translate_impl_name(enum translate_impl impl)
{
	static const char *const names[] = { Engine::name, Qemu::name, Dpdk::name };
	return impl < TRANSLATE_IMPLS ? names[impl] : "?";
}

extern "C" int translate_vhost_run(enum translate_impl impl, unsigned pool, unsigned threads,
				   int inval, double seconds, struct translate_figures *out)
{
	if (!pool || !threads || threads > 64 || !(seconds > 0))
		return -1;
	switch (impl) {
	case TRANSLATE_ENGINE: return vhost<Engine>(pool, threads, inval, seconds, out);
	case TRANSLATE_QEMU: return vhost<Qemu>(pool, threads, inval, seconds, out);
	case TRANSLATE_DPDK: return vhost<Dpdk>(pool, threads, inval, seconds, out);
	default: return -1;
	}
}

extern "C" int translate_miss_run(enum translate_impl impl, double seconds,
				  struct translate_figures *out)
{
	if (!(seconds > 0))
		return -1;
	switch (impl) {
	case TRANSLATE_ENGINE: return miss<Engine>(seconds, out);
	case TRANSLATE_QEMU: return miss<Qemu>(seconds, out);
	case TRANSLATE_DPDK: return miss<Dpdk>(seconds, out);
	default: return -1;
	}
}
