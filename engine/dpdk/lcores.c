/* SPDX-License-Identifier: MIT */
/* iovt pollers on DPDK worker lcores (include/iovt_dpdk.h); the engine
 * records them under its workers lock (engine/glue.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pause.h>

#include "common/rcu.h"
#include "glue.h"
#include "iovt_dpdk.h"

#ifdef IOVT_TSAN
/* EAL (not instrumented) orders launch before the lcore's run, and its end
 * before rte_eal_wait_lcore returns: say so to TSan. */
#define launched(p) __tsan_release(p)
#define running(p) __tsan_acquire(p)
#else
#define launched(p) ((void)(p))
#define running(p) ((void)(p))
#endif

#define POLL_BUDGET 256u
#define MAX_POLLERS 64u /* iovt_dpdk.h; as engine workers */

struct lcore_poller {
	struct dpdk_pollers *set;
	unsigned idx, lcore;
};

struct dpdk_pollers {
	struct iovt_engine *engine;
	_Atomic bool stop;
	unsigned n;
	struct lcore_poller p[];
};

static int poller_main(void *arg)
{
	struct lcore_poller *p = arg;
	running(p);
	struct dpdk_pollers *set = p->set;

	/* An lcore the host registered stays the host's: registered again,
	 * liburcu aborts (a host that used liburcu itself); unregistered at
	 * the end, the host's own read-side sections on it stop counting. */
	const bool host_registered = iovt_internal_thread_registered();
	if (!host_registered)
		iovt_thread_register();
	while (!atomic_load_explicit(&set->stop, memory_order_acquire))
		if (!iovt_poll(set->engine, p->idx, set->n, POLL_BUDGET))
			rte_pause();
	if (!host_registered)
		iovt_thread_unregister();
	launched(p); /* its end, to the waiter */
	return 0;
}

/* Under the engine's workers lock (iovt_internal_pollers_start). */
static int launch_all(void *arg)
{
	struct dpdk_pollers *set = arg;
	for (unsigned i = 0; i < set->n; i++) {
		launched(&set->p[i]);
		if (rte_eal_remote_launch(poller_main, &set->p[i], set->p[i].lcore)) {
			atomic_store(&set->stop, true);
			for (unsigned j = 0; j < i; j++) {
				rte_eal_wait_lcore(set->p[j].lcore);
				running(&set->p[j]);
			}
			return -EBUSY;
		}
	}
	return 0;
}

/* Under the engine's workers lock (iovt_internal_pollers_stop). */
static void halt_all(void *arg)
{
	struct dpdk_pollers *set = arg;
	atomic_store_explicit(&set->stop, true, memory_order_release);
	for (unsigned i = 0; i < set->n; i++) {
		rte_eal_wait_lcore(set->p[i].lcore);
		running(&set->p[i]); /* its end: its reads of *set are done */
	}
	free(set);
}

int iovt_dpdk_pollers_start(struct iovt_engine *e, const unsigned *lcore_ids, unsigned n)
{
	/* Refused arguments are counted by the core (bad_argument, as its own
	 * control calls are): no start function is its "refused". Before
	 * rte_eal_init (or against another DPDK than the host's: a second,
	 * never initialised EAL) DPDK's tables are zero: every lcore read
	 * enabled and the launch wrote into fd 0, its pipes unopened (found by
	 * review). No lcore is a worker lcore then. */
	if (!n || n > MAX_POLLERS || !lcore_ids || rte_lcore_count() == 0)
		return iovt_internal_pollers_start(e, NULL, NULL, NULL);
	for (unsigned i = 0; i < n; i++)
		if (lcore_ids[i] >= RTE_MAX_LCORE || !rte_lcore_is_enabled(lcore_ids[i]) ||
		    lcore_ids[i] == rte_get_main_lcore())
			return iovt_internal_pollers_start(e, NULL, NULL, NULL);
	struct dpdk_pollers *set = calloc(1, sizeof(*set) + n * sizeof(set->p[0]));
	if (!set)
		return -ENOMEM;
	set->engine = e;
	set->n = n;
	for (unsigned i = 0; i < n; i++)
		set->p[i] = (struct lcore_poller){ .set = set, .idx = i, .lcore = lcore_ids[i] };
	int rc = iovt_internal_pollers_start(e, launch_all, halt_all, set);
	if (rc)
		free(set);
	return rc;
}

void iovt_dpdk_pollers_stop(struct iovt_engine *e)
{
	iovt_internal_pollers_stop(e);
}
