/* SPDX-License-Identifier: MIT */
/*
 * Forced (-include) on every source of libiovt and libiovt-dpdk, which are
 * built with -fvisibility=hidden: the functions the public headers declare
 * keep default visibility, everything else the engine defines is hidden. The
 * version maps (iovt.map, iovt-dpdk.map) then name exactly what is exported.
 */
#pragma GCC visibility push(default)
#include "iovt.h"
#include "iovt_model.h"
#include "iovt_vfio.h"
#include "iovt_dpdk.h"
#pragma GCC visibility pop
