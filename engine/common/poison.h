/* SPDX-License-Identifier: MIT */
/*
 * ASan poisoning of memory the engine keeps for reuse after a grace period
 * (the IOTLB's entry lines, the shadow tree's nodes): poisoned from its
 * return to its reuse, so a reader that kept it past its read-side section
 * still trips. No-ops without ASan.
 */
#ifndef IOVT_COMMON_POISON_H
#define IOVT_COMMON_POISON_H

#if defined(__SANITIZE_ADDRESS__)
#define IOVT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IOVT_ASAN 1
#endif
#endif

#ifdef IOVT_ASAN
#include <sanitizer/asan_interface.h>
#define IOVT_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define IOVT_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define IOVT_POISON(p, n) ((void)(p), (void)(n))
#define IOVT_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#endif
