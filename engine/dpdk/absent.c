/* SPDX-License-Identifier: MIT */
/*
 * include/iovt_dpdk.h for the tests of a build without DPDK: every call says
 * -ENOTSUP. Linked into the tests' engine only; without DPDK no libiovt-dpdk
 * is built or installed (and iovt_dpdk.h is not installed).
 */
#include <errno.h>

#include "iovt_dpdk.h"
#include "iovt_vfio.h"

bool iovt_dpdk_available(void)
{
	return false;
}

int iovt_dpdk_pollers_start(struct iovt_engine *e, const unsigned *lcore_ids, unsigned n)
{
	(void)e;
	(void)lcore_ids;
	(void)n;
	return -ENOTSUP;
}

void iovt_dpdk_pollers_stop(struct iovt_engine *e)
{
	(void)e;
}

int iovt_dpdk_vfio_sink_init(struct iovt_sink *out, int container_fd,
			     const struct iovt_vfio_sink_config *cfg)
{
	(void)out;
	(void)container_fd;
	(void)cfg;
	return -ENOTSUP;
}
