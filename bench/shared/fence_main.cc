// SPDX-License-Identifier: MIT
//
// iovt-fence-bench-shared's main. fence_family.cc registers its benchmarks
// statically (iovt-gbench's main registers the families that need engine
// internals, which this executable cannot reach). The context says which
// intake ring the library chose: DPDK's when libiovt-dpdk.so is loaded, as
// in the in-tree benchmarks, else liburcu's wfcq (ring.h).
#include <benchmark/benchmark.h>

#include "iovt.h"
#ifdef IOVT_BENCH_DPDK
#include "iovt_dpdk.h"
#endif

int main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
#ifdef IOVT_BENCH_DPDK
	bool rte = iovt_dpdk_available();
#else
	bool rte = false;
#endif
	benchmark::AddCustomContext("iovt_library", "libiovt.so (the installed form)");
	benchmark::AddCustomContext("iovt_intake_ring", rte ? "rte_ring (libiovt-dpdk.so)" : "wfcq (libiovt.so alone)");
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}
