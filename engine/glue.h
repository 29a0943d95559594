/* SPDX-License-Identifier: MIT */
/*
 * What libiovt-dpdk calls in libiovt: the only internal symbols libiovt.so
 * exports (version node IOVT_INTERNAL, never promised to users; DPDK does the
 * same with its INTERNAL node). The core links no DPDK: the DPDK library
 * registers its pieces here from a constructor when it is loaded, and the
 * core uses them while they are registered.
 *
 * Both libraries come from one build of one release: `abi` must be
 * IOVT_GLUE_ABI, or the registration is refused.
 */
#ifndef IOVT_GLUE_H
#define IOVT_GLUE_H

#include "iovt.h"
#include "iovt_version.h"

#define IOVT_INTERNAL_API __attribute__((visibility("default")))

/* Layout of struct iovt_dpdk_glue and of what it points to: the release. */
#define IOVT_GLUE_ABI ((unsigned)IOVT_VERSION)

struct intake_ring;

struct iovt_dpdk_glue {
	unsigned abi;
	/* The rte_ring intake backend (IOVT_QUEUE_RTE_RING, and the default
	 * backend while registered). NULL on ENOMEM. */
	struct intake_ring *(*ring_create)(unsigned capacity);
	/* The DPDK VFIO sink's ops: its ctx starts with struct vfio_sink_base,
	 * so iovt_vfio_sink_counters / _info accept it. */
	const struct iovt_sink_ops *vfio_sink_ops;
};

/* 0, or -EPROTO when g->abi is not this library's (nothing registered). */
IOVT_INTERNAL_API int iovt_internal_dpdk_register(const struct iovt_dpdk_glue *g);

/*
 * External pollers (DPDK lcores): under the engine's workers lock, -EBUSY if
 * engine workers or other pollers run; else start(set) and, when it returns
 * 0, records set so that iovt_internal_pollers_stop (and engine destroy) can
 * stop(set). start's error is returned as is. start NULL: libiovt-dpdk
 * refused its caller's arguments; counted (bad_argument), -EINVAL.
 */
IOVT_INTERNAL_API int iovt_internal_pollers_start(struct iovt_engine *e, int (*start)(void *set),
						  void (*stop)(void *set), void *set);
/* Stops the recorded pollers (stop(set) under the workers lock); no-op when none. */
IOVT_INTERNAL_API void iovt_internal_pollers_stop(struct iovt_engine *e);
/* Whether the calling thread is a registered reader already (through
 * iovt_thread_register or liburcu itself): a DPDK poller on an lcore the
 * host registered must neither register it again nor unregister it at its
 * end (the host's own read-side sections would stop counting; found by
 * review). */
IOVT_INTERNAL_API bool iovt_internal_thread_registered(void);

/* The core's view of the registration (NULL fields when nothing registered). */
const struct iovt_dpdk_glue *dpdk_glue(void);

#endif
