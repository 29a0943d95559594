/* SPDX-License-Identifier: MIT */
/*
 * examples/minimal — iovt embedded the way a VMM embeds it, in one file.
 *
 * What it shows, in the order a VMM does it:
 *   1. register the thread (every thread that calls iovt, before its first call);
 *   2. an engine, and guest RAM: an mmap'd buffer declared with iovt_guest_ram_add;
 *   3. the guest's VT-d second-level table, written into that RAM with the
 *      entry format of <iovt_vtd.h> (here the example plays the guest);
 *   4. a domain for the table, and a MAP/UNMAP notifier with a callback sink
 *      that records every event (in a VMM: the VFIO/iommufd/vhost update);
 *   5. the guest changes its table, sends a PSI and waits: iovt_invalidate_psi
 *      + iovt_fence, and the sink gets exactly the MAPs and UNMAPs that make it
 *      equal to the guest view;
 *   6. iovt_translate, as an emulated device would;
 *   7. teardown in order: notifier, domain, engine, thread, then guest RAM.
 * Every return code is checked; each expected event is asserted, so the
 * program exits non-zero if the library misbehaves.
 *
 * Build against an installed iovt:
 *   cc -o minimal minimal.c $(pkg-config --cflags --libs iovt)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <iovt.h>
#include <iovt_vtd.h>

#define RAM_SIZE (8ull << 20) /* guest RAM: GPA [0, 8 MiB) */
#define HAW 48                /* iovt_config.host_addr_width's default */

/* Guest-physical layout the example's "guest" uses. */
#define PML4_GPA 0x1000ull /* the domain's root: a 4-level (48-bit) table */
#define PDPT_GPA 0x2000ull
#define PD_GPA 0x3000ull
#define PT_GPA 0x4000ull
#define BUF_GPA 0x400000ull /* a 12 KiB buffer the device may DMA to */
#define BIG_GPA 0x600000ull /* a 2 MiB page (2 MiB aligned) */

#define IOVA_BUF 0x10000ull  /* three 4 KiB pages -> BUF_GPA */
#define IOVA_BIG 0x200000ull /* one 2 MiB read-only leaf -> BIG_GPA */

static void die(const char *what, int rc)
{
	fprintf(stderr, "minimal: %s failed: %d (%s)\n", what, rc, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("minimal: FAILED: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* ---- the sink: records MAP and UNMAP events -------------------------------- */

struct recorder {
	struct iovt_event ev[16];
	unsigned n;
};

/* Called by the engine from the thread that applies a fence (here: main). */
static int record(void *arg, const struct iovt_event *ev)
{
	struct recorder *r = arg;
	if (r->n == sizeof(r->ev) / sizeof(r->ev[0]))
		return -ENOSPC; /* refused: the engine keeps the range pending */
	r->ev[r->n++] = *ev;
	printf("  sink: %-5s iova 0x%08" PRIx64 " size 0x%08" PRIx64, ev->type == IOVT_EVENT_MAP ? "MAP" : "UNMAP",
	       ev->extent.iova, ev->extent.size);
	if (ev->type == IOVT_EVENT_MAP)
		printf(" gpa 0x%08" PRIx64 " perm %s", ev->extent.gpa,
		       ev->extent.perm == IOVT_PERM_RW ? "rw" : ev->extent.perm == IOVT_PERM_R ? "r" : "w");
	printf("\n");
	return 0;
}

/* Asserts that event i is `type` over [iova, iova+size) (and, for a MAP, at gpa with perm). */
static void expect(const struct recorder *r, unsigned i, enum iovt_event_type type, uint64_t iova,
		   uint64_t size, uint64_t gpa, uint32_t perm, const uint8_t *ram)
{
	if (i >= r->n)
		fail("event %u missing (only %u)", i, r->n);
	const struct iovt_event *ev = &r->ev[i];
	if (ev->type != type || ev->extent.iova != iova || ev->extent.size != size)
		fail("event %u: got %s 0x%" PRIx64 "+0x%" PRIx64 ", want %s 0x%" PRIx64 "+0x%" PRIx64, i,
		     ev->type == IOVT_EVENT_MAP ? "MAP" : "UNMAP", ev->extent.iova, ev->extent.size,
		     type == IOVT_EVENT_MAP ? "MAP" : "UNMAP", iova, size);
	if (type == IOVT_EVENT_MAP &&
	    (ev->extent.gpa != gpa || ev->extent.perm != perm || ev->extent.hva != (uintptr_t)(ram + gpa)))
		fail("event %u: MAP target gpa 0x%" PRIx64 " perm %u, want gpa 0x%" PRIx64 " perm %u", i,
		     ev->extent.gpa, ev->extent.perm, gpa, perm);
}

static void expect_count(const struct recorder *r, unsigned n, const char *when)
{
	if (r->n != n)
		fail("%s: %u sink events, want %u", when, r->n, n);
}

/* ---- the guest's side: a VT-d second-level table in guest RAM ------------ */

static uint64_t *table(uint8_t *ram, uint64_t gpa)
{
	return (uint64_t *)(ram + gpa);
}

/* A non-leaf entry: R and W on the path, the next table's address. */
static uint64_t pte_table(uint64_t next_gpa)
{
	return (next_gpa & IOVT_VTD_PTE_ADDR_MASK(HAW)) | IOVT_VTD_PTE_R | IOVT_VTD_PTE_W;
}

/* A leaf entry: the page's address and its permission bits. */
static uint64_t pte_leaf(uint64_t page_gpa, uint64_t perm_bits)
{
	return (page_gpa & IOVT_VTD_PTE_ADDR_MASK(HAW)) | perm_bits;
}

int main(void)
{
	int rc;

	/* 1. Every thread that calls iovt registers first. */
	iovt_thread_register();

	/* 2. Engine and guest RAM. */
	struct iovt_engine *e;
	if ((rc = iovt_engine_create(NULL, &e)))
		die("iovt_engine_create", rc);
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap guest RAM", -errno);
	uint32_t region;
	if ((rc = iovt_guest_ram_add(e, 0, RAM_SIZE, ram, &region)))
		die("iovt_guest_ram_add", rc);

	/* 3. The guest writes its table: IOVA_BUF..+12 KiB -> BUF_GPA, read-write. */
	table(ram, PML4_GPA)[IOVT_VTD_INDEX(IOVA_BUF, 4)] = pte_table(PDPT_GPA);
	table(ram, PDPT_GPA)[IOVT_VTD_INDEX(IOVA_BUF, 3)] = pte_table(PD_GPA);
	table(ram, PD_GPA)[IOVT_VTD_INDEX(IOVA_BUF, 2)] = pte_table(PT_GPA);
	for (unsigned i = 0; i < 3; i++)
		table(ram, PT_GPA)[IOVT_VTD_INDEX(IOVA_BUF, 1) + i] =
			pte_leaf(BUF_GPA + i * 4096, IOVT_VTD_PTE_R | IOVT_VTD_PTE_W);

	/* 4. The domain (what the guest's context entry says), and its notifier. */
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = 1, .root_gpa = PML4_GPA, .addr_width = 48, .allow_2m = true };
	if ((rc = iovt_domain_create(e, &dc, &d)))
		die("iovt_domain_create", rc);

	struct recorder rec = { .n = 0 };
	struct iovt_sink sink;
	if ((rc = iovt_callback_sink_init(&sink, record, &rec, NULL))) /* NULL caps: multi-UNMAP, no limit */
		die("iovt_callback_sink_init", rc);
	struct iovt_notifier *n = NULL;
	printf("attach (replays the guest view):\n");
	if ((rc = iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n))) {
		/* n stays NULL when attach refused: the sink is still ours to free.
		 * Otherwise the replay failed and the notifier owns the sink. */
		if (!n)
			sink.ops->destroy(sink.ctx);
		die("iovt_notifier_attach", rc);
	}
	/* The three contiguous pages arrive as one MAP. */
	expect(&rec, 0, IOVT_EVENT_MAP, IOVA_BUF, 3 * 4096, BUF_GPA, IOVT_PERM_RW, ram);
	expect_count(&rec, 1, "attach");

	/* 5a. The guest maps a 2 MiB read-only page, invalidates its block, waits. */
	rec.n = 0;
	table(ram, PD_GPA)[IOVT_VTD_INDEX(IOVA_BIG, 2)] = pte_leaf(BIG_GPA, IOVT_VTD_PTE_R | IOVT_VTD_PTE_PS);
	printf("PSI 0x%llx am 9 + fence:\n", IOVA_BIG);
	if ((rc = iovt_invalidate_psi(e, 1, IOVA_BIG, 9, false))) /* 2^9 pages: the 2 MiB block */
		die("iovt_invalidate_psi", rc);
	if ((rc = iovt_fence(e)))
		die("iovt_fence", rc);
	expect(&rec, 0, IOVT_EVENT_MAP, IOVA_BIG, 2ull << 20, BIG_GPA, IOVT_PERM_R, ram);
	expect_count(&rec, 1, "2 MiB map");

	/* 6. An emulated device translates an address inside it. */
	struct iovt_extent x;
	if ((rc = iovt_translate(d, IOVA_BIG + 0x1234, &x)))
		die("iovt_translate", rc);
	if (x.iova != IOVA_BIG || x.size != (2ull << 20) || x.hva != (uintptr_t)(ram + BIG_GPA) || x.perm != IOVT_PERM_R)
		fail("translate: got iova 0x%" PRIx64 " size 0x%" PRIx64, x.iova, x.size);
	if ((rc = iovt_translate_range(d, IOVA_BIG, 4096, IOVT_PERM_W, &x)) != -EACCES)
		fail("a write to a read-only page: got %d, want -EACCES", rc);

	/* 5b. The guest unmaps the middle 4 KiB page: the sink's 12 KiB mapping
	 * cannot be split (VFIO would refuse), so it goes whole and its two
	 * remaining pages come back as two MAPs. */
	rec.n = 0;
	table(ram, PT_GPA)[IOVT_VTD_INDEX(IOVA_BUF + 4096, 1)] = 0;
	printf("PSI 0x%llx am 0 + fence:\n", IOVA_BUF + 4096);
	if ((rc = iovt_invalidate_psi(e, 1, IOVA_BUF + 4096, 0, false)))
		die("iovt_invalidate_psi", rc);
	if ((rc = iovt_fence(e)))
		die("iovt_fence", rc);
	expect(&rec, 0, IOVT_EVENT_UNMAP, IOVA_BUF, 3 * 4096, 0, 0, ram);
	expect(&rec, 1, IOVT_EVENT_MAP, IOVA_BUF, 4096, BUF_GPA, IOVT_PERM_RW, ram);
	expect(&rec, 2, IOVT_EVENT_MAP, IOVA_BUF + 8192, 4096, BUF_GPA + 8192, IOVT_PERM_RW, ram);
	expect_count(&rec, 3, "4 KiB unmap");
	if ((rc = iovt_translate(d, IOVA_BUF + 4096, &x)) != -ENOENT)
		fail("translate of the unmapped page: got %d, want -ENOENT", rc);

	/* No error of any kind was counted. */
	struct iovt_stats st;
	iovt_stats_get(e, &st);
	for (unsigned k = 0; k < IOVT_ERR_KIND_COUNT; k++)
		if (st.errors[k])
			fail("error counter %s = %" PRIu64, iovt_err_kind_name((enum iovt_err_kind)k), st.errors[k]);

	/* 7. Teardown. Detach (device unplug): the sink unmaps what it holds. */
	rec.n = 0;
	printf("detach:\n");
	if ((rc = iovt_notifier_detach(n)))
		die("iovt_notifier_detach", rc);
	uint64_t unmapped = 0;
	for (unsigned i = 0; i < rec.n; i++) {
		if (rec.ev[i].type != IOVT_EVENT_UNMAP)
			fail("detach sent a MAP");
		unmapped += rec.ev[i].extent.size; /* multi-UNMAP ranges may include gaps */
	}
	if (rec.n == 0 || unmapped < 2 * 4096 + (2ull << 20))
		fail("detach unmapped %" PRIu64 " bytes in %u calls", unmapped, rec.n);
	if ((rc = iovt_domain_destroy(d))) /* consumes our reference */
		die("iovt_domain_destroy", rc);
	iovt_engine_destroy(e);   /* no engine call may follow */
	iovt_thread_unregister(); /* before the thread exits */
	munmap(ram, RAM_SIZE);    /* the engine no longer reads guest RAM */
	printf("minimal: ok\n");
	return 0;
}
