/* SPDX-License-Identifier: MIT */
/*
 * One reference to libiovt-dpdk.so keeps it in the executable's needed list
 * under --as-needed: a DPDK VMM links it, and its constructor registers the
 * rte_ring intake with libiovt.so (as the in-tree benchmarks have it).
 */
#include <stdbool.h>

#include "iovt_dpdk.h"

__attribute__((used)) bool (*const iovt_bench_dpdk_ref)(void) = iovt_dpdk_available;
