/* SPDX-License-Identifier: MIT */
/*
 * iovt on DPDK lcores.
 *
 * In libiovt-dpdk (pkg-config iovt-dpdk). Once it is linked, iovt's queues
 * are DPDK rte_rings by default (IOVT_QUEUE_RTE_RING; they need no EAL) and the
 * engine can run its pollers on DPDK worker lcores: each lcore loops on
 * iovt_poll() for its share of the queues, busy-polling with rte_pause()
 * when idle, as DPDK threads do. Producers may be lcores too (register them
 * with iovt_thread_register() first).
 *
 * libiovt itself has none of this and links no DPDK (README "Packaging").
 */
#ifndef IOVT_DPDK_H
#define IOVT_DPDK_H

#include "iovt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* True once libiovt-dpdk is registered with libiovt (false: their releases differ). */
bool iovt_dpdk_available(void);

/*
 * Launches a poller on each of the n worker lcores given (rte_eal_init must
 * have run; each lcore must be an idle worker lcore). Poller i of n drains
 * the queues whose group % n == i. Do not combine with iovt_workers_start.
 * Engine lock. Errors: -ENOTSUP (no DPDK), -EINVAL (n 0 or > 64, not a
 * worker lcore), -EBUSY (already started, lcore busy), -ENOMEM.
 */
int iovt_dpdk_pollers_start(struct iovt_engine *e, const unsigned *lcore_ids, unsigned n);

/* Stops the pollers and waits for their lcores. Engine lock. */
void iovt_dpdk_pollers_stop(struct iovt_engine *e);

#ifdef __cplusplus
}
#endif

#endif
