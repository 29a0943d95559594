/* SPDX-License-Identifier: MIT */
/*
 * USDT probes at the pipeline stages (provider "iovt"), visible to
 * `perf probe sdt_iovt:NAME` once the binary is in perf's buildid cache.
 * Compiled out where <sys/sdt.h> is missing.
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
