/* SPDX-License-Identifier: MIT */
/*
 * libiovt-dpdk's registration with the core (engine/glue.h): at load time,
 * as DPDK's own drivers register (RTE_INIT). From then on the core's queues
 * are rte_rings by default and the VFIO accessors know the DPDK sink.
 * iovt-dpdk.pc links this library with --whole-archive --no-as-needed so a
 * program that calls none of its functions still gets the registration.
 */
#include <stdbool.h>

#include "glue.h"
#include "intake/ring.h"
#include "iovt_dpdk.h"
#include "sinks/vfio_common.h"

static const struct iovt_dpdk_glue dpdk_glue_table = {
	.abi = IOVT_GLUE_ABI,
	.ring_create = intake_ring_rte_create,
	.vfio_sink_ops = &dpdk_vfio_sink_ops,
};

static bool registered;

__attribute__((constructor)) static void iovt_dpdk_register(void)
{
	registered = iovt_internal_dpdk_register(&dpdk_glue_table) == 0;
}

bool iovt_dpdk_available(void)
{
	return registered;
}
