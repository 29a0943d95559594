/* SPDX-License-Identifier: MIT */
/* include/iovt_dpdk.h in a build without DPDK: every call says so. */
#include <errno.h>

#include "iovt_dpdk.h"

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
