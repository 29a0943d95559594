/* SPDX-License-Identifier: MIT */
/*
 * iovt-vfio-guest: the real sinks against a real kernel. Runs inside the
 * QEMU guest that scripts/vfio-guest-test.sh boots (emulated VT-d in caching
 * mode, the `edu` device bound to vfio-pci), linked fully static.
 *
 *   iovt-vfio-guest <BDF> <type1|iommufd> [scale]
 *
 * For the chosen sink it attaches the edu device (type1: a container with
 * the device's group, VFIO_TYPE1v2_IOMMU; iommufd: /dev/iommu, an IOAS, the
 * device's cdev bound and attached to it) and runs scenarios, each with a
 * fresh engine, a simulated guest (tests/support/guestsim: VT-d tables in
 * this process's memory, which is what the sink maps) and the real sink
 * attached as the domain's MAP notifier:
 *   strict-dma, map4k-psi2m, lazy, huge-2m, dsi-unchanged, remap,
 *   iova-range-refusal, differential, edu-dma, cost.
 * After each one the judges:
 *   1. every fence returned 0 (the refusal scenario: exactly its one
 *      refusal), and the kernel rejected no call (sink error counters 0);
 *   2. engine == guest: every page of the guest truth translates through the
 *      engine to the same GPA and permission, and the engine holds no other
 *      extent (domain stats `extents` equals the extents found);
 *   3. kernel == engine: a one-page MAP probe at the first and last page of
 *      every extent is refused -EEXIST by the kernel (it holds something
 *      there), and detaching the notifier makes the engine send one
 *      unmap-all whose reply is exactly the bytes the engine had mapped.
 * Lines start with "iovt-vfio-guest:"; the last one is
 *   iovt-vfio-guest: RESULT sink=<s> scenarios=N failed=N calls=N rejected=N
 *                    refused=N map_ns=N unmap_ns=N
 * Exit 0 only when every scenario passed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "guestsim.h"
#include "iovt.h"
#include "iovt_vfio.h"
#include "sinks/iommufd_abi.h"

#define K 0x1000ull
#define M2 0x200000ull
#define M1 0x100000ull

#define say(...) (printf("iovt-vfio-guest: " __VA_ARGS__), fflush(stdout))

/* ------------------------------------------------------------------ device */

enum backend { TYPE1, IOMMUFD };

struct dev {
	enum backend be;
	const char *bdf;
	int container, group, iommufd, device;
	uint32_t ioas;
	volatile uint8_t *bar0;
	size_t bar0_size;
};

static int fail(const char *what)
{
	say("setup: %s: %s\n", what, strerror(errno));
	return -1;
}

static int open_type1(struct dev *d)
{
	char path[PATH_MAX + 64], link[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", d->bdf);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return fail("iommu_group link");
	link[n] = 0;
	const char *grp = strrchr(link, '/');
	grp = grp ? grp + 1 : link;
	d->container = open("/dev/vfio/vfio", O_RDWR);
	if (d->container < 0)
		return fail("/dev/vfio/vfio");
	if (ioctl(d->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		return fail("VFIO_GET_API_VERSION");
	snprintf(path, sizeof(path), "/dev/vfio/%s", grp);
	d->group = open(path, O_RDWR);
	if (d->group < 0)
		return fail(path);
	struct vfio_group_status st = { .argsz = sizeof(st) };
	if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &st) || !(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		return fail("group not viable");
	if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container))
		return fail("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return fail("VFIO_SET_IOMMU");
	d->device = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, d->bdf);
	if (d->device < 0)
		return fail("VFIO_GROUP_GET_DEVICE_FD");
	say("type1: group %s, container fd %d\n", grp, d->container);
	return 0;
}

static int open_iommufd(struct dev *d)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", d->bdf);
	DIR *dir = opendir(path);
	if (!dir)
		return fail("vfio-dev dir (CONFIG_VFIO_DEVICE_CDEV?)");
	struct dirent *de;
	char name[256] = "";
	while ((de = readdir(dir)))
		if (!strncmp(de->d_name, "vfio", 4))
			snprintf(name, sizeof(name), "%s", de->d_name);
	closedir(dir);
	if (!name[0])
		return fail("no vfio cdev");
	snprintf(path, sizeof(path), "/dev/vfio/devices/%s", name);
	d->device = open(path, O_RDWR);
	if (d->device < 0)
		return fail(path);
	d->iommufd = open("/dev/iommu", O_RDWR);
	if (d->iommufd < 0)
		return fail("/dev/iommu");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = d->iommufd };
	if (ioctl(d->device, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		return fail("VFIO_DEVICE_BIND_IOMMUFD");
	struct iommu_ioas_alloc al = { .size = sizeof(al) };
	if (ioctl(d->iommufd, IOMMU_IOAS_ALLOC, &al))
		return fail("IOMMU_IOAS_ALLOC");
	d->ioas = al.out_ioas_id;
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = d->ioas };
	if (ioctl(d->device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	say("iommufd: device %s, ioas %u\n", name, d->ioas);
	return 0;
}

static int open_bar0(struct dev *d)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = VFIO_PCI_BAR0_REGION_INDEX };
	if (ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, &ri))
		return fail("BAR0 region info");
	if (!(ri.flags & VFIO_REGION_INFO_FLAG_MMAP))
		return fail("BAR0 not mmappable");
	void *p = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, d->device, ri.offset);
	if (p == MAP_FAILED)
		return fail("mmap BAR0");
	d->bar0 = p;
	d->bar0_size = ri.size;
	/* Memory space + bus master in PCI_COMMAND (config offset 4). */
	struct vfio_region_info ci = { .argsz = sizeof(ci), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	if (ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, &ci))
		return fail("config region info");
	uint16_t cmd;
	if (pread(d->device, &cmd, 2, ci.offset + 4) != 2)
		return fail("read PCI_COMMAND");
	cmd |= 0x6;
	if (pwrite(d->device, &cmd, 2, ci.offset + 4) != 2)
		return fail("write PCI_COMMAND");
	uint32_t id = *(volatile uint32_t *)(d->bar0 + 0);
	say("edu: BAR0 %zu bytes, id 0x%08x\n", d->bar0_size, id);
	return (id & 0xff) == 0xed ? 0 : (errno = ENODEV, fail("edu id"));
}

/* A MAP the kernel is asked directly (verification probes, not the sink). */
static int raw_map(struct dev *d, uint64_t iova, uint64_t size, uint64_t hva)
{
	if (d->be == TYPE1) {
		struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = hva, .iova = iova, .size = size };
		return ioctl(d->container, VFIO_IOMMU_MAP_DMA, &m) ? -errno : 0;
	}
	struct iommu_ioas_map m = { .size = sizeof(m),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = d->ioas, .user_va = hva, .length = size, .iova = iova };
	return ioctl(d->iommufd, IOMMU_IOAS_MAP, &m) ? -errno : 0;
}

static int raw_unmap(struct dev *d, uint64_t iova, uint64_t size)
{
	if (d->be == TYPE1) {
		struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = iova, .size = size };
		return ioctl(d->container, VFIO_IOMMU_UNMAP_DMA, &u) ? -errno : 0;
	}
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = d->ioas, .iova = iova,
				      .length = size };
	return ioctl(d->iommufd, IOMMU_IOAS_UNMAP, &u) ? -errno : 0;
}

/* edu DMA: count bytes from src to dst (one of them the edu buffer at
 * 0x40000), dir 0 RAM->edu, 1 edu->RAM. 0, or -ETIMEDOUT. */
static int edu_dma(struct dev *d, uint64_t src, uint64_t dst, uint64_t count, int dir)
{
	volatile uint64_t *r = (volatile uint64_t *)(d->bar0 + 0x80);
	r[0] = src;
	r[1] = dst;
	r[2] = count;
	r[3] = 1 | (dir ? 2 : 0);
	for (int i = 0; i < 20000; i++) {
		if (!(r[3] & 1))
			return 0;
		usleep(100);
	}
	return -ETIMEDOUT;
}

/* ------------------------------------------------------------------ rig */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct rig {
	struct dev *dev;
	struct guestsim *gs;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct iovt_sink sink;
	struct iovt_vfio_sink_counters cnt;
	uint64_t data_gpa, data_pages; /* region 1: buffers */
	uint64_t fences, fence_errors, expect_refused;
	int first_fence_err;
	char why[256];
	bool bad;
};

static void rig_bad(struct rig *r, const char *fmt, ...)
{
	if (r->bad)
		return;
	r->bad = true;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

static int rig_init(struct rig *r, struct dev *dev)
{
	memset(r, 0, sizeof(*r));
	r->dev = dev;
	/* Region 0 (tables at its end) at GPA 0, region 1 after a 1 GiB hole. */
	r->gs = gs_create(2, 128 * M1, 16 * M1);
	if (!r->gs)
		return -ENOMEM;
	struct iovt_config ec = { 0 };
	int rc = iovt_engine_create(&ec, &r->e);
	if (rc)
		return rc;
	for (unsigned i = 0; i < 2; i++) {
		const struct gs_region *g = gs_region(r->gs, i);
		rc = iovt_guest_ram_add(r->e, g->gpa, g->size, g->hva, NULL);
		if (rc)
			return rc;
	}
	r->data_gpa = gs_region(r->gs, 1)->gpa;
	r->data_pages = gs_region_data_size(r->gs, 1) / K;
	r->gd = gs_domain_create(r->gs, 48, true, false);
	if (!r->gd)
		return -ENOMEM;
	struct iovt_domain_config dc = { .did = 1, .root_gpa = gs_domain_root(r->gd),
					 .addr_width = 48, .allow_2m = true };
	rc = iovt_domain_create(r->e, &dc, &r->d);
	if (rc)
		return rc;
	struct iovt_vfio_sink_config cfg = { .counters = &r->cnt };
	rc = dev->be == TYPE1 ? iovt_vfio_type1_sink_init(&r->sink, dev->container, &cfg)
			      : iovt_iommufd_sink_init(&r->sink, dev->iommufd, dev->ioas, &cfg);
	if (rc)
		return rc;
	return iovt_notifier_attach(r->d, IOVT_NOTIFY_IOTLB_EVENTS, &r->sink, &r->n);
}

static int fence(struct rig *r)
{
	int rc = iovt_fence(r->e);
	r->fences++;
	if (rc) {
		r->fence_errors++;
		if (!r->first_fence_err)
			r->first_fence_err = rc;
	}
	return rc;
}

/* PSIs the way Linux sends them: the smallest aligned block holding the
 * range when its order is <= max_am, else a DSI. */
static void inv_range(struct rig *r, uint64_t iova, uint64_t size, bool ih)
{
	unsigned am = 0;
	while ((iova >> (12 + am)) != ((iova + size - 1) >> (12 + am)))
		am++;
	if (am <= 9)
		iovt_invalidate_psi(r->e, 1, iova, am, ih);
	else
		iovt_invalidate_dsi(r->e, 1);
}

static void gmap(struct rig *r, uint64_t iova, uint64_t gpa, uint64_t size, uint32_t perm,
		 uint64_t policy)
{
	int rc = gs_map(r->gd, iova, gpa, size, perm, policy);
	if (rc)
		rig_bad(r, "gs_map %#" PRIx64 "+%#" PRIx64 ": %d", iova, size, rc);
}

static void gunmap(struct rig *r, uint64_t iova, uint64_t size)
{
	int rc = gs_unmap(r->gd, iova, size);
	if (rc)
		rig_bad(r, "gs_unmap %#" PRIx64 ": %d", iova, size, rc);
}

static uint64_t calls(const struct iovt_vfio_sink_counters *c)
{
	return c->map_calls + c->unmap_calls + c->unmap_all_calls;
}

static uint64_t rejected(const struct iovt_vfio_sink_counters *c)
{
	return c->map_errors + c->unmap_errors + c->unmap_all_errors;
}

/* Engine == guest truth. */
struct ext_list {
	struct iovt_extent *v;
	size_t n, cap;
	uint64_t bytes;
	uint64_t mismatches;
	struct rig *r;
};

static void truth_page(void *arg, uint64_t iova, uint64_t gpa, uint32_t perm)
{
	struct ext_list *l = arg;
	struct iovt_extent x;
	if (iovt_translate(l->r->d, iova, &x)) {
		if (!l->mismatches++)
			rig_bad(l->r, "engine misses guest page %#" PRIx64, iova);
		return;
	}
	if (x.gpa + (iova - x.iova) != gpa || x.perm != perm) {
		if (!l->mismatches++)
			rig_bad(l->r, "engine page %#" PRIx64 " -> %#" PRIx64 "/%u, guest %#" PRIx64 "/%u",
				iova, x.gpa + (iova - x.iova), x.perm, gpa, perm);
		return;
	}
	if (l->n && l->v[l->n - 1].iova == x.iova)
		return;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 1024;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			abort();
	}
	l->v[l->n++] = x;
	l->bytes += x.size;
}

struct result {
	uint64_t calls, maps, unmaps, rejected, refused;
	uint64_t map_ns, unmap_ns;
	bool ok;
};

/* The judges, then the teardown. */
static bool rig_finish(struct rig *r, const char *sink, const char *name, uint64_t t0,
		       struct result *out)
{
	struct ext_list l = { .r = r };
	iovt_thread_register();
	gs_truth_for_each(r->gd, truth_page, &l);
	struct iovt_stats st;
	iovt_domain_stats_get(r->d, &st);
	if (st.extents != l.n)
		rig_bad(r, "engine holds %" PRIu64 " extents, the guest view needs %zu", st.extents, l.n);
	/* Kernel == engine: every extent's first and last page is held. */
	uint64_t probes = 0;
	for (size_t i = 0; i < l.n && !r->bad; i++) {
		const struct iovt_extent *x = &l.v[i];
		uint64_t at[2] = { 0, x->size - K };
		for (int k = 0; k < (x->size > K ? 2 : 1); k++) {
			int rc = raw_map(r->dev, x->iova + at[k], K, x->hva + at[k]);
			probes++;
			if (rc != -EEXIST) {
				rig_bad(r, "kernel probe at %#" PRIx64 ": %d, want -EEXIST",
					x->iova + at[k], rc);
				if (rc == 0)
					raw_unmap(r->dev, x->iova + at[k], K);
			}
		}
	}
	/* Detach: the engine sends one unmap-all; its reply must be exactly
	 * what the engine believed mapped. */
	int rc = iovt_notifier_detach(r->n);
	r->n = NULL;
	if (rc)
		rig_bad(r, "detach: %d", rc);
	if (r->cnt.unmap_all_bytes != l.bytes)
		rig_bad(r, "unmap-all removed %" PRIu64 " bytes, engine had %" PRIu64,
			r->cnt.unmap_all_bytes, l.bytes);
	if (l.n && r->cnt.unmap_all_calls != 1)
		rig_bad(r, "%" PRIu64 " unmap-all calls", r->cnt.unmap_all_calls);
	if (rejected(&r->cnt))
		rig_bad(r, "kernel rejected %" PRIu64 " calls (last errno %" PRId64 ")",
			rejected(&r->cnt), r->cnt.last_errno);
	if (r->cnt.refused != r->expect_refused)
		rig_bad(r, "sink refused %" PRIu64 " MAPs, expected %" PRIu64, r->cnt.refused,
			r->expect_refused);
	if (r->fence_errors != r->expect_refused)
		rig_bad(r, "%" PRIu64 " fences failed (first %d)", r->fence_errors,
			r->first_fence_err);
	iovt_engine_destroy(r->e);
	gs_domain_destroy(r->gd);
	gs_destroy(r->gs);
	iovt_thread_unregister();
	free(l.v);

	const struct iovt_vfio_sink_counters *c = &r->cnt;
	out->calls = calls(c);
	out->maps = c->map_calls;
	out->unmaps = c->unmap_calls + c->unmap_all_calls;
	out->rejected = rejected(c);
	out->refused = c->refused;
	out->map_ns = c->map_ns;
	out->unmap_ns = c->unmap_ns + c->unmap_all_ns;
	out->ok = !r->bad;
	say("scenario %s/%s %s: %" PRIu64 " calls (map %" PRIu64 ", unmap %" PRIu64
	    ", unmap-all %" PRIu64 "), %" PRIu64 " rejected, %" PRIu64 " refused, %" PRIu64
	    " fences, %zu extents / %" PRIu64 " KiB at the end, %" PRIu64 " probes; map %.1f us/call,"
	    " unmap %.1f us/call; %.2f s%s%s\n",
	    sink, name, out->ok ? "ok" : "FAILED", out->calls, c->map_calls, c->unmap_calls,
	    c->unmap_all_calls, out->rejected, out->refused, r->fences, l.n, l.bytes >> 10, probes,
	    c->map_calls ? c->map_ns / 1e3 / c->map_calls : 0.0,
	    c->unmap_calls ? c->unmap_ns / 1e3 / c->unmap_calls : 0.0, (now_ns() - t0) / 1e9,
	    out->ok ? "" : ": ", out->ok ? "" : r->why);
	return out->ok;
}

/* ------------------------------------------------------------------ scenarios */

static double scale = 1.0;

static uint64_t scaled(uint64_t n)
{
	uint64_t v = (uint64_t)(n * scale);
	return v ? v : 1;
}

/* Linux strict mode: per request of 1-32 pages, one MAP per physical piece,
 * one PSI and a wait; at completion one unmap, a PSI (ih) and a wait. IOVAs
 * top-down below 256 MiB, reused. */
static void sc_strict(struct rig *r, uint64_t *s)
{
	enum { SLOTS = 64, DEPTH = 16 };
	struct { uint64_t iova, pages; } q[DEPTH] = { 0 };
	int head = 0;
	uint64_t n = scaled(1500);
	for (uint64_t i = 0; i < n && !r->bad; i++) {
		if (q[head].pages) {
			gunmap(r, q[head].iova, q[head].pages * K);
			inv_range(r, q[head].iova, q[head].pages * K, true);
			fence(r);
		}
		uint64_t iova = 0x10000000ull - ((i % SLOTS) + 1) * 32 * K;
		uint64_t pages = 1 + gs_rand(s) % 32, off = 0;
		uint64_t gpage = 64 + gs_rand(s) % (r->data_pages - 128);
		while (off < pages) {
			uint64_t len = 1 + gs_rand(s) % 8;
			if (len > pages - off)
				len = pages - off;
			gmap(r, iova + off * K, r->data_gpa + gpage * K, len * K, IOVT_PERM_RW, 0);
			off += len;
			gpage = gpage > 48 ? gpage - len - gs_rand(s) % 4 : gpage + 64;
		}
		inv_range(r, iova, pages * K, false);
		fence(r);
		q[head].iova = iova;
		q[head].pages = pages;
		head = (head + 1) % DEPTH;
	}
}

/* 4 KiB maps each invalidated by a 2 MiB PSI, then the block unmapped. */
static void sc_map4k_psi2m(struct rig *r, uint64_t *s)
{
	(void)s;
	uint64_t blocks = scaled(2);
	for (uint64_t b = 0; b < blocks && !r->bad; b++) {
		uint64_t iova = 0x4000000ull + (b % 4) * M2;
		uint64_t gpa = r->data_gpa + (b % 16) * M2;
		for (uint64_t p = 0; p < 512; p++) {
			gmap(r, iova + p * K, gpa + p * K, K, IOVT_PERM_RW, GS_LEAF_4K);
			iovt_invalidate_psi(r->e, 1, iova, 9, false);
			fence(r);
		}
		gunmap(r, iova, M2);
		iovt_invalidate_psi(r->e, 1, iova, 9, true);
		fence(r);
	}
}

/* Linux lazy mode: maps invalidated one by one, unmaps queued and flushed
 * together (a DSI when the queue overflowed, else PSIs), then one wait. */
static void sc_lazy(struct rig *r, uint64_t *s)
{
	enum { QUEUE = 256 };
	static struct { uint64_t iova, size; } q[QUEUE];
	unsigned qn = 0;
	uint64_t next = 0x8000000ull;
	uint64_t n = scaled(2000);
	for (uint64_t i = 0; i < n && !r->bad; i++) {
		uint64_t pages = 1 + gs_rand(s) % 16;
		uint64_t iova = next;
		next += pages * K + K;
		if (next > 0xc000000ull)
			next = 0x8000000ull;
		gmap(r, iova, r->data_gpa + (gs_rand(s) % (r->data_pages - 16)) * K, pages * K,
		     IOVT_PERM_RW, 0);
		inv_range(r, iova, pages * K, false);
		fence(r);
		q[qn].iova = iova;
		q[qn].size = pages * K;
		if (++qn == QUEUE || gs_rand(s) % 64 == 0) {
			bool dsi = qn == QUEUE && gs_rand(s) % 2;
			for (unsigned k = 0; k < qn; k++) {
				gunmap(r, q[k].iova, q[k].size);
				if (!dsi)
					inv_range(r, q[k].iova, q[k].size, true);
			}
			if (dsi)
				iovt_invalidate_dsi(r->e, 1);
			fence(r);
			qn = 0;
		}
	}
}

/* 2 MiB leaves (THP-sized host chunks): map, split by partial unmaps, remap. */
static void sc_huge(struct rig *r, uint64_t *s)
{
	uint64_t rounds = scaled(24);
	uint64_t base = 0x40000000ull;
	uint64_t chunks = (r->data_pages * K) / M2;
	for (uint64_t i = 0; i < rounds && !r->bad; i++) {
		uint64_t slot = i % 16;
		uint64_t iova = base + slot * M2;
		uint64_t gpa = r->data_gpa + (gs_rand(s) % chunks) * M2;
		gmap(r, iova, gpa, M2, IOVT_PERM_RW, GS_LEAF_2M);
		inv_range(r, iova, M2, false);
		fence(r);
		switch (gs_rand(s) % 3) {
		case 0: /* a 4 KiB hole in the middle: the 2 MiB mapping goes whole */
			gunmap(r, iova + (1 + gs_rand(s) % 510) * K, K);
			inv_range(r, iova, M2, true);
			fence(r);
			break;
		case 1: /* unmap it whole */
			gunmap(r, iova, M2);
			inv_range(r, iova, M2, true);
			fence(r);
			break;
		default: /* a 4 MiB run of two 2 MiB leaves */
			if (slot < 15) {
				gmap(r, iova + M2, gpa + M2 < r->data_gpa + chunks * M2 ? gpa + M2 : gpa,
				     M2, IOVT_PERM_R, GS_LEAF_2M);
				inv_range(r, iova, 2 * M2, false);
				fence(r);
			}
			break;
		}
	}
}

/* DSIs over a domain that did not change: each walks it all and sends nothing. */
static void sc_dsi_unchanged(struct rig *r, uint64_t *s)
{
	for (uint64_t i = 0; i < 1024; i++)
		gmap(r, 0x1000000ull + i * 2 * K, r->data_gpa + (gs_rand(s) % r->data_pages) * K, K,
		     IOVT_PERM_RW, 0);
	gmap(r, 0x20000000ull, r->data_gpa, 16 * M1, IOVT_PERM_R, 0);
	iovt_invalidate_dsi(r->e, 1);
	fence(r);
	uint64_t c0 = calls(&r->cnt);
	uint64_t n = scaled(40);
	for (uint64_t i = 0; i < n; i++) {
		iovt_invalidate_dsi(r->e, 1);
		fence(r);
	}
	if (calls(&r->cnt) != c0)
		rig_bad(r, "unchanged DSIs sent %" PRIu64 " calls", calls(&r->cnt) - c0);
}

/* Present entries rewritten in place: new target or new permission. */
static void sc_remap(struct rig *r, uint64_t *s)
{
	uint64_t base = 0x6000000ull;
	gmap(r, base, r->data_gpa, 256 * K, IOVT_PERM_RW, GS_LEAF_4K);
	inv_range(r, base, 256 * K, false);
	fence(r);
	uint64_t n = scaled(600);
	for (uint64_t i = 0; i < n && !r->bad; i++) {
		uint64_t p = gs_rand(s) % 256, len = 1 + gs_rand(s) % 8;
		if (p + len > 256)
			len = 256 - p;
		uint32_t perm = 1 + gs_rand(s) % 3;
		gmap(r, base + p * K, r->data_gpa + (gs_rand(s) % (r->data_pages - 8)) * K, len * K,
		     perm, GS_LEAF_4K);
		inv_range(r, base + p * K, len * K, false);
		fence(r);
	}
}

/* A guest mapping in the MSI window: the sink refuses it without a kernel
 * call, the engine counts a sink failure and keeps it pending; once the
 * guest removes it, all is well. (The ranges come from the kernel.) */
static void sc_refusal(struct rig *r, uint64_t *s)
{
	(void)s;
	struct iovt_vfio_sink_info in;
	iovt_vfio_sink_info(&r->sink, &in);
	uint64_t hole = 0;
	for (uint32_t i = 1; i < in.nr_ranges; i++)
		if (in.ranges[i - 1].last < 0xfee00000ull && in.ranges[i].first > 0xfee00000ull)
			hole = 0xfee00000ull;
	say("%s: %u usable IOVA ranges:", r->sink.name, in.nr_ranges);
	for (uint32_t i = 0; i < in.nr_ranges && i < 4; i++)
		printf(" [%#" PRIx64 "-%#" PRIx64 "]", in.ranges[i].first, in.ranges[i].last);
	printf(" page sizes %#" PRIx64 " dma_avail %u unmap_all %d\n", in.page_sizes, in.dma_avail,
	       in.unmap_all);
	if (!hole) {
		rig_bad(r, "the kernel reported no MSI hole at 0xfee00000");
		return;
	}
	gmap(r, 0x100000, r->data_gpa, 4 * K, IOVT_PERM_RW, 0);
	gmap(r, hole, r->data_gpa, K, IOVT_PERM_RW, 0);
	iovt_invalidate_dsi(r->e, 1);
	uint64_t mc = r->cnt.map_calls;
	int rc = fence(r);
	r->expect_refused = 1;
	if (rc != -EINVAL || r->cnt.refused != 1 || r->cnt.map_calls != mc + 1)
		rig_bad(r, "MSI-window MAP: fence %d, refused %" PRIu64 ", calls %" PRIu64, rc,
			r->cnt.refused, r->cnt.map_calls - mc);
	struct iovt_stats st;
	iovt_domain_stats_get(r->d, &st);
	if (st.errors[IOVT_ERR_SINK_MAP] != 1)
		rig_bad(r, "engine counted %" PRIu64 " sink MAP failures",
			st.errors[IOVT_ERR_SINK_MAP]);
	gunmap(r, hole, K);
	inv_range(r, hole, K, true);
	fence(r);
}

/* Random guest edits with PSIs/DSIs and fences. */
static void sc_differential(struct rig *r, uint64_t *s)
{
	const uint64_t lo = 0x2000000ull, span = 64 * M1;
	uint64_t n = scaled(4000);
	for (uint64_t i = 0; i < n && !r->bad; i++) {
		uint64_t op = gs_rand(s) % 100;
		uint64_t iova, size;
		if (op < 10) { /* a 2 MiB-aligned block */
			size = (1 + gs_rand(s) % 2) * M2;
			iova = lo + (gs_rand(s) % (span / M2 - 2)) * M2;
		} else {
			size = (1 + gs_rand(s) % 48) * K;
			iova = lo + (gs_rand(s) % (span / K - 48)) * K;
		}
		if (op < 60) {
			uint64_t gpa = r->data_gpa + (gs_rand(s) % (r->data_pages - 1024)) * K;
			if (op < 10)
				gpa &= ~(M2 - 1);
			uint64_t pol[3] = { GS_LEAF_LARGEST, GS_LEAF_4K, GS_LEAF_2M };
			gmap(r, iova, gpa, size, 1 + gs_rand(s) % 3, pol[gs_rand(s) % 3]);
		} else {
			gunmap(r, iova, size);
		}
		if (gs_rand(s) % 50 == 0)
			iovt_invalidate_dsi(r->e, 1);
		else
			inv_range(r, iova, size, op >= 60);
		if (gs_rand(s) % 4 == 0)
			fence(r);
	}
	fence(r);
}

/* A real DMA by the device through a mapping the engine made, and a fault
 * once the engine unmapped it. */
static void sc_edu(struct rig *r, uint64_t *s)
{
	(void)s;
	struct dev *d = r->dev;
	const uint64_t src_iova = 0x300000, dst_iova = 0x301000, n = 2048;
	uint64_t src_gpa = r->data_gpa + 0x10000, dst_gpa = r->data_gpa + 0x20000;
	uint8_t *src = gs_hva(r->gs, src_gpa), *dst = gs_hva(r->gs, dst_gpa);
	for (uint64_t i = 0; i < n; i++)
		src[i] = (uint8_t)(i * 7 + 3);
	memset(dst, 0, K);
	gmap(r, src_iova, src_gpa, K, IOVT_PERM_R, 0);
	gmap(r, dst_iova, dst_gpa, K, IOVT_PERM_W, 0);
	inv_range(r, src_iova, 2 * K, false);
	fence(r);
	if (edu_dma(d, src_iova, 0x40000, n, 0) || edu_dma(d, 0x40000, dst_iova, n, 1)) {
		rig_bad(r, "edu DMA timed out");
		return;
	}
	if (memcmp(src, dst, n)) {
		rig_bad(r, "edu DMA through the engine's mappings: data differs");
		return;
	}
	/* Unmap dst in the guest; after the fence the device must fault. */
	gunmap(r, dst_iova, K);
	inv_range(r, dst_iova, K, true);
	fence(r);
	memset(dst, 0x5a, n);
	if (edu_dma(d, 0x40000, dst_iova, n, 1)) {
		rig_bad(r, "edu DMA (after unmap) timed out");
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		if (dst[i] != 0x5a) {
			rig_bad(r, "edu wrote through an IOVA the engine unmapped");
			return;
		}
	say("edu: %" PRIu64 "-byte DMA RAM->edu->RAM through engine mappings ok; faulted after unmap\n",
	    n);
}

/* Per-call costs: 4 KiB and 2 MiB map/unmap one at a time. */
static void sc_cost(struct rig *r, uint64_t *s)
{
	(void)s;
	uint64_t n = scaled(300);
	struct iovt_vfio_sink_counters c0 = r->cnt;
	for (uint64_t i = 0; i < n && !r->bad; i++) {
		uint64_t iova = 0x7000000ull + (i % 64) * K;
		gmap(r, iova, r->data_gpa + (i % 4096) * K, K, IOVT_PERM_RW, 0);
		inv_range(r, iova, K, false);
		fence(r);
		gunmap(r, iova, K);
		inv_range(r, iova, K, true);
		fence(r);
	}
	struct iovt_vfio_sink_counters c1 = r->cnt;
	uint64_t m2 = scaled(20);
	for (uint64_t i = 0; i < m2 && !r->bad; i++) {
		uint64_t iova = 0x80000000ull;
		gmap(r, iova, r->data_gpa + (i % 32) * M2, M2, IOVT_PERM_RW, GS_LEAF_2M);
		inv_range(r, iova, M2, false);
		fence(r);
		gunmap(r, iova, M2);
		inv_range(r, iova, M2, true);
		fence(r);
	}
	struct iovt_vfio_sink_counters c2 = r->cnt;
	say("cost %s: 4 KiB map %.0f ns, unmap %.0f ns; 2 MiB map %.0f ns, unmap %.0f ns"
	    " (per kernel call, inside a TCG guest)\n",
	    r->sink.name, (double)(c1.map_ns - c0.map_ns) / (c1.map_calls - c0.map_calls),
	    (double)(c1.unmap_ns - c0.unmap_ns) / (c1.unmap_calls - c0.unmap_calls),
	    (double)(c2.map_ns - c1.map_ns) / (c2.map_calls - c1.map_calls),
	    (double)(c2.unmap_ns - c1.unmap_ns) / (c2.unmap_calls - c1.unmap_calls));
}

static const struct {
	const char *name;
	void (*fn)(struct rig *, uint64_t *);
} scenarios[] = {
	{ "strict-dma", sc_strict },     { "map4k-psi2m", sc_map4k_psi2m },
	{ "lazy", sc_lazy },             { "huge-2m", sc_huge },
	{ "dsi-unchanged", sc_dsi_unchanged }, { "remap", sc_remap },
	{ "iova-range-refusal", sc_refusal }, { "differential", sc_differential },
	{ "edu-dma", sc_edu },           { "cost", sc_cost },
};

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s <BDF> <type1|iommufd> [scale] [scenario]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct dev dev = { .bdf = argv[1], .be = strcmp(argv[2], "iommufd") ? TYPE1 : IOMMUFD,
			   .container = -1, .group = -1, .iommufd = -1, .device = -1 };
	const char *sink = dev.be == TYPE1 ? "type1" : "iommufd";
	if (argc > 3 && atof(argv[3]) > 0)
		scale = atof(argv[3]);
	const char *only = argc > 4 ? argv[4] : NULL;
	if ((dev.be == TYPE1 ? open_type1(&dev) : open_iommufd(&dev)) || open_bar0(&dev)) {
		say("RESULT sink=%s scenarios=0 failed=1 calls=0 rejected=0 refused=0 map_ns=0 unmap_ns=0"
		    " setup-failed\n", sink);
		return 1;
	}
	uint64_t tot_calls = 0, tot_rej = 0, tot_ref = 0, tot_maps = 0, tot_unmaps = 0;
	uint64_t map_ns = 0, unmap_ns = 0, ran = 0, failed = 0;
	uint64_t seed = 0x10f7ull;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		if (only && strcmp(only, scenarios[i].name))
			continue;
		struct rig r;
		struct result res = { 0 };
		uint64_t t0 = now_ns(), s = seed + i;
		int rc = rig_init(&r, &dev);
		ran++;
		if (rc) {
			say("scenario %s/%s FAILED: setup %d\n", sink, scenarios[i].name, rc);
			failed++;
			continue;
		}
		scenarios[i].fn(&r, &s);
		if (!rig_finish(&r, sink, scenarios[i].name, t0, &res))
			failed++;
		tot_calls += res.calls;
		tot_rej += res.rejected;
		tot_ref += res.refused;
		tot_maps += res.maps;
		tot_unmaps += res.unmaps;
		map_ns += res.map_ns;
		unmap_ns += res.unmap_ns;
	}
	say("RESULT sink=%s scenarios=%" PRIu64 " failed=%" PRIu64 " calls=%" PRIu64
	    " rejected=%" PRIu64 " refused=%" PRIu64 " map_ns=%" PRIu64 " unmap_ns=%" PRIu64 "\n",
	    sink, ran, failed, tot_calls, tot_rej, tot_ref, tot_maps ? map_ns / tot_maps : 0,
	    tot_unmaps ? unmap_ns / tot_unmaps : 0);
	return failed ? 1 : 0;
}
