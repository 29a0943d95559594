/* SPDX-License-Identifier: MIT */
/*
 * USDT probes at the pipeline stages (provider "iovt"), visible to
 * `perf probe sdt_iovt:NAME` once the binary is in perf's buildid cache.
 * Compiled out where <sys/sdt.h> is missing.
 *
 * One call site per name: perf cannot add an event for a name whose notes
 * differ in their argument format (a constant here, a register there), so a
 * second site gets its own name (the `sdt-probes` test checks it):
 *   psi, dsi            an invalidation taken from a queue
 *   queue_fence_begin   a queue's fence item applied (arg: ticket) ...
 *   queue_fence_end     ... and done (arg: its error or 0)
 *   fence_begin         iovt_fence entered (arg: 0) ...
 *   fence_end           ... and returning (arg: the first error or 0)
 *   window              a coalesced range walked (first, last)
 *   sink_map            a MAP call (iova, size, hva)
 *   sink_unmap          an UNMAP call (first, size, pages)
 */
#ifndef IOVT_COMMON_PROBES_H
#define IOVT_COMMON_PROBES_H

#ifdef IOVT_HAVE_SDT
#include <sys/sdt.h>
#define IOVT_PROBE1(name, a) STAP_PROBE1(iovt, name, a)
#define IOVT_PROBE2(name, a, b) STAP_PROBE2(iovt, name, a, b)
#define IOVT_PROBE3(name, a, b, c) STAP_PROBE3(iovt, name, a, b, c)
#else
#define IOVT_PROBE1(name, a) do { (void)(a); } while (0)
#define IOVT_PROBE2(name, a, b) do { (void)(a); (void)(b); } while (0)
#define IOVT_PROBE3(name, a, b, c) do { (void)(a); (void)(b); (void)(c); } while (0)
#endif

#endif
