/* SPDX-License-Identifier: MIT */
/* iovt pollers on DPDK worker lcores (include/iovt_dpdk.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pause.h>

#include "common/rcu.h"
#include "engine_internal.h"
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

bool iovt_dpdk_available(void)
{
	return true;
}

static int poller_main(void *arg)
{
	struct lcore_poller *p = arg;
	running(p);
	struct dpdk_pollers *set = p->set;

	iovt_thread_register();
	while (!atomic_load_explicit(&set->stop, memory_order_acquire))
		if (!iovt_poll(set->engine, p->idx, set->n, POLL_BUDGET))
			rte_pause();
	iovt_thread_unregister();
	launched(p); /* its end, to the waiter */
	return 0;
}

int iovt_dpdk_pollers_start(struct iovt_engine *e, const unsigned *lcore_ids, unsigned n)
{
	if (!n || n > IOVT_MAX_WORKERS || !lcore_ids)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (lcore_ids[i] >= RTE_MAX_LCORE || !rte_lcore_is_enabled(lcore_ids[i]) ||
		    lcore_ids[i] == rte_get_main_lcore())
			return -EINVAL;
	struct dpdk_pollers *set = calloc(1, sizeof(*set) + n * sizeof(set->p[0]));
	if (!set)
		return -ENOMEM;
	set->engine = e;
	set->n = n;

	pthread_mutex_lock(&e->control_lock);
	if (e->dpdk_pollers || atomic_load(&e->nworkers)) {
		pthread_mutex_unlock(&e->control_lock);
		free(set);
		return -EBUSY;
	}
	for (unsigned i = 0; i < n; i++) {
		set->p[i] = (struct lcore_poller){ .set = set, .idx = i, .lcore = lcore_ids[i] };
		launched(&set->p[i]);
		if (rte_eal_remote_launch(poller_main, &set->p[i], lcore_ids[i])) {
			atomic_store(&set->stop, true);
			for (unsigned j = 0; j < i; j++) {
				rte_eal_wait_lcore(lcore_ids[j]);
				running(&set->p[j]);
			}
			pthread_mutex_unlock(&e->control_lock);
			free(set);
			return -EBUSY;
		}
	}
	e->dpdk_pollers = set;
	pthread_mutex_unlock(&e->control_lock);
	return 0;
}

void iovt_dpdk_pollers_stop(struct iovt_engine *e)
{
	pthread_mutex_lock(&e->control_lock);
	struct dpdk_pollers *set = e->dpdk_pollers;
	if (set) {
		atomic_store_explicit(&set->stop, true, memory_order_release);
		for (unsigned i = 0; i < set->n; i++) {
			rte_eal_wait_lcore(set->p[i].lcore);
			running(&set->p[i]); /* its end: its reads of *set are done */
		}
		e->dpdk_pollers = NULL;
		free(set);
	}
	pthread_mutex_unlock(&e->control_lock);
}
