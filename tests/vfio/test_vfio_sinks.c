/* SPDX-License-Identifier: MIT */
/*
 * The real sinks on a host without /dev/vfio (argv[1] picks the sink:
 * type1, iommufd, dpdk):
 *  - caps per sink, and what the config changes (no_multi_unmap,
 *    no_unmap_all, max_mappings);
 *  - init errors passed through from the kernel (an fd that is not a
 *    container: -ENOTTY; fd < 0: -EBADF; a bad config: -EINVAL);
 *  - errno pass-through through the engine: a sink on a closed fd, a guest
 *    mapping, a fence: the fence returns -EBADF, the engine counts one sink
 *    failure per call, and its record is unchanged (translate misses);
 *  - the IOVA-range refusal: a MAP into the MSI window, across its edge, or
 *    beyond the last usable range is refused by the sink with -EINVAL and no
 *    kernel call (calls stay 0: with a closed fd a call would say -EBADF),
 *    counted by the engine as IOVT_ERR_SINK_MAP; alignment to the smallest
 *    page size likewise;
 *  - counters in host memory outlive the sink; the accessors refuse other
 *    sinks; an unattached sink is freed (ASan checks the leak).
 * DPDK (built with it): EAL is not initialised and there is no /dev/vfio,
 * so every rte call fails; the sink must return that errno (-ENODEV or
 * rte's answer) and the engine record stay empty. Built without DPDK the
 * constructor is -ENOTSUP and the test checks just that.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_vfio.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M2 0x200000ull

enum kind { TYPE1, IOMMUFD, DPDK };
static enum kind kind;

/* The ranges a 6.12 guest kernel reported for type1 (MSI window a hole). */
static const struct iovt_vfio_iova_range guest_ranges[2] = {
	{ 0, 0xfedfffffull }, { 0xfef00000ull, 0x7fffffffffull } };

static int sink_init(struct iovt_sink *s, int fd, const struct iovt_vfio_sink_config *cfg)
{
	switch (kind) {
	case TYPE1: return iovt_vfio_type1_sink_init(s, fd, cfg);
	case IOMMUFD: return iovt_iommufd_sink_init(s, fd, 1, cfg);
	default: return iovt_dpdk_vfio_sink_init(s, fd, cfg);
	}
}

/* An fd number that is not open. */
static int closed_fd(void)
{
	int p[2];
	CHECK(pipe(p) == 0);
	close(p[1]);
	close(p[0]);
	CHECK(fcntl(p[0], F_GETFD) == -1 && errno == EBADF);
	return p[0];
}

static void test_caps(void)
{
	struct iovt_sink s;
	struct iovt_vfio_sink_config cfg = { .no_query = true };
	int fd = kind == DPDK ? -1 : closed_fd();
	CHECK_EQ(sink_init(&s, fd, &cfg), 0);
	switch (kind) {
	case TYPE1:
		/* Without a query no unmap-all is assumed (it is an extension). */
		CHECK_EQ(s.caps.flags, IOVT_SINK_MULTI_UNMAP | IOVT_SINK_EXACT_UNMAPPED |
					       IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_PARTIAL_UNCOUNTED |
					       IOVT_SINK_UNMAP_EMPTY_ERR);
		CHECK_EQ(s.caps.max_mappings, 0);
		CHECK(strcmp(s.name, "vfio-type1") == 0);
		break;
	case IOMMUFD:
		CHECK_EQ(s.caps.flags, IOVT_SINK_MULTI_UNMAP | IOVT_SINK_UNMAP_ALL |
					       IOVT_SINK_UNMAP_EMPTY_ERR | IOVT_SINK_PARTIAL_UNMAP |
					       IOVT_SINK_PARTIAL_UNCOUNTED | IOVT_SINK_EXACT_UNMAPPED);
		CHECK_EQ(s.caps.max_mappings, 0);
		CHECK(strcmp(s.name, "iommufd") == 0);
		break;
	case DPDK:
		CHECK_EQ(s.caps.flags, IOVT_SINK_MULTI_UNMAP | IOVT_SINK_UNMAP_ALL |
					       IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_EXACT_UNMAPPED);
		CHECK_EQ(s.caps.max_mappings, 256);
		CHECK(strcmp(s.name, "dpdk-vfio") == 0);
		break;
	}
	CHECK_EQ(s.caps.page_sizes, 0x1000);
	struct iovt_vfio_sink_info in;
	CHECK_EQ(iovt_vfio_sink_info(&s, &in), 0);
	CHECK_EQ(in.nr_ranges, 1);
	CHECK_EQ(in.ranges[0].last, UINT64_MAX);
	iovt_vfio_sink_free(&s);
	CHECK(s.ops == NULL);

	cfg = (struct iovt_vfio_sink_config){ .no_query = true, .no_multi_unmap = true,
					      .no_unmap_all = true, .max_mappings = 100,
					      .page_sizes = 0x40201000ull, .nr_ranges = 2,
					      .ranges = guest_ranges };
	CHECK_EQ(sink_init(&s, fd, &cfg), 0);
	CHECK_EQ(s.caps.flags & (IOVT_SINK_MULTI_UNMAP | IOVT_SINK_UNMAP_ALL), 0);
	CHECK_EQ(s.caps.max_mappings, 100);
	CHECK_EQ(s.caps.page_sizes, 0x40201000ull);
	CHECK_EQ(iovt_vfio_sink_info(&s, &in), 0);
	CHECK_EQ(in.nr_ranges, 2);
	CHECK_EQ(in.ranges[1].first, 0xfef00000ull);
	iovt_vfio_sink_free(&s);

	/* Bad configs. */
	struct iovt_vfio_iova_range ov[2] = { { 0, 0x2fff }, { 0x2000, 0x5fff } };
	cfg = (struct iovt_vfio_sink_config){ .no_query = true, .nr_ranges = 2, .ranges = ov };
	CHECK_EQ(sink_init(&s, fd, &cfg), -EINVAL);
	cfg = (struct iovt_vfio_sink_config){ .no_query = true, .page_sizes = 0x800 };
	CHECK_EQ(sink_init(&s, fd, &cfg), -EINVAL);
	CHECK_EQ(sink_init(NULL, fd, &cfg), -EINVAL);
	if (kind != DPDK)
		CHECK_EQ(sink_init(&s, -1, NULL), -EBADF);
	else
		CHECK_EQ(sink_init(&s, -5, NULL), -EBADF);
}

/* The kernel's answer to a query on an fd that is no container. */
static void test_query_errors(void)
{
	if (kind == DPDK)
		return;
	struct iovt_sink s;
	int fd = open("/dev/null", O_RDWR);
	CHECK(fd >= 0);
	CHECK_EQ(sink_init(&s, fd, NULL), -ENOTTY);
	close(fd);
	CHECK_EQ(sink_init(&s, closed_fd(), NULL), -EBADF);
}

struct rig {
	struct guestsim *gs;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct iovt_sink sink;
	struct iovt_vfio_sink_counters cnt;
};

static void rig_init(struct rig *r, const struct iovt_vfio_sink_config *cfg_in)
{
	memset(r, 0, sizeof(*r));
	r->gs = gs_create(1, 64 * M2, 8 * M2);
	CHECK(r->gs);
	const struct gs_region *g = gs_region(r->gs, 0);
	CHECK_EQ(iovt_engine_create(NULL, &r->e), 0);
	CHECK_EQ(iovt_guest_ram_add(r->e, g->gpa, g->size, g->hva, NULL), 0);
	r->gd = gs_domain_create(r->gs, 48, true, false);
	CHECK(r->gd);
	struct iovt_domain_config dc = { .did = 1, .root_gpa = gs_domain_root(r->gd),
					 .addr_width = 48, .allow_2m = true };
	CHECK_EQ(iovt_domain_create(r->e, &dc, &r->d), 0);
	struct iovt_vfio_sink_config cfg = *cfg_in;
	cfg.counters = &r->cnt;
	CHECK_EQ(sink_init(&r->sink, kind == DPDK ? -1 : closed_fd(), &cfg), 0);
	/* Nothing mapped yet: the replay sends nothing. */
	CHECK_EQ(iovt_notifier_attach(r->d, IOVT_NOTIFY_IOTLB_EVENTS, &r->sink, &r->n), 0);
}

static void rig_fini(struct rig *r)
{
	CHECK_EQ(iovt_notifier_detach(r->n), 0); /* nothing held: no sink call */
	iovt_engine_destroy(r->e);
	gs_domain_destroy(r->gd);
	gs_destroy(r->gs);
}

static uint64_t sink_map_errors(struct rig *r)
{
	struct iovt_stats st;
	iovt_domain_stats_get(r->d, &st);
	return st.errors[IOVT_ERR_SINK_MAP];
}

/* Guest maps [iova, iova+size) at gpa, PSI over it, fence. */
static int guest_map(struct rig *r, uint64_t iova, uint64_t gpa, uint64_t size)
{
	CHECK_EQ(gs_map(r->gd, iova, gpa, size, IOVT_PERM_RW, GS_LEAF_LARGEST), 0);
	unsigned am = 0;
	/* The smallest aligned block holding the whole range. */
	while ((iova >> (12 + am)) != ((iova + size - 1) >> (12 + am)))
		am++;
	CHECK_EQ(iovt_invalidate_psi(r->e, 1, iova, am, false), 0);
	return iovt_fence(r->e);
}

static void guest_unmap(struct rig *r, uint64_t iova, uint64_t size)
{
	CHECK_EQ(gs_unmap(r->gd, iova, size), 0);
	CHECK_EQ(iovt_invalidate_dsi(r->e, 1), 0);
	CHECK_EQ(iovt_fence(r->e), 0); /* nothing was in the record: no call */
}

static void expect_miss(struct rig *r, uint64_t iova)
{
	struct iovt_extent x;
	CHECK_EQ(iovt_translate(r->d, iova, &x), -ENOENT);
}

static void test_errno_passthrough(void)
{
	struct rig r;
	struct iovt_vfio_sink_config cfg = { .no_query = true, .nr_ranges = 2,
					     .ranges = guest_ranges };
	rig_init(&r, &cfg);
	int want = -EBADF;
	if (kind == DPDK) {
		/* No EAL, no /dev/vfio: learn rte's answer from one call, then
		 * hold the engine to it. */
		struct iovt_extent m = { .iova = 0x100000, .size = K, .gpa = 0,
					 .hva = (uint64_t)(uintptr_t)gs_hva(r.gs, 0),
					 .perm = IOVT_PERM_RW };
		struct iovt_sink probe;
		CHECK_EQ(iovt_dpdk_vfio_sink_init(&probe, -1, NULL), 0);
		want = probe.ops->map(probe.ctx, &m);
		CHECK(want < 0);
		printf("vfio-dpdk-sink: rte_vfio_container_dma_map without EAL/VFIO: %s\n",
		       strerror(-want));
		iovt_vfio_sink_free(&probe);
	}
	CHECK_EQ(guest_map(&r, 0x100000, 0x200000, 2 * K), want);
	CHECK_EQ(sink_map_errors(&r), 1);
	CHECK_EQ(r.cnt.map_calls, 1);
	CHECK_EQ(r.cnt.map_errors, 1);
	CHECK_EQ(r.cnt.refused, 0);
	CHECK_EQ(r.cnt.last_errno, -want);
	CHECK(r.cnt.map_ns > 0);
	expect_miss(&r, 0x100000);
	expect_miss(&r, 0x101000);
	struct iovt_stats st;
	iovt_domain_stats_get(r.d, &st);
	CHECK_EQ(st.extents, 0);
	/* The next fence retries it, and fails the same way. */
	CHECK_EQ(iovt_fence(r.e), want);
	CHECK_EQ(r.cnt.map_calls, 2);
	CHECK_EQ(sink_map_errors(&r), 2);
	expect_miss(&r, 0x100000);
	guest_unmap(&r, 0x100000, 2 * K);
	CHECK_EQ(iovt_fence(r.e), 0);
	CHECK_EQ(r.cnt.map_calls, 2);

	/* UNMAP and unmap-all straight through the ops: the kernel's errno,
	 * 0 bytes reported. (DPDK holds nothing, so its UNMAPs make no call.) */
	uint64_t done = 77;
	if (kind != DPDK) {
		CHECK_EQ(r.sink.ops->unmap(r.sink.ctx, 0x100000, 4 * K, &done), -EBADF);
		CHECK_EQ(done, 0);
		CHECK_EQ(r.cnt.unmap_errors, 1);
	}
	if (kind == IOMMUFD) {
		done = 77;
		CHECK_EQ(r.sink.ops->unmap_all(r.sink.ctx, &done), -EBADF);
		CHECK_EQ(done, 0);
		CHECK_EQ(r.cnt.unmap_all_errors, 1);
	}
	/* Unaligned UNMAP: refused before any call. */
	uint64_t calls = r.cnt.unmap_calls;
	CHECK_EQ(r.sink.ops->unmap(r.sink.ctx, 0x100800, 4 * K, &done), -EINVAL);
	CHECK_EQ(r.cnt.unmap_calls, calls);
	rig_fini(&r);
}

static void test_range_refusal(void)
{
	struct rig r;
	struct iovt_vfio_sink_config cfg = { .no_query = true, .nr_ranges = 2,
					     .ranges = guest_ranges };
	rig_init(&r, &cfg);
	struct { uint64_t iova, size; } bad[] = {
		{ 0xfee00000ull, K },           /* inside the MSI window */
		{ 0xfedff000ull, 2 * K },       /* across its lower edge */
		{ 0xfeeff000ull, 2 * K },       /* across its upper edge */
		{ 0x7ffffff000ull, 2 * K },     /* past the last range */
		{ 0x10000000000ull, M2 },       /* far beyond */
	};
	uint64_t n = sizeof(bad) / sizeof(bad[0]);
	for (uint64_t i = 0; i < n; i++) {
		CHECK_EQ(guest_map(&r, bad[i].iova, 0x400000, bad[i].size), -EINVAL);
		CHECK_EQ(r.cnt.refused, i + 1);
		CHECK_EQ(r.cnt.map_calls, 0); /* no kernel call */
		CHECK_EQ(r.cnt.last_errno, EINVAL);
		CHECK_EQ(sink_map_errors(&r), i + 1);
		expect_miss(&r, bad[i].iova);
		guest_unmap(&r, bad[i].iova, bad[i].size);
	}
	/* Inside a range: the sink does call (and the closed fd answers). */
	int rc = guest_map(&r, 0xfef00000ull, 0x400000, K);
	CHECK(rc != -EINVAL && rc < 0);
	CHECK_EQ(r.cnt.map_calls, 1);
	CHECK_EQ(r.cnt.refused, n);
	guest_unmap(&r, 0xfef00000ull, K);
	rig_fini(&r);

	/* Alignment to the smallest page size: a sink of 64 KiB pages refuses
	 * a 4 KiB MAP itself, and the engine refuses to attach it as a MAP
	 * sink (it maps runs of 4 KiB pages: every MAP would fail, retried
	 * forever; found by review), counted as bad_argument. */
	cfg = (struct iovt_vfio_sink_config){ .no_query = true, .page_sizes = 0x10000 };
	{
		struct iovt_vfio_sink_counters cnt;
		struct iovt_engine *e;
		struct iovt_domain *d;
		struct iovt_notifier *n = NULL;
		struct iovt_sink s64;
		cfg.counters = &cnt;
		CHECK_EQ(sink_init(&s64, kind == DPDK ? -1 : closed_fd(), &cfg), 0);
		CHECK_EQ(iovt_engine_create(NULL, &e), 0);
		struct iovt_domain_config dc = { .did = 1, .root_gpa = 0x1000, .addr_width = 48 };
		CHECK_EQ(iovt_domain_create(e, &dc, &d), 0);
		struct iovt_stats st;
		iovt_stats_get(e, &st);
		const uint64_t bad0 = st.errors[IOVT_ERR_BAD_ARGUMENT];
		CHECK_EQ(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s64, &n), -EINVAL);
		CHECK(n == NULL);
		iovt_stats_get(e, &st);
		CHECK_EQ(st.errors[IOVT_ERR_BAD_ARGUMENT], bad0 + 1);
		struct iovt_extent x = { .iova = 0x100000, .size = K, .gpa = 0x400000,
					 .hva = 0x7f0000400000ull, .perm = IOVT_PERM_RW };
		CHECK_EQ(s64.ops->map(s64.ctx, &x), -EINVAL);
		CHECK_EQ(cnt.refused, 1);
		CHECK_EQ(cnt.map_calls, 0);
		s64.ops->destroy(s64.ctx);
		CHECK_EQ(iovt_domain_destroy(d), 0);
		iovt_engine_destroy(e);
	}
}

static void test_accessors(void)
{
	struct iovt_sink cb;
	struct iovt_vfio_sink_counters c;
	struct iovt_vfio_sink_info in;
	CHECK_EQ(iovt_callback_sink_init(&cb, (iovt_event_fn)(void (*)(void))test_accessors, NULL,
					 NULL), 0);
	CHECK_EQ(iovt_vfio_sink_counters(&cb, &c), -EINVAL);
	CHECK_EQ(iovt_vfio_sink_info(&cb, &in), -EINVAL);
	CHECK_EQ(iovt_vfio_sink_counters(NULL, &c), -EINVAL);
	cb.ops->destroy(cb.ctx);

	/* Counters inside the sink, read through the accessor. */
	struct iovt_sink s;
	struct iovt_vfio_sink_config cfg = { .no_query = true };
	CHECK_EQ(sink_init(&s, kind == DPDK ? -1 : closed_fd(), &cfg), 0);
	struct iovt_extent m = { .iova = 0x1000, .size = 0x1800, .hva = 0x10000, .perm = 3 };
	CHECK_EQ(s.ops->map(s.ctx, &m), -EINVAL); /* unaligned size */
	CHECK_EQ(iovt_vfio_sink_counters(&s, &c), 0);
	CHECK_EQ(c.refused, 1);
	CHECK_EQ(c.map_calls, 0);
	m.size = 0x1000;
	m.perm = 0;
	CHECK_EQ(s.ops->map(s.ctx, &m), -EINVAL); /* no permission */
	CHECK_EQ(iovt_vfio_sink_counters(&s, &c), 0);
	CHECK_EQ(c.refused, 2);
	iovt_vfio_sink_free(&s);
}

/* DPDK maps read+write whatever the extent says: a narrower grant is
 * refused (-EPERM, counted, no call) unless the host allows the upgrade
 * (found by review: read-only extents were mapped writable). */
static void test_dpdk_perm(void)
{
	for (int allow = 0; allow < 2; allow++) {
		struct iovt_vfio_sink_counters cnt;
		struct iovt_vfio_sink_config cfg = { .no_query = true, .counters = &cnt,
						     .dpdk_upgrade_to_rw = allow };
		struct iovt_sink s;
		CHECK_EQ(iovt_dpdk_vfio_sink_init(&s, -1, &cfg), 0);
		static uint8_t buf[2 * 4096] __attribute__((aligned(4096)));
		for (uint32_t perm = IOVT_PERM_R; perm <= IOVT_PERM_W; perm++) {
			struct iovt_extent m = { .iova = 0x100000, .size = K, .gpa = 0,
						 .hva = (uint64_t)(uintptr_t)buf, .perm = perm };
			int rc = s.ops->map(s.ctx, &m);
			if (!allow)
				CHECK_EQ(rc, -EPERM);
			else
				CHECK(rc != -EPERM); /* DPDK's own answer (no EAL here) */
		}
		CHECK_EQ(cnt.refused, allow ? 0 : 2);
		CHECK_EQ(cnt.map_calls, allow ? 2 : 0);
		iovt_vfio_sink_free(&s);
	}
}

int main(int argc, char **argv)
{
	const char *k = argc > 1 ? argv[1] : "type1";
	kind = !strcmp(k, "iommufd") ? IOMMUFD : !strcmp(k, "dpdk") ? DPDK : TYPE1;
	check_pick_seed("vfio-sinks");
	iovt_thread_register();
	if (kind == DPDK) {
		struct iovt_sink s;
		int rc = iovt_dpdk_vfio_sink_init(&s, -1, NULL);
#ifdef IOVT_HAVE_DPDK
		CHECK_EQ(rc, 0);
		iovt_vfio_sink_free(&s);
#else
		CHECK_EQ(rc, -ENOTSUP);
		printf("vfio-dpdk-sink: built without DPDK: the tests' stub answers -ENOTSUP\n");
		return 0;
#endif
	}
	test_caps();
	test_query_errors();
	test_accessors();
	test_errno_passthrough();
	test_range_refusal();
	if (kind == DPDK)
		test_dpdk_perm();
	iovt_thread_unregister();
	printf("vfio-%s-sink: ok\n", k);
	return 0;
}
