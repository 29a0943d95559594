/* SPDX-License-Identifier: MIT */
/*
 * examples/dpdk — iovt in a DPDK application.
 *
 * The main lcore plays the guest's invalidation queue: it edits a VT-d table
 * in guest RAM and posts page-selective invalidations (PSIs) and fences to
 * iovt queues. iovt pollers on the worker lcores (iovt_dpdk_pollers_start)
 * drain those queues, walk the table and call the domain's sink. The queues
 * are hand-off queues, so every sink call happens on a worker lcore and the
 * main lcore only posts and waits — once synchronously (iovt_queue_fence),
 * once asynchronously (iovt_queue_fence_post / _done / _wait, as a VMM that
 * completes the guest's wait descriptor later does).
 *
 * The sink keeps a page bitmap of what is mapped and refuses a MAP over a
 * mapping (what VFIO answers -EEXIST); after each wait the bitmap must equal
 * the guest table. Any mismatch, refusal or error code exits non-zero.
 *
 * EAL runs without hugepages and without PCI: --no-huge -m 64 --no-pci,
 * one lcore per CPU this process may use (at least 2; capped at 4), with
 * lcore 0 the main lcore. Run as root (EAL wants /var/run/dpdk); it leaves
 * /var/run/dpdk/iovt-example-PID behind, as every DPDK app does.
 *
 * Build against an installed iovt:
 *   cc -o dpdk_pollers dpdk_pollers.c $(pkg-config --cflags --libs iovt-dpdk)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_pause.h>

#include <iovt.h>
#include <iovt_dpdk.h>
#include <iovt_vtd.h>

#define RAM_SIZE (4ull << 20)
#define HAW 48
#define DID 7
#define PML4_GPA 0x1000ull
#define PDPT_GPA 0x2000ull
#define PD_GPA 0x3000ull
#define PT_GPA 0x4000ull
#define DATA_GPA 0x200000ull /* pages the device may reach: 2 MiB .. 4 MiB */
#define NPAGES 512u          /* IOVA [0, 2 MiB): one level-1 table */
#define MAX_QUEUES 4u

static void die(const char *what, int rc)
{
	fprintf(stderr, "dpdk_pollers: %s failed: %d (%s)\n", what, rc, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

/* ---- the sink: a page bitmap, updated on the poller lcores ------------------ */

struct pages {
	uint8_t mapped[NPAGES]; /* written by the poller applying a fence, read after the wait */
	unsigned refused;
	const uint8_t *ram; /* guest RAM: a MAP's hva must be ram + gpa */
};

static int on_event(void *arg, const struct iovt_event *ev)
{
	struct pages *p = arg;
	uint64_t first = ev->extent.iova / 4096, n = ev->extent.size / 4096;
	if (first + n > NPAGES) {
		__atomic_fetch_add(&p->refused, 1, __ATOMIC_RELAXED);
		return -EINVAL;
	}
	if (ev->type == IOVT_EVENT_MAP &&
	    (ev->extent.gpa != DATA_GPA + first * 4096 || ev->extent.hva != (uintptr_t)(p->ram + ev->extent.gpa) ||
	     ev->extent.perm != IOVT_PERM_RW)) {
		__atomic_fetch_add(&p->refused, 1, __ATOMIC_RELAXED); /* a wrong target or permission */
		return -EINVAL;
	}
	for (uint64_t i = first; i < first + n; i++)
		if (ev->type == IOVT_EVENT_MAP && __atomic_load_n(&p->mapped[i], __ATOMIC_RELAXED)) {
			__atomic_fetch_add(&p->refused, 1, __ATOMIC_RELAXED); /* a MAP over a mapping */
			return -EEXIST;
		}
	for (uint64_t i = first; i < first + n; i++)
		__atomic_store_n(&p->mapped[i], ev->type == IOVT_EVENT_MAP, __ATOMIC_RELAXED);
	return 0;
}

/* The guest view must equal the sink's. */
static void check_equal(const uint64_t *pt, const struct pages *p, const char *when)
{
	unsigned mapped = 0;
	for (unsigned i = 0; i < NPAGES; i++) {
		bool guest = pt[i] & (IOVT_VTD_PTE_R | IOVT_VTD_PTE_W);
		bool sink = __atomic_load_n(&p->mapped[i], __ATOMIC_ACQUIRE);
		if (guest != sink) {
			fprintf(stderr, "dpdk_pollers: FAILED: %s: page %u guest %d sink %d\n", when, i, guest, sink);
			exit(1);
		}
		mapped += sink;
	}
	if (__atomic_load_n(&p->refused, __ATOMIC_RELAXED)) {
		fprintf(stderr, "dpdk_pollers: FAILED: %s: the sink refused %u calls\n", when, p->refused);
		exit(1);
	}
	printf("dpdk_pollers: %s: %u pages mapped, sink == guest\n", when, mapped);
}

/* Posts one PSI per page in [0, NPAGES) whose index % step == phase, spread over the queues. */
static void post_psis(struct iovt_queue **q, unsigned nq, unsigned step, unsigned phase)
{
	struct iovt_inval burst[MAX_QUEUES][32];
	unsigned fill[MAX_QUEUES] = { 0 };
	for (unsigned i = phase; i < NPAGES; i += step) {
		unsigned k = i % nq;
		burst[k][fill[k]++] = (struct iovt_inval){ .addr = (uint64_t)i * 4096, .did = DID,
							  .kind = IOVT_INVAL_PSI, .am = 0 };
		if (fill[k] == 32) {
			int rc = iovt_queue_post(q[k], burst[k], fill[k]);
			if (rc)
				die("iovt_queue_post", rc);
			fill[k] = 0;
		}
	}
	for (unsigned k = 0; k < nq; k++)
		if (fill[k]) {
			int rc = iovt_queue_post(q[k], burst[k], fill[k]);
			if (rc)
				die("iovt_queue_post", rc);
		}
}

int main(int argc, char **argv)
{
	(void)argc;
	int rc;

	/* EAL: one lcore per usable CPU (2..4 lcores; on one CPU, two lcores share it). */
	cpu_set_t cs;
	if (sched_getaffinity(0, sizeof(cs), &cs))
		die("sched_getaffinity", -errno);
	int cpu[4], ncpu = 0;
	for (int c = 0; c < CPU_SETSIZE && ncpu < 4; c++)
		if (CPU_ISSET(c, &cs))
			cpu[ncpu++] = c;
	unsigned nlcores = ncpu < 2 ? 2 : (unsigned)ncpu;
	char lcores[64], prefix[64];
	int off = snprintf(lcores, sizeof(lcores), "--lcores=");
	for (unsigned l = 0; l < nlcores; l++)
		off += snprintf(lcores + off, sizeof(lcores) - (size_t)off, "%s%u@%d", l ? "," : "", l,
				cpu[l % (unsigned)ncpu]);
	snprintf(prefix, sizeof(prefix), "--file-prefix=iovt-example-%d", (int)getpid());
	char *eal[] = { argv[0], "--no-huge", "-m", "64", "--no-pci", "--no-telemetry",
			"--no-shconf", "--log-level=error", lcores, prefix, NULL };
	if (rte_eal_init((int)(sizeof(eal) / sizeof(eal[0])) - 1, eal) < 0)
		die("rte_eal_init", -rte_errno);
	if (!iovt_dpdk_available())
		die("iovt_dpdk_available (libiovt built without DPDK)", -ENOTSUP);

	iovt_thread_register(); /* the main lcore calls iovt */

	struct iovt_engine *e;
	if ((rc = iovt_engine_create(NULL, &e)))
		die("iovt_engine_create", rc);
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap", -errno);
	if ((rc = iovt_guest_ram_add(e, 0, RAM_SIZE, ram, NULL)))
		die("iovt_guest_ram_add", rc);
	uint64_t *pml4 = (uint64_t *)(ram + PML4_GPA), *pdpt = (uint64_t *)(ram + PDPT_GPA);
	uint64_t *pd = (uint64_t *)(ram + PD_GPA), *pt = (uint64_t *)(ram + PT_GPA);
	const uint64_t table_bits = IOVT_VTD_PTE_R | IOVT_VTD_PTE_W;
	pml4[0] = (PDPT_GPA & IOVT_VTD_PTE_ADDR_MASK(HAW)) | table_bits;
	pdpt[0] = (PD_GPA & IOVT_VTD_PTE_ADDR_MASK(HAW)) | table_bits;
	pd[0] = (PT_GPA & IOVT_VTD_PTE_ADDR_MASK(HAW)) | table_bits;

	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = DID, .root_gpa = PML4_GPA, .addr_width = 48 };
	if ((rc = iovt_domain_create(e, &dc, &d)))
		die("iovt_domain_create", rc);
	struct pages *pages = calloc(1, sizeof(*pages));
	if (!pages)
		die("calloc", -ENOMEM);
	pages->ram = ram;
	struct iovt_sink sink;
	if ((rc = iovt_callback_sink_init(&sink, on_event, pages, NULL)))
		die("iovt_callback_sink_init", rc);
	struct iovt_notifier *n = NULL;
	if ((rc = iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n))) {
		if (!n) /* refused: the sink is still ours */
			sink.ops->destroy(sink.ctx);
		die("iovt_notifier_attach", rc);
	}

	/* Pollers on every worker lcore; one hand-off queue per poller. */
	unsigned workers[RTE_MAX_LCORE], nw = 0, lc;
	RTE_LCORE_FOREACH_WORKER(lc)
		workers[nw++] = lc;
	if (nw == 0 || nw > MAX_QUEUES)
		die("worker lcores", -EINVAL);
	if ((rc = iovt_dpdk_pollers_start(e, workers, nw)))
		die("iovt_dpdk_pollers_start", rc);
	struct iovt_queue *q[MAX_QUEUES];
	for (unsigned k = 0; k < nw; k++) {
		struct iovt_queue_config qc = { .group = k, .handoff = true };
		if ((rc = iovt_queue_create(e, &qc, &q[k])))
			die("iovt_queue_create", rc);
	}
	printf("dpdk_pollers: main lcore %u, %u poller lcore(s), %u queue(s)\n", rte_get_main_lcore(), nw, nw);

	/* Round 1: the guest maps all 512 pages, invalidates each, waits on each queue. */
	for (unsigned i = 0; i < NPAGES; i++)
		pt[i] = ((DATA_GPA + i * 4096ull) & IOVT_VTD_PTE_ADDR_MASK(HAW)) | IOVT_VTD_PTE_R | IOVT_VTD_PTE_W;
	post_psis(q, nw, 1, 0);
	for (unsigned k = 0; k < nw; k++)
		if ((rc = iovt_queue_fence(q[k])))
			die("iovt_queue_fence", rc);
	check_equal(pt, pages, "map 512 pages, synchronous fences");

	struct iovt_extent x;
	if ((rc = iovt_translate(d, 100 * 4096 + 12, &x)))
		die("iovt_translate", rc);
	if (x.hva + (100 * 4096 - x.iova) != (uintptr_t)(ram + DATA_GPA + 100 * 4096)) {
		fprintf(stderr, "dpdk_pollers: FAILED: translate of page 100 points elsewhere\n");
		return 1;
	}

	/* Round 2: every third page unmapped; asynchronous fences. */
	for (unsigned i = 0; i < NPAGES; i += 3)
		pt[i] = 0;
	post_psis(q, nw, 3, 0);
	uint64_t ticket[MAX_QUEUES];
	for (unsigned k = 0; k < nw; k++)
		ticket[k] = iovt_queue_fence_post(q[k]);
	for (unsigned k = 0; k < nw; k++) {
		while (!iovt_queue_fence_done(q[k], ticket[k]))
			rte_pause(); /* a VMM would do other work, then complete the wait descriptor */
		if ((rc = iovt_queue_fence_wait(q[k], ticket[k]))) /* its result */
			die("iovt_queue_fence_wait", rc);
	}
	check_equal(pt, pages, "unmap every third page, asynchronous fences");

	struct iovt_stats st;
	iovt_stats_get(e, &st);
	for (unsigned k = 0; k < IOVT_ERR_KIND_COUNT; k++)
		if (st.errors[k]) {
			fprintf(stderr, "dpdk_pollers: FAILED: error %s = %" PRIu64 "\n",
				iovt_err_kind_name((enum iovt_err_kind)k), st.errors[k]);
			return 1;
		}
	if (st.fences_inline != 0 || st.fences_drained < 2ull * nw) {
		fprintf(stderr, "dpdk_pollers: FAILED: fences inline %" PRIu64 " drained %" PRIu64 "\n",
			st.fences_inline, st.fences_drained);
		return 1;
	}
	printf("dpdk_pollers: %" PRIu64 " PSIs, %" PRIu64 " fences applied on the poller lcores, %" PRIu64
	       " MAP and %" PRIu64 " UNMAP calls\n", st.psi, st.fences_drained, st.map_calls, st.unmap_calls);

	/* Teardown: pollers first (they drain the queues), then queues, domain
	 * (its sink unmaps everything), engine, thread, EAL, guest RAM. */
	iovt_dpdk_pollers_stop(e);
	for (unsigned k = 0; k < nw; k++)
		iovt_queue_destroy(q[k]);
	if ((rc = iovt_domain_destroy(d)))
		die("iovt_domain_destroy", rc);
	memset(pt, 0, 4096);
	check_equal(pt, pages, "domain destroyed");
	iovt_engine_destroy(e);
	iovt_thread_unregister();
	if ((rc = rte_eal_cleanup()))
		die("rte_eal_cleanup", rc);
	munmap(ram, RAM_SIZE);
	free(pages);
	printf("dpdk_pollers: ok\n");
	return 0;
}
