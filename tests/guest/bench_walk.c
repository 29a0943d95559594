/* SPDX-License-Identifier: MIT */
/* Walk speed: one domain, 1M 4 KiB leaves (4 GiB), a trivial leaf callback. */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "check.h"
#include "common/rcu.h"
#include "guestsim.h"
#include "iovt.h"

CHECK_SEED_STORAGE;

static int count_leaf(void *arg, const struct vtd_leaf *l)
{
	*(uint64_t *)arg += l->gpa; /* touch the leaf so the call is not trivial */
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void)
{
	const uint64_t leaves = 1u << 20;
	urcu_memb_register_thread();
	struct guestsim *gs = gs_create(2, 64ull << 20, 32ull << 20);
	CHECK(gs);
	struct gs_domain *d = gs_domain_create(gs, 48, true, true);
	CHECK(d);
	/* Scattered targets so no leaf could merge; forced 4K leaves. */
	uint64_t data = gs_region(gs, 1)->gpa;
	for (uint64_t i = 0; i < leaves; i += 512)
		CHECK_EQ(gs_map(d, (1ull << 32) + i * 4096, data + (i & 0xffff) * 4096, 512 * 4096,
				IOVT_PERM_RW, GS_LEAF_4K), 0);
	struct guest_ram *ram = gs_ram(gs);
	struct vtd_walk_params p;
	gs_domain_params(d, &p);
	static const struct vtd_walk_ops ops = { count_leaf, NULL };
	double best = 1e9;
	for (int rep = 0; rep < 7; rep++) {
		struct vtd_walk_stats st = { 0 };
		uint64_t sum = 0;
		double t0 = now();
		iovt_rcu_read_lock();
		CHECK_EQ(vtd_walk(ram, &p, &ops, &sum, &st), 0);
		iovt_rcu_read_unlock();
		double dt = now() - t0;
		CHECK_EQ(st.leaves, leaves);
		if (dt < best)
			best = dt;
	}
	printf("walk-speed: %" PRIu64 " 4 KiB leaves, best of 7: %.2f ms, %.2f ns/leaf\n", leaves,
	       best * 1e3, best * 1e9 / leaves);
	gs_destroy(gs);
	urcu_memb_unregister_thread();
	return 0;
}
