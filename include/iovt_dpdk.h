/* SPDX-License-Identifier: MIT */
/**
 * @file iovt_dpdk.h
 * @brief iovt on DPDK lcores.
 *
 * In libiovt-dpdk (pkg-config iovt-dpdk). Once it is linked, iovt's queues
 * are DPDK rte_rings by default (IOVT_QUEUE_RTE_RING; they need no EAL) and the
 * engine can run its pollers on DPDK worker lcores: each lcore loops on
 * iovt_poll() for its share of the queues, busy-polling with rte_pause()
 * when idle, as DPDK threads do. Producers may be lcores too (register them
 * with iovt_thread_register() first). A complete program:
 * examples/dpdk/dpdk_pollers.c.
 *
 * libiovt itself has none of this and links no DPDK (README "Packaging").
 */
#ifndef IOVT_DPDK_H
#define IOVT_DPDK_H

#include "iovt.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief Is libiovt-dpdk registered with libiovt?
 *
 * Any thread. libiovt-dpdk (pkg-config iovt-dpdk, which defines this
 * function: a program that calls it links libiovt-dpdk) registers itself
 * with libiovt when it is loaded; false when the two libraries come from
 * different releases (then it is refused).
 * @return true when the rte_ring backend and the lcore pollers exist.
 */
bool iovt_dpdk_available(void);

/**
 * @brief Launches a poller on each of the n worker lcores given.
 *
 * rte_eal_init() must have run; each lcore must be an idle worker lcore.
 * Poller i of n drains the queues whose group % n == i (iovt_poll(e, i, n,
 * ...) in a loop, registered with iovt_thread_register() on its lcore) and
 * calls the sinks of the fences it applies on that lcore. Do not combine
 * with iovt_workers_start(). The engine's workers lock, not the engine lock.
 * @param e the engine.
 * @param lcore_ids the worker lcores.
 * @param n how many, 1..64.
 * @return 0 or a negative errno; on an error no poller is left running.
 * @retval -EINVAL n 0 or > 64, lcore_ids NULL, an lcore that is not a worker
 *         lcore, or no EAL initialised (before rte_eal_init(), or a DPDK
 *         other than the one libiovt-dpdk was built against); counted as
 *         bad_argument.
 * @retval -EBUSY already started (or workers run), an lcore busy.
 * @retval -ENOMEM out of memory.
 */
int iovt_dpdk_pollers_start(struct iovt_engine *e, const unsigned *lcore_ids, unsigned n);

/**
 * @brief Stops the pollers and waits for their lcores (rte_eal_wait_lcore).
 *
 * What the queues still hold stays there (the next fence applies it).
 * The engine's workers lock (held while it joins them); no-op when none
 * run. iovt_engine_destroy() stops them too.
 * @param e the engine.
 */
void iovt_dpdk_pollers_stop(struct iovt_engine *e);

#ifdef __cplusplus
}
#endif

#endif
