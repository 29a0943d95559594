/* SPDX-License-Identifier: MIT */
/* The core side of engine/glue.h: what libiovt-dpdk registers, and the
 * control-lock bookkeeping of its lcore pollers. */
#include <errno.h>
#include <pthread.h>

#include "engine_internal.h"
#include "glue.h"

static const struct iovt_dpdk_glue none;
/* Set once by libiovt-dpdk's constructor (before any engine call of the
 * host), read by queue create and the VFIO accessors. */
static const struct iovt_dpdk_glue *_Atomic glue = &none;

int iovt_internal_dpdk_register(const struct iovt_dpdk_glue *g)
{
	if (!g || g->abi != IOVT_GLUE_ABI)
		return -EPROTO;
	atomic_store_explicit(&glue, g, memory_order_release);
	return 0;
}

const struct iovt_dpdk_glue *dpdk_glue(void)
{
	return atomic_load_explicit(&glue, memory_order_acquire);
}

int iovt_internal_pollers_start(struct iovt_engine *e, int (*start)(void *set),
				void (*stop)(void *set), void *set)
{
	if (!start) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL; /* libiovt-dpdk refused the arguments */
	}
	pthread_mutex_lock(&e->workers_lock);
	int rc = -EBUSY;
	if (!e->ext_pollers && !atomic_load(&e->nworkers)) {
		rc = start(set);
		if (!rc) {
			e->ext_pollers = set;
			e->ext_pollers_stop = stop;
		}
	}
	pthread_mutex_unlock(&e->workers_lock);
	if (rc == -EBUSY)
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
	return rc;
}

void iovt_internal_pollers_stop(struct iovt_engine *e)
{
	pthread_mutex_lock(&e->workers_lock);
	if (e->ext_pollers) {
		e->ext_pollers_stop(e->ext_pollers);
		e->ext_pollers = NULL;
		e->ext_pollers_stop = NULL;
	}
	pthread_mutex_unlock(&e->workers_lock);
}
