/* SPDX-License-Identifier: MIT */
/*
 * lifecycle-regress: one regression test per lifecycle bug of issue 15, each
 * against the public API only (`test_lifecycle_regress CASE`). Each of them
 * failed on the main branch before the lifecycle design (the closing note of
 * that change says how each was run there):
 *
 *  destroy-deadlock   producers fence a domain while the control thread
 *                     destroys and re-creates it: destroy waited for a grace
 *                     period under sync_lock while a drainer waited for that
 *                     lock inside a read-side section (hang: the watchdog).
 *  detach-deadlock    the same with MAP / UNMAP-only notifier attach/detach.
 *  global-deadlock    the same with global invalidations (the global fence
 *                     synced every domain inside one read-side section).
 *  ram-remove-walk    producers fence over page tables that live in a RAM
 *                     region the control thread removes and then makes
 *                     inaccessible (PROT_NONE), as a host that frees it
 *                     would: a walk still reading it after remove returned
 *                     faults (SIGSEGV).
 *  ram-remove-purge   remove of a region the domain maps returned 0 and left
 *                     the sink mapping into it and translate returning it.
 *  ram-remove-refused a sink that refuses the UNMAP: remove must fail
 *                     (-EBUSY) and leave the region declared.
 *  translate-destroy  readers holding a reference translate while the
 *                     domain is destroyed: -ENODEV, never freed memory.
 *  lookup-alias       a lookup from before a destroy + re-create must not
 *                     alias the new domain.
 *  set-root-any-queue a queue that never touched the domain waits after
 *                     set_root: the new table must be in force.
 *  counters           PSI/DSI/global/ih counted alike on every path; a PSI
 *                     accepted for a domain destroyed before its drain is
 *                     stale, not unknown; rejected control arguments count.
 * And the findings of the review of that design (each failed on its first
 * version):
 *  dirty-leak         a host that only waits on its queues (never
 *                     iovt_fence) kept every destroyed domain on the dirty
 *                     queue (~1.7 KiB each): iovt_stats.domain_objects must
 *                     come back to where it was.
 *  remove-refused-resync  a RAM removal refused by one domain's sink left
 *                     the domains purged before it unmapped for good.
 *  capped-stale       a capped span the guest unmapped since made every
 *                     fence return -ENOSPC forever.
 *  retry-starve       spans a sink keeps refusing starved a transient
 *                     failure at a higher IOVA (never retried).
 *  stale-width        a PSI posted for a 48-bit DID, drained after it was
 *                     re-created 39-bit, reached the walker inverted.
 * And of the thirteenth session's review:
 *  detach-stale       readers translate while the control thread caches a
 *                     mapping in the IOTLB (no MAP notifier), attaches one,
 *                     remaps the pages elsewhere with a DSI and a fence, and
 *                     detaches: the detach unpublished the shadow before it
 *                     flushed the IOTLB, which syncs leave alone while a MAP
 *                     notifier is attached, and a translate in between
 *                     answered the mapping the fenced DSI had invalidated
 *                     (12% of the reads in that window; destroy retires the
 *                     notifier the same way).
 *  attach-translate   readers translate pages the guest maps throughout
 *                     while the control thread attaches and detaches a MAP
 *                     notifier: attach published an empty record before
 *                     its replay filled it, and detach emptied the record
 *                     (unmapping the sink) before unpublishing it, so
 *                     translate answered -ENOENT for mapped pages.
 *  stats-any-thread   a thread never registered with the library reads
 *                     the engine's and a domain's stats while the domain's
 *                     IOTLB grows under misses and the domain is destroyed:
 *                     its read-side section protected nothing (a grace
 *                     period waits for registered readers only), and the
 *                     count walked a table a growth had freed (ASan: a
 *                     heap-use-after-free in iotlb_count, some runs).
 *  stats-host-registered  the stats (and iovt_thread_register, a post and a
 *                     fence) from threads liburcu already knows
 *                     without iovt: one the host registered itself (also
 *                     inside its own read-side section) and liburcu's
 *                     call_rcu thread. The first fix registered them again
 *                     (liburcu aborts; without its asserts the registry is
 *                     corrupted and the host's registration dropped).
 * And of the fourteenth session's review of the API:
 *  sink-posts         a sink callback that posts an invalidation: from the
 *                     attach's replay and from a locked iovt_fence (the
 *                     thread's first post took the control lock the caller
 *                     held: a hang), from a worker that is then stopped
 *                     (its exit took the control lock that iovt_workers_stop
 *                     held while joining it: a hang), and 5000 of them from
 *                     an inline fence (its own queue filled: a hang).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/alloc.h" /* iovt_alloc_fault (detach-refused-ram) */
#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"
#include "watchdog.h"
#include <urcu/urcu-memb.h>

/* White box (ram-remove-reader): the hook between remove's grace period
 * and its purge (engine/engine.c). */
extern void (*engine_test_ram_purging)(void);

CHECK_SEED_STORAGE;


#define K 0x1000ull
#define M1 0x100000ull
#define DID 1
#define NPROD 2
#define STALL_SECONDS 8.0

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double run_seconds(double dflt)
{
	double s = dflt * check_scale();
	return s < 1.0 ? 1.0 : s;
}

/* ---- sinks ---- */

static int accept_fn(void *arg, const struct iovt_event *ev)
{
	(void)ev;
	if (arg)
		atomic_fetch_add((atomic_ulong *)arg, 1);
	return 0;
}

/* Fails UNMAPs while *refuse is set. */
static int refusing_fn(void *arg, const struct iovt_event *ev)
{
	return ev->type == IOVT_EVENT_UNMAP && atomic_load((atomic_int *)arg) ? -EIO : 0;
}

struct raw_log {
	unsigned calls;
	uint64_t first, size; /* the last call */
};

static int raw_fn(void *arg, const struct iovt_event *ev)
{
	struct raw_log *l = arg;
	CHECK(ev->type == IOVT_EVENT_UNMAP);
	l->calls++;
	l->first = ev->extent.iova;
	l->size = ev->extent.size;
	return 0;
}

static struct iovt_notifier *attach_cb(struct iovt_domain *d, unsigned flags, iovt_event_fn fn,
				       void *arg)
{
	struct iovt_sink s;
	struct iovt_notifier *n;
	CHECK_EQ(iovt_callback_sink_init(&s, fn, arg, NULL), 0);
	CHECK_EQ(iovt_notifier_attach(d, flags, &s, &n), 0);
	return n;
}

/* ---- the threaded rig: a guestsim domain, producers, one control thread ---- */

struct rig {
	struct guestsim *gs;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *_Atomic d; /* the control thread's handle */
	uint64_t root;
	atomic_int stop;
	int global;                    /* producers send global invalidations too */
	atomic_ulong fences, control_ops;
};

static void rig_init(struct rig *r, bool attach)
{
	memset(r, 0, sizeof(*r));
	r->gs = gs_create(2, 32 * M1, 4 * M1);
	CHECK(r->gs);
	CHECK_EQ(iovt_engine_create(NULL, &r->e), 0);
	for (unsigned i = 0; i < 2; i++) {
		const struct gs_region *g = gs_region(r->gs, i);
		CHECK_EQ(iovt_guest_ram_add(r->e, g->gpa, g->size, g->hva, NULL), 0);
	}
	r->gd = gs_domain_create(r->gs, 48, false, false);
	CHECK(r->gd);
	r->root = gs_domain_root(r->gd);
	/* 64 scattered pages into both regions, so syncs have work. */
	uint64_t r1 = gs_region(r->gs, 1)->gpa;
	for (uint64_t i = 0; i < 64; i++)
		CHECK_EQ(gs_map(r->gd, i * 3 * K, (i & 1 ? r1 : 0) + M1 + i * K, K, IOVT_PERM_RW, 0),
			 0);
	struct iovt_domain_config dc = { .did = DID, .root_gpa = r->root, .addr_width = 48 };
	struct iovt_domain *d;
	CHECK_EQ(iovt_domain_create(r->e, &dc, &d), 0);
	if (attach)
		attach_cb(d, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
	atomic_store(&r->d, d);
}

static void rig_fini(struct rig *r)
{
	iovt_engine_destroy(r->e);
	gs_destroy(r->gs);
}

struct prod_arg {
	struct rig *r;
	unsigned idx;
};

/* PSIs (sometimes a DSI or a global) and a fence on the producer's own queue. */
static void *producer(void *p)
{
	struct prod_arg *a = p;
	struct rig *r = a->r;
	uint64_t rng = check_seed ^ (a->idx + 1) * 0x9e3779b97f4a7c15ull;
	struct iovt_queue *q;

	iovt_thread_register();
	CHECK_EQ(iovt_queue_create(r->e, NULL, &q), 0);
	watchdog_expect(a->idx, a->idx ? "producer 1" : "producer 0");
	while (!atomic_load(&r->stop)) {
		struct iovt_inval v[4];
		unsigned n = 1 + (unsigned)gs_rand_below(&rng, 4);
		for (unsigned i = 0; i < n; i++) {
			uint64_t x = gs_rand(&rng);
			v[i] = (struct iovt_inval){ .addr = (x % 256) * K, .did = DID,
						    .kind = IOVT_INVAL_PSI, .am = (uint8_t)(x >> 40) % 5 };
			if ((x >> 50) % 16 == 0)
				v[i].kind = IOVT_INVAL_DSI;
			if (r->global && (x >> 50) % 4 == 1)
				v[i].kind = IOVT_INVAL_GLOBAL;
		}
		int rc = iovt_queue_post(q, v, n);
		CHECK(rc == 0 || rc == -ENOENT); /* the domain is between destroy and create */
		rc = iovt_queue_fence(q);
		CHECK(rc == 0);
		atomic_fetch_add_explicit(&r->fences, 1, memory_order_relaxed);
		watchdog_progress(a->idx);
	}
	watchdog_idle(a->idx);
	iovt_queue_destroy(q);
	iovt_thread_unregister();
	return NULL;
}

enum control { CTL_DESTROY, CTL_DETACH };

static void control_loop(struct rig *r, enum control what, double seconds)
{
	unsigned slot = NPROD;
	struct iovt_domain *d = atomic_load(&r->d);
	struct iovt_notifier *map = NULL, *raw = NULL;
	double end = now() + seconds;

	watchdog_expect(slot, "control");
	while (now() < end) {
		if (what == CTL_DESTROY) {
			iovt_domain_destroy(d); /* sink errors impossible: accept_fn */
			struct iovt_domain_config dc = { .did = DID, .root_gpa = r->root,
							 .addr_width = 48 };
			CHECK_EQ(iovt_domain_create(r->e, &dc, &d), 0);
			atomic_store(&r->d, d);
			attach_cb(d, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
		} else {
			if (map) {
				CHECK_EQ(iovt_notifier_detach(map), 0);
				CHECK_EQ(iovt_notifier_detach(raw), 0);
				map = raw = NULL;
			} else {
				map = attach_cb(d, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
				raw = attach_cb(d, IOVT_NOTIFY_DEVIOTLB_UNMAP, accept_fn, NULL);
			}
		}
		atomic_fetch_add(&r->control_ops, 1);
		watchdog_progress(slot);
	}
	watchdog_idle(slot);
}

static void threaded_case(const char *name, enum control what, int global)
{
	struct rig r;
	pthread_t t[NPROD];
	struct prod_arg pa[NPROD];

	rig_init(&r, what == CTL_DESTROY);
	r.global = global;
	watchdog_start(name, STALL_SECONDS);
	for (unsigned i = 0; i < NPROD; i++) {
		pa[i] = (struct prod_arg){ &r, i };
		CHECK(pthread_create(&t[i], NULL, producer, &pa[i]) == 0);
	}
	control_loop(&r, what, run_seconds(4.0));
	atomic_store(&r.stop, 1);
	for (unsigned i = 0; i < NPROD; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	watchdog_stop();
	CHECK(atomic_load(&r.control_ops) >= 10);
	CHECK(atomic_load(&r.fences) >= 10);
	printf("%s: %lu control calls, %lu fences, no stall\n", name, atomic_load(&r.control_ops),
	       atomic_load(&r.fences));
	rig_fini(&r);
}

/* ---- RAM removal under walks: hand-made tables in a region we can revoke ---- */

#define R_GPA (1ull << 30)
#define R_SIZE (4 * M1)
#define R_PAGES 256

struct ram_rig {
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_model_sink *m;
	uint8_t *hva;
	atomic_int stop;
	atomic_ulong fences;
};

/*
 * A 4-level VT-d second-level table at the region's first pages. Every
 * level-2 entry points to the same level-1 table (a DAG, which VT-d allows),
 * whose first R_PAGES entries map IOVA page i of each 2 MiB to the region's
 * page 256 + i: a PSI over the whole 1 GiB reads 512 x 512 entries, so a walk
 * is long enough (hundreds of microseconds) to be caught mid-table by a
 * removal — the window in which a walker used to read revoked memory.
 */
static void build_tables(uint8_t *hva)
{
	uint64_t *l4 = (uint64_t *)hva, *l3 = (uint64_t *)(hva + K), *l2 = (uint64_t *)(hva + 2 * K),
		 *l1 = (uint64_t *)(hva + 3 * K);
	memset(hva, 0, 4 * K);
	l4[0] = (R_GPA + K) | IOVT_PERM_RW;
	l3[0] = (R_GPA + 2 * K) | IOVT_PERM_RW;
	for (unsigned i = 0; i < 512; i++)
		l2[i] = (R_GPA + 3 * K) | IOVT_PERM_RW;
	for (unsigned i = 0; i < R_PAGES; i++)
		l1[i] = (R_GPA + (256 + i) * K) | IOVT_PERM_RW;
}

#define G1 (1ull << 30)

static void *ram_producer(void *p)
{
	struct ram_rig *r = p;
	uint64_t rng = check_seed ^ 0x5bd1e995u;
	struct iovt_queue *q;
	iovt_thread_register();
	CHECK_EQ(iovt_queue_create(r->e, NULL, &q), 0);
	watchdog_expect(0, "producer");
	while (!atomic_load(&r->stop)) {
		uint64_t x = gs_rand(&rng);
		/* half of them the whole GiB (the long walks), half a small block */
		unsigned am = x & 1 ? 18 : (unsigned)(x >> 40) % 9;
		CHECK_EQ(iovt_queue_psi(q, DID, (x >> 8) % (G1 / K) * K, am, false), 0);
		int rc = iovt_queue_fence(q);
		/* while the region is out, the root points into a hole */
		CHECK(rc == 0 || rc == -EFAULT);
		atomic_fetch_add(&r->fences, 1);
		watchdog_progress(0);
	}
	watchdog_idle(0);
	iovt_queue_destroy(q);
	iovt_thread_unregister();
	return NULL;
}

static void check_nothing_into_region(struct ram_rig *r)
{
	struct iovt_extent buf[64];
	uint64_t from = 0;
	size_t got;
	while ((got = iovt_model_sink_dump(r->m, from, buf, 64)) > 0) {
		for (size_t i = 0; i < got; i++)
			CHECK(buf[i].gpa + buf[i].size <= R_GPA || buf[i].gpa >= R_GPA + R_SIZE);
		from = buf[got - 1].iova + buf[got - 1].size;
	}
	for (unsigned i = 0; i < 512; i += 7) {
		struct iovt_extent x;
		CHECK_EQ(iovt_translate(r->d, i * 2 * M1 + (i % R_PAGES) * K, &x), -ENOENT);
	}
}

static void case_ram_remove_walk(void)
{
	struct ram_rig r = { 0 };
	struct iovt_sink sink;
	struct iovt_notifier *n;
	pthread_t t;

	r.hva = mmap(NULL, R_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(r.hva != MAP_FAILED);
	build_tables(r.hva);
	CHECK_EQ(iovt_engine_create(NULL, &r.e), 0);
	CHECK_EQ(iovt_guest_ram_add(r.e, R_GPA, R_SIZE, r.hva, NULL), 0);
	struct iovt_domain_config dc = { .did = DID, .root_gpa = R_GPA, .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(r.e, &dc, &r.d), 0);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true }, &r.m,
					&sink), 0);
	CHECK_EQ(iovt_notifier_attach(r.d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n), 0);
	CHECK_EQ(iovt_model_sink_count(r.m), 512); /* a run per 2 MiB: 256 pages each */

	watchdog_start("lifecycle-ram-remove-walk", STALL_SECONDS);
	CHECK(pthread_create(&t, NULL, ram_producer, &r) == 0);
	watchdog_expect(1, "control");
	struct iovt_queue *cq;
	CHECK_EQ(iovt_queue_create(r.e, NULL, &cq), 0);
	double end = now() + run_seconds(3.0);
	unsigned removals = 0;
	/* At least 10 removals, however slow the build (TSan walks a GiB in
	 * ~100 ms): a control call that starved under the fence storm shows as
	 * no progress of the control slot (the watchdog) or as the hard limit. */
	double hard = end + 60;
	while ((now() < end || removals < 10) && now() < hard) {
		CHECK_EQ(iovt_guest_ram_remove(r.e, R_GPA), 0);
		/* The host frees the memory: any later read of it faults. */
		CHECK(mprotect(r.hva, R_SIZE, PROT_NONE) == 0);
		check_nothing_into_region(&r);
		usleep(500);
		CHECK(mprotect(r.hva, R_SIZE, PROT_READ | PROT_WRITE) == 0);
		CHECK_EQ(iovt_guest_ram_add(r.e, R_GPA, R_SIZE, r.hva, NULL), 0);
		/* the guest's replug: a DSI and a wait on the control thread's own queue */
		CHECK_EQ(iovt_queue_dsi(cq, DID), 0);
		int frc = iovt_queue_fence(cq);
		CHECK(frc == 0 || frc == -EFAULT); /* -EFAULT: a producer's walk in the hole */
		removals++;
		watchdog_progress(1);
	}
	watchdog_idle(1);
	iovt_queue_destroy(cq);
	atomic_store(&r.stop, 1);
	CHECK(pthread_join(t, NULL) == 0);
	watchdog_stop();
	CHECK_EQ(iovt_invalidate_dsi(r.e, DID), 0);
	CHECK_EQ(iovt_fence(r.e), 0);
	/* Every page maps as the table says (in however many extents the
	 * PSIs during the replug left: the plan keeps what is valid). */
	for (unsigned i = 0; i < 512 * R_PAGES; i += 13) {
		uint64_t iova = (i / R_PAGES) * 2 * M1 + (i % R_PAGES) * K;
		struct iovt_extent x;
		CHECK(iovt_model_sink_find(r.m, iova, &x));
		CHECK_EQ(x.gpa + (iova - x.iova), R_GPA + (256 + i % R_PAGES) * K);
	}
	struct iovt_model_stats ms;
	iovt_model_sink_stats(r.m, &ms);
	CHECK_EQ(ms.rejected_calls, 0);
	CHECK(removals >= 10); /* a control call must not starve under a fence storm */
	printf("ram-remove-walk: %u removals under %lu fences, no fault\n", removals,
	       atomic_load(&r.fences));
	iovt_engine_destroy(r.e);
	iovt_model_sink_destroy(r.m);
	munmap(r.hva, R_SIZE);
}

/* ---- single-threaded cases on a guestsim ---- */

#include "flat_fixture.h"

static void case_ram_remove_purge(void)
{
	struct flat f;
	struct iovt_sink sink;
	struct iovt_notifier *n;
	struct iovt_model_sink *m;
	struct raw_log raw = { 0 };
	struct iovt_extent x;
	struct iovt_stats st;

	flat_init(&f);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true }, &m, &sink),
		 0);
	CHECK_EQ(iovt_notifier_attach(f.d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n), 0);
	attach_cb(f.d, IOVT_NOTIFY_DEVIOTLB_UNMAP, raw_fn, &raw);
	CHECK_EQ(iovt_model_sink_count(m), 2);
	CHECK_EQ(iovt_translate(f.d, M1 + K, &x), 0);
	CHECK_EQ(x.gpa, f.r1 + M1);

	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
	/* Nothing maps into the region any more, in the sink or the record. */
	CHECK_EQ(iovt_model_sink_count(m), 1);
	CHECK(!iovt_model_sink_find(m, M1, &x));
	CHECK_EQ(iovt_translate(f.d, M1 + K, &x), -ENOENT);
	CHECK_EQ(iovt_translate(f.d, K, &x), 0); /* region 0 untouched */
	/* The device IOTLB was told to drop the whole domain. */
	CHECK_EQ(raw.calls, 1);
	CHECK_EQ(raw.first, 0);
	CHECK_EQ(raw.size, 1ull << 48);
	iovt_domain_stats_get(f.d, &st);
	CHECK_EQ(st.ram_purged, 1);
	CHECK_EQ(iovt_invalidate_dsi(f.e, DID), 0);
	/* A fence does not bring it back: its leaves point into a hole, which is
	 * a fault (leaf_outside_ram, -EFAULT), once per leaf. */
	uint64_t before = st.errors[IOVT_ERR_LEAF_OUTSIDE_RAM];
	CHECK_EQ(iovt_fence(f.e), (uint64_t)-EFAULT);
	iovt_domain_stats_get(f.d, &st);
	CHECK_EQ(st.errors[IOVT_ERR_LEAF_OUTSIDE_RAM] - before, 8);
	CHECK(!iovt_model_sink_find(m, M1, &x));
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), -ENOENT);

	/* Replug: the guest invalidates, the mapping comes back. */
	CHECK_EQ(iovt_guest_ram_add(f.e, f.r1, f.r1_size, f.r1_hva, NULL), 0);
	CHECK_EQ(iovt_invalidate_dsi(f.e, DID), 0);
	CHECK_EQ(iovt_fence(f.e), 0);
	CHECK_EQ(iovt_model_sink_count(m), 2);
	CHECK_EQ(iovt_translate(f.d, M1 + K, &x), 0);
	struct iovt_model_stats ms;
	iovt_model_sink_stats(m, &ms);
	CHECK_EQ(ms.rejected_calls, 0);
	flat_fini(&f);
	iovt_model_sink_destroy(m);
	printf("ram-remove-purge: mapping into removed RAM unmapped before remove returned\n");
}

static void case_ram_remove_refused(void)
{
	struct flat f;
	atomic_int refuse = 0;
	struct iovt_extent x;

	flat_init(&f);
	attach_cb(f.d, IOVT_NOTIFY_IOTLB_EVENTS, refusing_fn, &refuse);
	CHECK_EQ(iovt_translate(f.d, M1, &x), 0);
	atomic_store(&refuse, 1);
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), -EBUSY);
	/* Still declared and still mapped: the host must keep the memory. */
	CHECK_EQ(iovt_translate(f.d, M1, &x), 0);
	CHECK_EQ(x.gpa, f.r1 + M1);
	CHECK_EQ(iovt_guest_ram_add(f.e, f.r1, f.r1_size, f.r1_hva, NULL), -EEXIST);
	atomic_store(&refuse, 0);
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
	CHECK_EQ(iovt_translate(f.d, M1, &x), -ENOENT);
	flat_fini(&f);
	printf("ram-remove-refused: -EBUSY while a sink keeps the mapping\n");
}

/*
 * raw-refused-counted: an UNMAP-only (DEVIOTLB) notifier that refuses its
 * raw UNMAP fails the fence, and a RAM removal (-EBUSY), with its errno —
 * and each refusal is counted in errors[IOVT_ERR_SINK_UNMAP], on the
 * domain and the engine. Nothing was counted before (found by the
 * twenty-second session's review).
 */
static void case_raw_refused_counted(void)
{
	struct flat f;
	atomic_int refuse = 1;
	struct iovt_stats d0, e0, d1, e1;

	flat_init(&f);
	attach_cb(f.d, IOVT_NOTIFY_DEVIOTLB_UNMAP, refusing_fn, &refuse);
	iovt_domain_stats_get(f.d, &d0);
	iovt_stats_get(f.e, &e0);
	CHECK_EQ(iovt_invalidate_psi(f.e, DID, M1, 0, false), 0);
	CHECK_EQ(iovt_fence(f.e), (uint64_t)-EIO);
	iovt_domain_stats_get(f.d, &d1);
	iovt_stats_get(f.e, &e1);
	CHECK_EQ(d1.errors[IOVT_ERR_SINK_UNMAP] - d0.errors[IOVT_ERR_SINK_UNMAP], 1);
	CHECK_EQ(e1.errors[IOVT_ERR_SINK_UNMAP] - e0.errors[IOVT_ERR_SINK_UNMAP], 1);
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), -EBUSY);
	iovt_stats_get(f.e, &e0);
	CHECK(e0.errors[IOVT_ERR_SINK_UNMAP] > e1.errors[IOVT_ERR_SINK_UNMAP]);
	atomic_store(&refuse, 0);
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
	flat_fini(&f);
	printf("raw-refused-counted: each raw UNMAP refusal counted\n");
}

/*
 * detach-refused-ram: a MAP sink that refuses to drop its mappings at the
 * notifier's detach (or the domain's destroy) still holds them after the
 * call fails; a later iovt_guest_ram_remove of the region they map into
 * must not return 0 while the sink still maps it (it did: the engine had
 * forgotten them; found by the twenty-second session's review). It fails
 * with -EBUSY (the region stays) while the sink refuses, returns 0 once the
 * sink unmaps them, and only then is the sink destroyed; a sink that never
 * gives in is destroyed with the engine.
 */
static struct iovt_sink dr_inner;
static int dr_refuse, dr_destroyed;

static int dr_map(void *c, const struct iovt_extent *m)
{
	(void)c;
	return dr_inner.ops->map(dr_inner.ctx, m);
}

/* How the sink refuses: an error, or (short) type1 before 6.3 at another
 * process's mapping — 0, having removed nothing (IOVT_SINK_EXACT_UNMAPPED);
 * nomem: an error, and no memory at the detach for the copy of what it
 * refused (the orphan keeps the whole record). */
enum dr_kind { DR_ERROR, DR_SHORT, DR_NOMEM };
static enum dr_kind dr_kind;

static int dr_unmap(void *c, uint64_t iova, uint64_t size, uint64_t *done)
{
	(void)c;
	if (dr_refuse) {
		*done = 0;
		return dr_kind == DR_SHORT ? 0 : -EIO;
	}
	return dr_inner.ops->unmap(dr_inner.ctx, iova, size, done);
}

static bool dr_no_memory(size_t size)
{
	(void)size;
	return true;
}

static void dr_destroy(void *c)
{
	(void)c;
	dr_destroyed++;
}

static void detach_refused_one(int destroy, int gives_in)
{
	struct flat f;
	struct iovt_model_sink *m;
	struct iovt_extent x;
	static struct iovt_sink_ops ops;

	flat_init(&f);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true }, &m,
					&dr_inner),
		 0);
	ops = (struct iovt_sink_ops){ .map = dr_map, .unmap = dr_unmap, .destroy = dr_destroy };
	struct iovt_sink s = { .ops = &ops, .caps = dr_inner.caps, .name = "refusing" };
	s.caps.flags &= ~IOVT_SINK_UNMAP_ALL;
	if (dr_kind == DR_SHORT)
		s.caps.flags = (s.caps.flags & ~IOVT_SINK_MULTI_UNMAP) | IOVT_SINK_EXACT_UNMAPPED;
	struct iovt_notifier *n;
	CHECK_EQ(iovt_notifier_attach(f.d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);
	CHECK_EQ(iovt_model_sink_count(m), 2);
	dr_refuse = 1;
	dr_destroyed = 0;
	if (dr_kind == DR_NOMEM)
		iovt_alloc_fault = dr_no_memory;
	int rc = destroy ? iovt_domain_destroy(f.d) : iovt_notifier_detach(n);
	iovt_alloc_fault = NULL;
	CHECK_EQ(rc, dr_kind == DR_SHORT ? (uint64_t)-EBUSY : (uint64_t)-EIO);
	CHECK_EQ(dr_destroyed, 0); /* the sink still holds mappings: kept */
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), -EBUSY);
	CHECK(iovt_model_sink_find(m, M1, &x));
	CHECK_EQ(x.gpa, f.r1 + M1);
	CHECK_EQ(iovt_guest_ram_add(f.e, f.r1, f.r1_size, f.r1_hva, NULL), -EEXIST); /* still declared */
	if (gives_in) {
		dr_refuse = 0;
		CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
		CHECK(!iovt_model_sink_find(m, M1, &x));
		CHECK(!iovt_model_sink_find(m, M1 + 7 * K, &x));
		/* Region 0's mapping is still held (refused, never asked again):
		 * the sink lives on until the engine goes. */
		CHECK_EQ(iovt_model_sink_count(m), 1);
		CHECK_EQ(dr_destroyed, 0);
		const struct gs_region *g0 = gs_region(f.gs, 0);
		CHECK_EQ(iovt_guest_ram_remove(f.e, g0->gpa), 0);
		CHECK_EQ(iovt_model_sink_count(m), 0);
		CHECK_EQ(dr_destroyed, 1); /* nothing left: the orphan went */
	}
	flat_fini(&f);
	CHECK_EQ(dr_destroyed, 1);
	iovt_model_sink_destroy(m);
}

static void case_detach_refused_ram(void)
{
	for (int kind = DR_ERROR; kind <= DR_NOMEM; kind++) {
		dr_kind = (enum dr_kind)kind;
		for (int destroy = 0; destroy < 2; destroy++)
			for (int gives_in = 0; gives_in < 2; gives_in++)
				detach_refused_one(destroy, gives_in);
	}
	printf("detach-refused-ram: a refused detach's mappings keep their RAM declared\n");
}

/*
 * ram-remove-reader: a translate between iovt_guest_ram_remove's grace
 * period and its purge answers from the shadow or the IOTLB with an address
 * in the region being removed (found by review). A host that uses an
 * answer only inside its own read-side section must be done with it when
 * remove returns 0: remove waits a second grace period after the purge. A
 * hook runs such a translate there, in a reader that then holds its section
 * 100 ms; remove must not return before the reader has left it. Both a
 * domain without a MAP notifier (an IOTLB hit) and one with (the shadow).
 */
static struct flat *rr_f;
static atomic_int rr_go, rr_translated, rr_left;

static void *rr_reader(void *p)
{
	(void)p;
	iovt_thread_register();
	while (!atomic_load(&rr_go))
		usleep(100);
	urcu_memb_read_lock(); /* the host's own section around translate-and-use */
	struct iovt_extent x;
	CHECK_EQ(iovt_translate(rr_f->d, M1, &x), 0);
	CHECK_EQ(x.gpa, rr_f->r1 + M1); /* still the old answer: not purged yet */
	atomic_store(&rr_translated, 1);
	usleep(100 * 1000); /* "uses" the host address */
	atomic_store(&rr_left, 1);
	urcu_memb_read_unlock();
	iovt_thread_unregister();
	return NULL;
}

static void rr_hook(void)
{
	atomic_store(&rr_go, 1);
	while (!atomic_load(&rr_translated))
		usleep(100);
}

static void case_ram_remove_reader(void)
{
	for (int with_map = 0; with_map < 2; with_map++) {
		struct flat f;
		struct iovt_extent x;
		flat_init(&f);
		if (with_map)
			attach_cb(f.d, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
		CHECK_EQ(iovt_translate(f.d, M1, &x), 0); /* cached (IOTLB) or recorded (shadow) */
		rr_f = &f;
		atomic_store(&rr_go, 0);
		atomic_store(&rr_translated, 0);
		atomic_store(&rr_left, 0);
		pthread_t t;
		CHECK(pthread_create(&t, NULL, rr_reader, NULL) == 0);
		engine_test_ram_purging = rr_hook;
		CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
		engine_test_ram_purging = NULL;
		CHECK_EQ(atomic_load(&rr_left), 1); /* the reader's section ended first */
		CHECK(pthread_join(t, NULL) == 0);
		/* purged: the shadow no longer has it; the walk meets a hole */
		CHECK_EQ(iovt_translate(f.d, M1, &x), with_map ? -ENOENT : -EFAULT);
		flat_fini(&f);
	}
	printf("ram-remove-reader: remove returned after the section that translated before the purge\n");
}

struct reader_arg {
	struct rig *r;
	unsigned idx;
	atomic_ulong hits, dead;
};

static void *ref_reader(void *p)
{
	struct reader_arg *a = p;
	struct rig *r = a->r;
	uint64_t rng = check_seed ^ (a->idx + 7) * 0x9e3779b97f4a7c15ull;
	iovt_thread_register();
	watchdog_expect(a->idx, "reader");
	while (!atomic_load(&r->stop)) {
		struct iovt_domain *d = iovt_domain_lookup(r->e, DID);
		if (!d)
			continue;
		for (int i = 0; i < 64; i++) {
			struct iovt_extent x;
			uint64_t iova = gs_rand_below(&rng, 192) * K;
			int rc = iovt_translate(d, iova, &x);
			CHECK(rc == 0 || rc == -ENOENT || rc == -ENODEV);
			if (rc == 0) {
				CHECK(x.iova <= iova && iova < x.iova + x.size);
				atomic_fetch_add_explicit(&a->hits, 1, memory_order_relaxed);
			}
			if (rc == -ENODEV)
				atomic_fetch_add_explicit(&a->dead, 1, memory_order_relaxed);
		}
		iovt_domain_put(d);
		watchdog_progress(a->idx);
	}
	watchdog_idle(a->idx);
	iovt_thread_unregister();
	return NULL;
}

static void case_translate_destroy(void)
{
	struct rig r;
	rig_init(&r, true);
	/* Deterministic: a held reference outlives the destroy, harmlessly. */
	struct iovt_domain *ref = iovt_domain_lookup(r.e, DID);
	CHECK(ref == atomic_load(&r.d));
	struct iovt_extent x;
	CHECK_EQ(iovt_translate(ref, 0, &x), 0);
	CHECK_EQ(iovt_domain_destroy(atomic_load(&r.d)), 0);
	CHECK(!iovt_domain_alive(ref));
	CHECK_EQ(iovt_translate(ref, 0, &x), -ENODEV);
	CHECK_EQ(iovt_domain_destroy(ref), -ENODEV);
	CHECK_EQ(iovt_domain_set_root(ref, r.root), -ENODEV);
	struct iovt_stats st;
	iovt_domain_stats_get(ref, &st); /* still readable */
	iovt_domain_put(ref);
	CHECK(iovt_domain_lookup(r.e, DID) == NULL);
	struct iovt_domain_config dc = { .did = DID, .root_gpa = r.root, .addr_width = 48 };
	struct iovt_domain *d;
	CHECK_EQ(iovt_domain_create(r.e, &dc, &d), 0);
	attach_cb(d, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
	atomic_store(&r.d, d);

	/* Threaded: readers look up, translate, put, while destroy/create loops. */
	pthread_t t[NPROD];
	struct reader_arg ra[NPROD];
	watchdog_start("lifecycle-translate-destroy", STALL_SECONDS);
	for (unsigned i = 0; i < NPROD; i++) {
		ra[i] = (struct reader_arg){ .r = &r, .idx = i };
		CHECK(pthread_create(&t[i], NULL, ref_reader, &ra[i]) == 0);
	}
	control_loop(&r, CTL_DESTROY, run_seconds(3.0));
	atomic_store(&r.stop, 1);
	unsigned long hits = 0, dead = 0;
	for (unsigned i = 0; i < NPROD; i++) {
		CHECK(pthread_join(t[i], NULL) == 0);
		hits += atomic_load(&ra[i].hits);
		dead += atomic_load(&ra[i].dead);
	}
	watchdog_stop();
	CHECK(hits > 0);
	printf("translate-destroy: %lu control calls, %lu hits, %lu -ENODEV on dead references\n",
	       atomic_load(&r.control_ops), hits, dead);
	rig_fini(&r);
}

static void case_lookup_alias(void)
{
	struct rig r;
	rig_init(&r, false);
	struct iovt_domain *old = iovt_domain_lookup(r.e, DID);
	CHECK(old);
	CHECK_EQ(iovt_domain_destroy(atomic_load(&r.d)), 0);
	struct iovt_domain_config dc = { .did = DID, .root_gpa = r.root, .addr_width = 48 };
	struct iovt_domain *d;
	CHECK_EQ(iovt_domain_create(r.e, &dc, &d), 0);
	struct iovt_domain *now_ = iovt_domain_lookup(r.e, DID);
	CHECK(now_ == d);
	CHECK(old != d); /* the old reference keeps its memory: no alias */
	CHECK(!iovt_domain_alive(old));
	CHECK(iovt_domain_alive(now_));
	iovt_domain_put(old);
	iovt_domain_put(now_);
	rig_fini(&r);
	printf("lookup-alias: a reference from before the destroy stays the dead domain\n");
}

static void case_set_root_any_queue(void)
{
	struct flat f;
	struct iovt_sink sink;
	struct iovt_notifier *n;
	struct iovt_model_sink *m;
	struct iovt_queue *q1, *q2;
	struct iovt_extent x;

	flat_init(&f);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true }, &m, &sink),
		 0);
	CHECK_EQ(iovt_notifier_attach(f.d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n), 0);
	CHECK_EQ(iovt_queue_create(f.e, NULL, &q1), 0);
	CHECK_EQ(iovt_queue_create(f.e, NULL, &q2), 0);
	CHECK_EQ(iovt_queue_psi(q1, DID, 0, 0, false), 0);
	CHECK_EQ(iovt_queue_fence(q1), 0);
	/* A second table: one page at 4 MiB, nothing else. */
	struct gs_domain *g2 = gs_domain_create(f.gs, 48, false, false);
	CHECK_EQ(gs_map(g2, 4 * M1, 2 * M1, K, IOVT_PERM_RW, 0), 0);
	CHECK_EQ(iovt_domain_set_root(f.d, gs_domain_root(g2)), 0);
	CHECK_EQ(iovt_queue_fence(q2), 0); /* q2 never touched the domain */
	CHECK_EQ(iovt_translate(f.d, 0, &x), -ENOENT);
	CHECK(!iovt_model_sink_find(m, 0, &x));
	CHECK(iovt_model_sink_find(m, 4 * M1, &x));
	CHECK_EQ(iovt_model_sink_count(m), 1);
	iovt_queue_destroy(q1);
	iovt_queue_destroy(q2);
	flat_fini(&f);
	iovt_model_sink_destroy(m);
	printf("set-root-any-queue: the new table is in force for every queue\n");
}

static void case_counters(void)
{
	struct flat f;
	struct iovt_stats a, b, da, db;
	struct iovt_queue *q, *h;

	flat_init(&f);
	/* The same three invalidations on a queue and through the legacy calls;
	 * path 2 ends with the PSI, so that it rides its fence into the sync
	 * (the carried counters: a mutation audit found carried_ih unread). */
	CHECK_EQ(iovt_queue_create(f.e, NULL, &q), 0);
	for (int path = 0; path < 3; path++) {
		iovt_stats_get(f.e, &a);
		iovt_domain_stats_get(f.d, &da);
		if (path == 0) {
			struct iovt_inval v[3] = {
				{ .addr = 0, .did = DID, .kind = IOVT_INVAL_PSI, .ih = 1 },
				{ .did = DID, .kind = IOVT_INVAL_DSI },
				{ .kind = IOVT_INVAL_GLOBAL },
			};
			CHECK_EQ(iovt_queue_post(q, v, 3), 0);
			CHECK_EQ(iovt_queue_fence(q), 0);
		} else if (path == 2) {
			struct iovt_inval g = { .kind = IOVT_INVAL_GLOBAL };
			CHECK_EQ(iovt_queue_post(q, &g, 1), 0);
			CHECK_EQ(iovt_queue_dsi(q, DID), 0);
			CHECK_EQ(iovt_queue_psi(q, DID, 0, 0, true), 0);
			CHECK_EQ(iovt_queue_fence(q), 0);
		} else {
			CHECK_EQ(iovt_invalidate_psi(f.e, DID, 0, 0, true), 0);
			CHECK_EQ(iovt_invalidate_dsi(f.e, DID), 0);
			CHECK_EQ(iovt_invalidate_global(f.e), 0);
			CHECK_EQ(iovt_fence(f.e), 0);
		}
		iovt_stats_get(f.e, &b);
		iovt_domain_stats_get(f.d, &db);
		CHECK_EQ(b.invalidations - a.invalidations, 3);
		CHECK_EQ(b.psi - a.psi, 1);
		CHECK_EQ(b.dsi - a.dsi, 1);
		CHECK_EQ(b.global - a.global, 1);
		CHECK_EQ(b.ih - a.ih, 1);
		CHECK_EQ(db.psi - da.psi, 1);
		CHECK_EQ(db.dsi - da.dsi, 1);
		CHECK_EQ(db.ih - da.ih, 1);
	}
	/* Rejected at post: counted as errors only. */
	iovt_stats_get(f.e, &a);
	CHECK_EQ(iovt_queue_psi(q, 99, 0, 0, false), -ENOENT);
	CHECK_EQ(iovt_invalidate_psi(f.e, 99, 0, 0, false), -ENOENT);
	CHECK_EQ(iovt_queue_psi(q, DID, 0, 53, false), -EINVAL);
	CHECK_EQ(iovt_queue_fence(q), 0);
	iovt_stats_get(f.e, &b);
	CHECK_EQ(b.invalidations - a.invalidations, 0);
	CHECK_EQ(b.errors[IOVT_ERR_UNKNOWN_DOMAIN] - a.errors[IOVT_ERR_UNKNOWN_DOMAIN], 2);
	CHECK_EQ(b.errors[IOVT_ERR_BAD_INVALIDATION] - a.errors[IOVT_ERR_BAD_INVALIDATION], 1);

	/* Accepted, then its domain goes before the drain: stale, not unknown. */
	struct iovt_domain_config dc = { .did = 2, .root_gpa = gs_domain_root(f.gd),
					 .addr_width = 48 };
	struct iovt_domain *d2;
	CHECK_EQ(iovt_domain_create(f.e, &dc, &d2), 0);
	CHECK_EQ(iovt_queue_create(f.e, &(struct iovt_queue_config){ .handoff = true }, &h), 0);
	iovt_stats_get(f.e, &a);
	CHECK_EQ(iovt_queue_psi(h, 2, 0, 0, true), 0);
	CHECK_EQ(iovt_queue_dsi(h, 2), 0);
	CHECK_EQ(iovt_domain_destroy(d2), 0);
	CHECK_EQ(iovt_fence(f.e), 0); /* drains h */
	iovt_stats_get(f.e, &b);
	CHECK_EQ(b.invalidations - a.invalidations, 2);
	CHECK_EQ(b.psi - a.psi, 1);
	CHECK_EQ(b.dsi - a.dsi, 1);
	CHECK_EQ(b.ih - a.ih, 1);
	CHECK_EQ(b.stale_domain - a.stale_domain, 2);
	CHECK_EQ(b.errors[IOVT_ERR_UNKNOWN_DOMAIN] - a.errors[IOVT_ERR_UNKNOWN_DOMAIN], 0);

	/* Rejected control arguments count too. */
	iovt_stats_get(f.e, &a);
	iovt_domain_stats_get(f.d, &da);
	CHECK_EQ(iovt_domain_set_root(f.d, gs_domain_root(f.gd) + 8), -EINVAL);
	CHECK_EQ(iovt_guest_ram_remove(f.e, 0x12345000), -ENOENT);
	CHECK_EQ(iovt_guest_ram_add(f.e, 0, K, f.r1_hva, NULL), -EEXIST);
	/* A host address the walker could not read through: NULL, off a page
	 * boundary (accepted until a review: the first walk crashed, or read
	 * tables misaligned) */
	CHECK_EQ(iovt_guest_ram_add(f.e, 1ull << 40, K, NULL, NULL), -EINVAL);
	CHECK_EQ(iovt_guest_ram_add(f.e, 1ull << 40, K, (char *)f.r1_hva + 4, NULL), -EINVAL);
	dc.did = DID; /* in use */
	CHECK_EQ(iovt_domain_create(f.e, &dc, &d2), -EEXIST);
	dc.addr_width = 40;
	CHECK_EQ(iovt_domain_create(f.e, &dc, &d2), -EINVAL);
	struct iovt_queue *q3;
	CHECK_EQ(iovt_queue_create(f.e, &(struct iovt_queue_config){ .capacity = 1 }, &q3), -EINVAL);
	CHECK_EQ(iovt_workers_start(f.e, 0), -EINVAL);
	struct iovt_notifier *n3;
	struct iovt_sink s3;
	CHECK_EQ(iovt_callback_sink_init(&s3, accept_fn, NULL, NULL), 0);
	CHECK_EQ(iovt_notifier_attach(f.d, IOVT_NOTIFY_MAP, &s3, &n3), -EINVAL); /* MAP without UNMAP */
	s3.ops->destroy(s3.ctx); /* refused: the caller still owns it */
	iovt_stats_get(f.e, &b);
	iovt_domain_stats_get(f.d, &db);
	CHECK_EQ(b.errors[IOVT_ERR_BAD_ARGUMENT] - a.errors[IOVT_ERR_BAD_ARGUMENT], 10);
	CHECK_EQ(db.errors[IOVT_ERR_BAD_ARGUMENT] - da.errors[IOVT_ERR_BAD_ARGUMENT], 2);
	CHECK(strcmp(iovt_err_kind_name(IOVT_ERR_BAD_ARGUMENT), "bad_argument") == 0);

	/* A callback sink cannot honour unmap-all or partial UNMAPs: refused. */
	struct iovt_sink s;
	struct iovt_sink_caps caps = { .flags = IOVT_SINK_UNMAP_ALL };
	CHECK_EQ(iovt_callback_sink_init(&s, accept_fn, NULL, &caps), -EINVAL);
	caps.flags = IOVT_SINK_PARTIAL_UNMAP;
	CHECK_EQ(iovt_callback_sink_init(&s, accept_fn, NULL, &caps), -EINVAL);

	iovt_queue_destroy(q);
	iovt_queue_destroy(h);
	flat_fini(&f);
	printf("counters: one meaning on every path\n");
}

/* ---- the review's findings: hand-made tables in host memory ---- */

struct hand {
	struct iovt_engine *e;
	uint64_t *mem;                     /* 1 MiB of tables at GPA 0 */
	uint64_t *pml4, *pdpt, *pd, *pd2, *pt;
};

static void hand_init(struct hand *h, const struct iovt_config *cfg)
{
	CHECK_EQ(iovt_engine_create(cfg, &h->e), 0);
	h->mem = aligned_alloc(4096, M1);
	CHECK(h->mem);
	memset(h->mem, 0, M1);
	CHECK_EQ(iovt_guest_ram_add(h->e, 0, M1, h->mem, NULL), 0);
	h->pml4 = h->mem + 0x1000 / 8;
	h->pdpt = h->mem + 0x2000 / 8;
	h->pd = h->mem + 0x3000 / 8;
	h->pd2 = h->mem + 0x4000 / 8;
	h->pt = h->mem + 0x5000 / 8;
	h->pml4[0] = 0x2000 | IOVT_PERM_RW;
	h->pdpt[0] = 0x3000 | IOVT_PERM_RW;
	h->pd[0] = 0x5000 | IOVT_PERM_RW; /* IOVA [0, 2 MiB) -> pt */
}

static void hand_fini(struct hand *h)
{
	iovt_engine_destroy(h->e);
	free(h->mem);
}

static void case_dirty_leak(void)
{
	struct hand h;
	struct iovt_queue *q;
	struct iovt_stats st;
	hand_init(&h, NULL);
	CHECK_EQ(iovt_queue_create(h.e, NULL, &q), 0);
	struct iovt_domain_config dc = { .did = DID, .root_gpa = 0x1000, .addr_width = 48 };
	iovt_stats_get(h.e, &st);
	uint64_t before = st.domain_objects;
	for (int i = 0; i < 20000; i++) {
		struct iovt_domain *d;
		CHECK_EQ(iovt_domain_create(h.e, &dc, &d), 0);
		for (int k = 0; k < 8; k++)
			CHECK_EQ(iovt_queue_psi(q, DID, (uint64_t)k << 22, 0, false), 0);
		CHECK_EQ(iovt_queue_fence(q), 0);
		CHECK_EQ(iovt_domain_destroy(d), 0);
	}
	/* Domains go after a grace period (call_rcu): let the callbacks run.
	 * Every destroyed domain must then be gone — none held by the dirty
	 * queue of an engine whose host never calls iovt_fence. */
	urcu_memb_barrier();
	iovt_stats_get(h.e, &st);
	CHECK_EQ(st.domain_objects, before);
	iovt_queue_destroy(q);
	hand_fini(&h);
	printf("dirty-leak: 20000 destroyed domains, %llu domain objects left\n",
	       (unsigned long long)(st.domain_objects - before));
}

static int refuse_b;
static int refuse_b_fn(void *arg, const struct iovt_event *ev)
{
	(void)arg;
	return ev->type == IOVT_EVENT_UNMAP && refuse_b ? -EBUSY : 0;
}

static void case_remove_refused_resync(void)
{
	struct hand h;
	hand_init(&h, NULL);
	void *data = aligned_alloc(4096, M1);
	CHECK(data);
	CHECK_EQ(iovt_guest_ram_add(h.e, M1, M1, data, NULL), 0);
	h.pt[0] = M1 | IOVT_PERM_RW; /* IOVA 0 -> the data region */
	struct iovt_domain *a, *b;
	struct iovt_domain_config ca = { .did = 1, .root_gpa = 0x1000, .addr_width = 48 };
	struct iovt_domain_config cb = { .did = 2, .root_gpa = 0x1000, .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(h.e, &ca, &a), 0);
	CHECK_EQ(iovt_domain_create(h.e, &cb, &b), 0);
	attach_cb(a, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
	attach_cb(b, IOVT_NOTIFY_IOTLB_EVENTS, refuse_b_fn, NULL);
	struct iovt_extent x;
	CHECK_EQ(iovt_translate(a, 0, &x), 0);
	refuse_b = 1;
	CHECK_EQ(iovt_guest_ram_remove(h.e, M1), -EBUSY);
	refuse_b = 0;
	/* The region is back, the guest still maps it: both domains map it. */
	CHECK_EQ(iovt_translate(a, 0, &x), 0);
	CHECK_EQ(iovt_translate(b, 0, &x), 0);
	CHECK_EQ(iovt_fence(h.e), 0);
	CHECK_EQ(iovt_translate(a, 0, &x), 0);
	hand_fini(&h);
	free(data);
	printf("remove-refused-resync: every domain maps the restored region again\n");
}

static void case_capped_stale(void)
{
	struct hand h;
	struct iovt_config cfg = { .max_extents_per_domain = 1 };
	hand_init(&h, &cfg);
	h.pt[0] = 0x10000 | IOVT_PERM_RW;
	h.pt[2] = 0x30000 | IOVT_PERM_R; /* a second extent: past the cap */
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = DID, .root_gpa = 0x1000, .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(h.e, &dc, &d), 0);
	struct iovt_sink s;
	struct iovt_notifier *n;
	CHECK_EQ(iovt_callback_sink_init(&s, accept_fn, NULL, NULL), 0);
	CHECK_EQ(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), -ENOSPC);
	CHECK_EQ(iovt_fence(h.e), (uint64_t)-ENOSPC); /* the replay's capped span is queued */
	/* The guest unmaps the capped page: nothing is capped any more. */
	h.pt[2] = 0;
	CHECK_EQ(iovt_invalidate_psi(h.e, DID, 0x2000, 0, false), 0);
	CHECK_EQ(iovt_fence(h.e), 0);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(iovt_invalidate_psi(h.e, DID, 0x2000, 0, false), 0);
		CHECK_EQ(iovt_fence(h.e), 0);
	}
	hand_fini(&h);
	printf("capped-stale: a capped span the guest unmapped leaves the capped set\n");
}

static int starve_hi_fail = 1;
static int starve_fn(void *arg, const struct iovt_event *ev)
{
	(void)arg;
	if (ev->type != IOVT_EVENT_MAP)
		return 0;
	if (ev->extent.iova < (512ull << 20))
		return -EIO; /* refused for good */
	if (ev->extent.iova == (1ull << 30) && starve_hi_fail) {
		starve_hi_fail = 0;
		return -EIO; /* once */
	}
	return 0;
}

static void case_retry_starve(void)
{
	struct hand h;
	hand_init(&h, NULL);
	void *data = aligned_alloc(4096, 2 * M1);
	CHECK(data);
	CHECK_EQ(iovt_guest_ram_add(h.e, 2 * M1, 2 * M1, data, NULL), 0);
	/* 256 x 2 MiB leaves at [0, 512 MiB) (refused for good), one page at 1 GiB */
	for (int i = 0; i < 256; i++)
		h.pd[i] = (2 * M1) | (1 << 7) | IOVT_PERM_RW;
	h.pdpt[1] = 0x4000 | IOVT_PERM_RW;
	h.pd2[0] = 0x5000 | IOVT_PERM_RW;
	h.pt[0] = (2 * M1) | IOVT_PERM_RW;
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = DID, .root_gpa = 0x1000, .addr_width = 48,
					 .allow_2m = true };
	CHECK_EQ(iovt_domain_create(h.e, &dc, &d), 0);
	struct iovt_sink s;
	struct iovt_notifier *n;
	CHECK_EQ(iovt_callback_sink_init(&s, starve_fn, NULL, NULL), 0);
	CHECK_EQ(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), -EIO);
	struct iovt_extent x;
	CHECK_EQ(iovt_translate(d, 1ull << 30, &x), -ENOENT);
	struct iovt_stats a, b;
	iovt_domain_stats_get(d, &a);
	for (int i = 0; i < 8; i++)
		(void)iovt_fence(h.e);
	iovt_domain_stats_get(d, &b);
	CHECK_EQ(iovt_translate(d, 1ull << 30, &x), 0); /* retried in its turn */
	/* 512 MiB of failed spans, 2^16 pages a sync: each sync took some up
	 * again and left the rest for later, and says so. */
	CHECK(b.retry_ranges > a.retry_ranges);
	CHECK(b.retry_deferred > a.retry_deferred);
	hand_fini(&h);
	free(data);
	printf("retry-starve: a transient failure is retried beside persistent ones\n");
}

static void case_stale_width(void)
{
	struct hand h;
	struct iovt_queue *q;
	hand_init(&h, NULL);
	CHECK_EQ(iovt_queue_create(h.e, NULL, &q), 0);
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = DID, .root_gpa = 0x1000, .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(h.e, &dc, &d), 0);
	CHECK_EQ(iovt_queue_psi(q, DID, 1ull << 40, 0, false), 0); /* valid for 48 bits */
	CHECK_EQ(iovt_domain_destroy(d), 0);
	dc.addr_width = 39;
	CHECK_EQ(iovt_domain_create(h.e, &dc, &d), 0);
	attach_cb(d, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
	struct iovt_stats a, b;
	iovt_stats_get(h.e, &a);
	CHECK_EQ(iovt_queue_fence(q), 0);
	iovt_stats_get(h.e, &b);
	CHECK_EQ(b.stale_domain - a.stale_domain, 1);
	iovt_queue_destroy(q);
	hand_fini(&h);
	printf("stale-width: a PSI for a wider incarnation of the DID is stale\n");
}

/* ---- one guest region, one engine, one 48-bit guest domain (the three
 * cases below) ---- */

struct one_guest {
	struct guestsim *gs;
	const struct gs_region *g;
	struct iovt_engine *e;
	struct gs_domain *gd;
};

static void one_guest_init(struct one_guest *o, uint64_t region_size, uint64_t table_bytes)
{
	o->gs = gs_create(1, region_size, table_bytes);
	CHECK(o->gs);
	CHECK_EQ(iovt_engine_create(NULL, &o->e), 0);
	o->g = gs_region(o->gs, 0);
	CHECK_EQ(iovt_guest_ram_add(o->e, o->g->gpa, o->g->size, o->g->hva, NULL), 0);
	o->gd = gs_domain_create(o->gs, 48, false, false);
	CHECK(o->gd);
}

static struct iovt_domain *one_guest_domain(struct one_guest *o)
{
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = DID, .root_gpa = gs_domain_root(o->gd), .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(o->e, &dc, &d), 0);
	return d;
}

static void one_guest_fini(struct one_guest *o)
{
	iovt_engine_destroy(o->e);
	gs_destroy(o->gs);
}

/* ---- detach-stale ---- */

#define STALE_PAGES 64

struct stale_rig {
	struct iovt_domain *d;
	uint64_t old_gpa, new_gpa;
	atomic_int stop;
	atomic_int fenced;  /* 1: the remap to new_gpa was invalidated and fenced, detach not over */
	atomic_ulong cycle; /* completed attach/remap/detach cycles */
	atomic_ulong reads, checked, stale;
};

static void *stale_reader(void *p)
{
	struct stale_rig *r = p;
	unsigned i = 0;
	iovt_thread_register();
	watchdog_expect(0, "reader");
	while (!atomic_load(&r->stop)) {
		unsigned long c0 = atomic_load(&r->cycle);
		int f0 = atomic_load(&r->fenced);
		uint64_t iova = (i++ % STALE_PAGES) * K;
		struct iovt_extent x;
		int rc = iovt_translate(r->d, iova, &x);
		int f1 = atomic_load(&r->fenced);
		unsigned long c1 = atomic_load(&r->cycle);
		/* Began after the fence returned and ended before the detach
		 * did: the old mapping is invalidated for good. */
		if (rc == 0 && f0 && f1 && c0 == c1) {
			atomic_fetch_add_explicit(&r->checked, 1, memory_order_relaxed);
			if (x.gpa + (iova - x.iova) == r->old_gpa + iova)
				atomic_fetch_add_explicit(&r->stale, 1, memory_order_relaxed);
		}
		atomic_fetch_add_explicit(&r->reads, 1, memory_order_relaxed);
		watchdog_progress(0);
	}
	watchdog_idle(0);
	iovt_thread_unregister();
	return NULL;
}

static void case_detach_stale(void)
{
	struct one_guest o;
	one_guest_init(&o, 32 * M1, 4 * M1);
	struct iovt_engine *e = o.e;
	struct gs_domain *gd = o.gd;
	struct stale_rig r = { .old_gpa = o.g->gpa + M1, .new_gpa = o.g->gpa + 4 * M1 };
	r.d = one_guest_domain(&o);

	pthread_t t;
	watchdog_start("lifecycle-detach-stale", STALL_SECONDS);
	CHECK(pthread_create(&t, NULL, stale_reader, &r) == 0);
	watchdog_expect(1, "control");
	double end = now() + run_seconds(2.0);
	while (now() < end) {
		/* No MAP notifier: translations come from the IOTLB; fill it. */
		for (unsigned i = 0; i < STALE_PAGES; i++)
			CHECK_EQ(gs_map(gd, i * K, r.old_gpa + i * K, K, IOVT_PERM_RW, 0), 0);
		CHECK_EQ(iovt_invalidate_dsi(e, DID), 0);
		CHECK_EQ(iovt_fence(e), 0);
		struct iovt_extent x;
		for (unsigned i = 0; i < STALE_PAGES; i++)
			CHECK_EQ(iovt_translate(r.d, i * K, &x), 0);
		/* A MAP notifier: the shadow answers; then the guest moves the
		 * pages, invalidates and waits. */
		struct iovt_notifier *n = attach_cb(r.d, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
		for (unsigned i = 0; i < STALE_PAGES; i++)
			CHECK_EQ(gs_map(gd, i * K, r.new_gpa + i * K, K, IOVT_PERM_RW, 0), 0);
		CHECK_EQ(iovt_invalidate_dsi(e, DID), 0);
		CHECK_EQ(iovt_fence(e), 0);
		atomic_store(&r.fenced, 1);
		CHECK_EQ(iovt_notifier_detach(n), 0);
		atomic_store(&r.fenced, 0);
		atomic_fetch_add(&r.cycle, 1);
		watchdog_progress(1);
	}
	watchdog_idle(1);
	atomic_store(&r.stop, 1);
	CHECK(pthread_join(t, NULL) == 0);
	watchdog_stop();
	printf("detach-stale: %lu cycles, %lu reads, %lu inside a detach after the fence, %lu stale\n",
	       atomic_load(&r.cycle), atomic_load(&r.reads), atomic_load(&r.checked),
	       atomic_load(&r.stale));
	CHECK(atomic_load(&r.cycle) >= 10);
	CHECK_EQ(atomic_load(&r.stale), 0);
	one_guest_fini(&o);
}

/* ---- attach-translate ---- */

struct steady_rig {
	struct iovt_domain *d;
	uint64_t gpa;
	atomic_int stop;
	atomic_ulong reads, wrong;
};

static void *steady_reader(void *p)
{
	struct steady_rig *r = p;
	unsigned i = 0;
	iovt_thread_register();
	watchdog_expect(0, "reader");
	while (!atomic_load(&r->stop)) {
		uint64_t iova = (i++ % STALE_PAGES) * K;
		struct iovt_extent x;
		int rc = iovt_translate(r->d, iova, &x);
		if (rc != 0 || x.gpa + (iova - x.iova) != r->gpa + iova) {
			if (atomic_fetch_add_explicit(&r->wrong, 1, memory_order_relaxed) < 5)
				fprintf(stderr, "attach-translate: iova %#" PRIx64 ": rc %d, gpa %#" PRIx64
						" (the guest maps %#" PRIx64 ")\n",
					iova, rc, rc ? 0 : x.gpa + (iova - x.iova), r->gpa + iova);
		}
		atomic_fetch_add_explicit(&r->reads, 1, memory_order_relaxed);
		watchdog_progress(0);
	}
	watchdog_idle(0);
	iovt_thread_unregister();
	return NULL;
}

static void case_attach_translate(void)
{
	struct one_guest o;
	one_guest_init(&o, 32 * M1, 4 * M1);
	struct gs_domain *gd = o.gd;
	struct steady_rig r = { .gpa = o.g->gpa + M1 };
	/* Scattered: one extent a page, so the replay and the unmapping take
	 * a while; the mapping never changes. */
	for (unsigned i = 0; i < STALE_PAGES; i++)
		CHECK_EQ(gs_map(gd, i * K, r.gpa + i * K, K, i & 1 ? IOVT_PERM_R : IOVT_PERM_RW, 0), 0);
	r.d = one_guest_domain(&o);

	pthread_t t;
	watchdog_start("lifecycle-attach-translate", STALL_SECONDS);
	CHECK(pthread_create(&t, NULL, steady_reader, &r) == 0);
	watchdog_expect(1, "control");
	unsigned long cycles = 0;
	double end = now() + run_seconds(2.0);
	while (now() < end) {
		struct iovt_notifier *n = attach_cb(r.d, IOVT_NOTIFY_IOTLB_EVENTS, accept_fn, NULL);
		CHECK_EQ(iovt_notifier_detach(n), 0);
		cycles++;
		watchdog_progress(1);
	}
	watchdog_idle(1);
	atomic_store(&r.stop, 1);
	CHECK(pthread_join(t, NULL) == 0);
	watchdog_stop();
	printf("attach-translate: %lu attach/detach cycles, %lu reads, %lu wrong\n", cycles,
	       atomic_load(&r.reads), atomic_load(&r.wrong));
	CHECK(cycles >= 10);
	CHECK_EQ(atomic_load(&r.wrong), 0);
	one_guest_fini(&o);
}

/* ---- stats-any-thread ---- */

struct any_rig {
	struct iovt_engine *e;
	struct iovt_domain *_Atomic d; /* a reference the stats thread may use */
	atomic_int stop;
	atomic_ulong calls;
};

/* Never calls iovt_thread_register: iovt.h allows the stats from any thread. */
static void *stats_reader(void *p)
{
	struct any_rig *r = p;
	watchdog_expect(0, "stats");
	while (!atomic_load(&r->stop)) {
		struct iovt_stats st;
		struct iovt_domain *d = atomic_load(&r->d);
		if (d)
			iovt_domain_stats_get(d, &st);
		iovt_stats_get(r->e, &st);
		atomic_fetch_add(&r->calls, 1);
		watchdog_progress(0);
	}
	watchdog_idle(0);
	return NULL;
}

static void case_stats_any_thread(void)
{
	struct one_guest o;
	one_guest_init(&o, 256 * M1, 16 * M1);
	struct any_rig r = { .e = o.e };
	const struct gs_region *g = o.g;
	struct gs_domain *gd = o.gd;
	/* Every other page: one-page runs, an IOTLB entry each. */
	const unsigned pages = 32768;
	for (unsigned i = 0; i < pages; i++)
		CHECK_EQ(gs_map(gd, (1ull << 30) + 2ull * i * K, g->gpa + (uint64_t)(i % 60000) * K, K,
				IOVT_PERM_RW, GS_LEAF_4K), 0);
	pthread_t t;
	watchdog_start("lifecycle-stats-any-thread", STALL_SECONDS);
	CHECK(pthread_create(&t, NULL, stats_reader, &r) == 0);
	watchdog_expect(1, "control");
	unsigned rounds = 0;
	double end = now() + run_seconds(2.0);
	while (now() < end) {
		struct iovt_domain *d = one_guest_domain(&o);
		iovt_domain_get(d); /* the stats thread's */
		atomic_store(&r.d, d);
		struct iovt_extent x;
		for (unsigned i = 0; i < pages; i++) /* misses: the table grows */
			CHECK_EQ(iovt_translate(d, (1ull << 30) + 2ull * i * K, &x), 0);
		CHECK_EQ(iovt_domain_destroy(d), 0);
		atomic_store(&r.d, NULL);
		/* the stats thread is past its last use of d after two calls */
		for (unsigned long c = atomic_load(&r.calls); atomic_load(&r.calls) < c + 2;)
			watchdog_progress(1);
		iovt_domain_put(d);
		rounds++;
		watchdog_progress(1);
	}
	watchdog_idle(1);
	atomic_store(&r.stop, 1);
	CHECK(pthread_join(t, NULL) == 0);
	watchdog_stop();
	printf("stats-any-thread: %u rounds of %u misses, %lu stats calls from an unregistered thread\n",
	       rounds, pages, atomic_load(&r.calls));
	CHECK(rounds >= 1);
	one_guest_fini(&o);
}

/* ---- sink-posts ---- */

/* A sink that forwards: each MAP or UNMAP it receives posts a DSI for
 * another domain through iovt_invalidate_dsi (a vhost / DEVIOTLB bridge
 * does the like), from whatever thread called it. */
static struct iovt_engine *posts_e;
static atomic_ulong posts_ok, posts_bad;

static unsigned posts_each = 1; /* PSIs a sink event posts (a DSI when 1) */

static int posting_sink(void *arg, const struct iovt_event *ev)
{
	(void)arg;
	(void)ev;
	if (posts_each == 1) {
		if (iovt_invalidate_dsi(posts_e, DID + 1) == 0)
			atomic_fetch_add(&posts_ok, 1);
		else
			atomic_fetch_add(&posts_bad, 1);
		return 0;
	}
	/* more than the thread's implicit queue holds (4096): the thread is
	 * draining that queue for this very fence */
	for (unsigned i = 0; i < posts_each; i++)
		if (iovt_invalidate_psi(posts_e, DID + 1, (uint64_t)i * K, 0, false))
			atomic_fetch_add(&posts_bad, 1);
	atomic_fetch_add(&posts_ok, 1);
	return 0;
}

struct posts_fence_arg {
	struct iovt_engine *e;
	int rc;
};

static void *posts_fencer(void *p)
{
	struct posts_fence_arg *a = p;
	iovt_thread_register(); /* no implicit queue on this thread yet */
	a->rc = iovt_fence(a->e);
	iovt_thread_unregister();
	return NULL;
}

/*
 * A sink callback that posts an invalidation: the thread's first post
 * creates its implicit queue, which took the control lock that the control
 * call or locked fence calling the sink already held on this very thread;
 * and a worker that had posted from a sink released its implicit queue at
 * exit under the control lock while iovt_workers_stop joined it holding
 * that lock (both hung; found by review). Each step under the watchdog.
 */
static void case_sink_posts(void)
{
	struct one_guest o;
	one_guest_init(&o, 64 * M1, 4 * M1);
	posts_e = o.e;
	const struct gs_region *g = o.g;
	struct iovt_domain *d = one_guest_domain(&o), *d2;
	struct iovt_domain_config dc2 = { .did = DID + 1, .root_gpa = gs_domain_root(o.gd), .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(o.e, &dc2, &d2), 0);
	CHECK_EQ(gs_map(o.gd, 1ull << 30, g->gpa, K, IOVT_PERM_RW, GS_LEAF_4K), 0);
	struct iovt_sink s;
	CHECK_EQ(iovt_callback_sink_init(&s, posting_sink, NULL, NULL), 0);
	struct iovt_notifier *n = NULL;
	watchdog_start("lifecycle-sink-posts", STALL_SECONDS);
	watchdog_expect(0, "control");

	/* 1. The attach's replay calls the sink under the control lock, on a
	 * thread that never posted to this engine. */
	CHECK_EQ(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);
	CHECK_EQ(atomic_load(&posts_ok), 1);
	watchdog_progress(0);

	/* 2. A locked iovt_fence (a thread without an implicit queue, the
	 * PSI on another queue) syncs the domain and calls the sink. */
	struct iovt_queue *q;
	CHECK_EQ(iovt_queue_create(o.e, NULL, &q), 0);
	CHECK_EQ(gs_map(o.gd, (1ull << 30) + K, g->gpa + 8 * K, K, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_queue_psi(q, DID, (1ull << 30) + K, 0, false), 0);
	struct posts_fence_arg fa = { .e = o.e, .rc = -1 };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, posts_fencer, &fa) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_EQ(fa.rc, 0);
	CHECK_EQ(atomic_load(&posts_ok), 2);
	watchdog_progress(0);

	/* 3. A worker calls the sink (a hand-off queue's fence), posts from
	 * it, and is stopped. */
	struct iovt_queue_config hc = { .handoff = true };
	struct iovt_queue *hq;
	CHECK_EQ(iovt_queue_create(o.e, &hc, &hq), 0);
	CHECK_EQ(iovt_workers_start(o.e, 1), 0);
	CHECK_EQ(gs_map(o.gd, (1ull << 30) + 2 * K, g->gpa + 16 * K, K, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_queue_psi(hq, DID, (1ull << 30) + 2 * K, 0, false), 0);
	CHECK_EQ(iovt_queue_fence(hq), 0);
	CHECK_EQ(atomic_load(&posts_ok), 3);
	watchdog_progress(0);
	iovt_workers_stop(o.e);
	watchdog_progress(0);

	/* The three DSIs reached DID + 1: counted there once fenced. */
	CHECK_EQ(iovt_fence(o.e), 0);
	struct iovt_stats st;
	iovt_domain_stats_get(d2, &st);
	CHECK_EQ(st.dsi, 3);

	/* 4. A sink that posts 5000 PSIs while its thread drains its own
	 * implicit queue (a PSI, then iovt_fence alone): the queue would fill
	 * and wait for a drain only this thread could do (a hang; found by
	 * the review of the fixes). From a sink, posts go to the pending set. */
	posts_each = 5000;
	CHECK_EQ(gs_map(o.gd, (1ull << 30) + 3 * K, g->gpa + 24 * K, K, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_invalidate_psi(o.e, DID, (1ull << 30) + 3 * K, 0, false), 0);
	CHECK_EQ(iovt_fence(o.e), 0);
	CHECK_EQ(atomic_load(&posts_ok), 4);
	watchdog_progress(0);
	CHECK_EQ(iovt_fence(o.e), 0);
	iovt_domain_stats_get(d2, &st);
	CHECK_EQ(st.psi, 5000);
	CHECK_EQ(atomic_load(&posts_bad), 0);
	watchdog_idle(0);
	watchdog_stop();
	iovt_queue_destroy(hq);
	iovt_queue_destroy(q);
	CHECK_EQ(iovt_domain_destroy(d2), 0);
	CHECK_EQ(iovt_domain_destroy(d), 0);
	one_guest_fini(&o);
	printf("sink-posts: posts from sink callbacks (attach, locked fence, worker, 5000 from an inline fence), workers stopped\n");
}

/* ---- stats-host-registered ---- */

static struct iovt_engine *host_e;
static atomic_int host_cb_done;

static void *host_registered(void *p)
{
	(void)p;
	struct iovt_stats st;
	urcu_memb_register_thread(); /* the host's own registration, not iovt's */
	iovt_stats_get(host_e, &st);
	urcu_memb_read_lock(); /* and inside the host's own section */
	iovt_stats_get(host_e, &st);
	urcu_memb_read_unlock();
	/* iovt_thread_register on it (iovt.h asks it of every thread): no
	 * second liburcu registration (liburcu asserts; found by review), and
	 * iovt_thread_unregister leaves the host's registration alone. */
	iovt_thread_register();
	CHECK_EQ(iovt_invalidate_global(host_e), 0); /* the thread's implicit queue */
	CHECK_EQ(iovt_fence(host_e), 0);
	iovt_thread_unregister();
	/* still registered: a section and the host's unregistration work */
	urcu_memb_read_lock();
	urcu_memb_read_unlock();
	urcu_memb_unregister_thread();
	return NULL;
}

static void host_cb(struct rcu_head *h)
{
	(void)h;
	struct iovt_stats st;
	iovt_stats_get(host_e, &st); /* on liburcu's call_rcu thread */
	atomic_store(&host_cb_done, 1);
}

static void case_stats_host_registered(void)
{
	static struct rcu_head head;
	CHECK_EQ(iovt_engine_create(NULL, &host_e), 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, host_registered, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	urcu_memb_call_rcu(&head, host_cb);
	urcu_memb_barrier();
	CHECK_EQ(atomic_load(&host_cb_done), 1);
	iovt_engine_destroy(host_e);
	printf("stats-host-registered: no second registration\n");
}

/* ---- stale-during-destroy (review: control calls vs the data path) ----
 * A PSI accepted while its domain's destroy is under way (the destroy in
 * its MAP sink's UNMAP, under sync_lock, `dead` not yet set) and drained by
 * a queue fence that waits for that sync_lock: the drainer then finds the
 * domain dead and drops the PSI. iovt.h (iovt_domain_destroy): "Invalidations
 * for the DID already posted are dropped at drain (counted in stale_domain,
 * not as errors)". It was counted as accepted, never as stale. */
static atomic_int sd_armed, sd_in_unmap, sd_release;
static struct iovt_queue *sd_q;
static struct iovt_domain *sd_d;

static int sd_fn(void *arg, const struct iovt_event *ev)
{
	(void)arg;
	if (ev->type == IOVT_EVENT_UNMAP && atomic_load(&sd_armed)) {
		atomic_store(&sd_in_unmap, 1);
		while (!atomic_load(&sd_release))
			usleep(1000);
	}
	return 0;
}

static void *sd_destroyer(void *p)
{
	(void)p;
	iovt_thread_register();
	CHECK_EQ(iovt_domain_destroy(sd_d), 0);
	iovt_thread_unregister();
	return NULL;
}

static atomic_int sd_post, sd_posted;
static void *sd_producer(void *p)
{
	(void)p;
	iovt_thread_register();
	while (!atomic_load(&sd_post))
		usleep(1000);
	CHECK_EQ(iovt_queue_psi(sd_q, DID, 0, 0, false), 0); /* accepted: the domain is in the table */
	atomic_store(&sd_posted, 1);
	CHECK_EQ(iovt_queue_fence(sd_q), 0); /* waits for the destroy's sync_lock */
	iovt_thread_unregister();
	return NULL;
}

static void case_stale_during_destroy(void)
{
	struct flat f;
	struct iovt_stats a, b;
	flat_init(&f);
	watchdog_start("lifecycle-stale-during-destroy", STALL_SECONDS);
	sd_d = f.d;
	(void)attach_cb(f.d, IOVT_NOTIFY_MAP | IOVT_NOTIFY_UNMAP, sd_fn, NULL);
	CHECK_EQ(iovt_queue_create(f.e, NULL, &sd_q), 0);
	pthread_t prod, dest;
	CHECK_EQ(pthread_create(&prod, NULL, sd_producer, NULL), 0);
	atomic_store(&sd_armed, 1);
	CHECK_EQ(pthread_create(&dest, NULL, sd_destroyer, NULL), 0);
	while (!atomic_load(&sd_in_unmap))
		usleep(1000);
	iovt_stats_get(f.e, &a);
	atomic_store(&sd_post, 1);
	while (!atomic_load(&sd_posted))
		usleep(1000);
	usleep(300 * 1000); /* the producer's fence reaches the domain's sync_lock */
	atomic_store(&sd_release, 1);
	pthread_join(dest, NULL);
	pthread_join(prod, NULL);
	iovt_stats_get(f.e, &b);
	printf("stale-during-destroy: invalidations +%llu, psi +%llu, stale_domain +%llu\n",
	       (unsigned long long)(b.invalidations - a.invalidations),
	       (unsigned long long)(b.psi - a.psi),
	       (unsigned long long)(b.stale_domain - a.stale_domain));
	CHECK_EQ(b.invalidations - a.invalidations, 1);
	CHECK_EQ(b.psi - a.psi, 1);
	CHECK_EQ(b.stale_domain - a.stale_domain, 1);
	watchdog_stop();
	iovt_queue_destroy(sd_q);
	flat_fini(&f);
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	check_pick_seed("lifecycle-regress");
	iovt_thread_register();
	if (!strcmp(c, "destroy-deadlock"))
		threaded_case("lifecycle-destroy-deadlock", CTL_DESTROY, 0);
	else if (!strcmp(c, "detach-deadlock"))
		threaded_case("lifecycle-detach-deadlock", CTL_DETACH, 0);
	else if (!strcmp(c, "global-deadlock"))
		threaded_case("lifecycle-global-deadlock", CTL_DESTROY, 1);
	else if (!strcmp(c, "ram-remove-walk"))
		case_ram_remove_walk();
	else if (!strcmp(c, "ram-remove-purge"))
		case_ram_remove_purge();
	else if (!strcmp(c, "ram-remove-refused"))
		case_ram_remove_refused();
	else if (!strcmp(c, "raw-refused-counted"))
		case_raw_refused_counted();
	else if (!strcmp(c, "detach-refused-ram"))
		case_detach_refused_ram();
	else if (!strcmp(c, "ram-remove-reader"))
		case_ram_remove_reader();
	else if (!strcmp(c, "translate-destroy"))
		case_translate_destroy();
	else if (!strcmp(c, "lookup-alias"))
		case_lookup_alias();
	else if (!strcmp(c, "set-root-any-queue"))
		case_set_root_any_queue();
	else if (!strcmp(c, "counters"))
		case_counters();
	else if (!strcmp(c, "dirty-leak"))
		case_dirty_leak();
	else if (!strcmp(c, "remove-refused-resync"))
		case_remove_refused_resync();
	else if (!strcmp(c, "capped-stale"))
		case_capped_stale();
	else if (!strcmp(c, "retry-starve"))
		case_retry_starve();
	else if (!strcmp(c, "stale-width"))
		case_stale_width();
	else if (!strcmp(c, "detach-stale"))
		case_detach_stale();
	else if (!strcmp(c, "attach-translate"))
		case_attach_translate();
	else if (!strcmp(c, "stats-any-thread"))
		case_stats_any_thread();
	else if (!strcmp(c, "stats-host-registered"))
		case_stats_host_registered();
	else if (!strcmp(c, "sink-posts"))
		case_sink_posts();
	else if (!strcmp(c, "stale-during-destroy"))
		case_stale_during_destroy();
	else {
		fprintf(stderr, "usage: %s CASE (see the file's head)\n", argv[0]);
		return 2;
	}
	iovt_thread_unregister();
	return 0;
}
