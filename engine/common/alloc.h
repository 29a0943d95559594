/* SPDX-License-Identifier: MIT */
/*
 * Engine memory. Shadow-tree nodes come from jemalloc's default arenas
 * through the thread cache: without it every node allocation took the
 * arena's bin lock (~250 instructions and a locked pair; callgrind, a
 * one-page map + fence) and every free on the call_rcu thread took it again.
 * Arena 0 (iovt_alloc's "default": the calling thread's automatic arena) is
 * allocated by malloc and freed by sdallocx with no flags, the two calls
 * jemalloc 5.3 gives a fast path (a node of an arena of its own, by mallocx
 * with MALLOCX_ARENA: ~146 instructions; by malloc: ~30).
 * The call_rcu thread's cache holds what it frees until jemalloc's bounded
 * flush hands it back: bounded, not a leak. The jemalloc is a private copy
 * (alloc.c): the host's malloc is never replaced. Build with -Dallocator=malloc to
 * route everything through plain malloc/free (sanitizer builds: mallocx
 * bypasses ASan's interceptors).
 */
#ifndef IOVT_COMMON_ALLOC_H
#define IOVT_COMMON_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* An arena handle; 0 is the default arena. */
typedef unsigned iovt_arena_t;

/* Creates a new arena (or returns 0 when arenas are not available). */
iovt_arena_t iovt_arena_create(void);

/*
 * Fault injection for the engine's own tests (never set in production):
 * when non-NULL, each iovt_alloc/_zalloc/_zalloc_aligned first asks it and
 * returns NULL when it says so. One load and a branch per allocation.
 */
extern bool (*iovt_alloc_fault)(size_t size);

void *iovt_alloc(iovt_arena_t arena, size_t size);
void *iovt_zalloc(iovt_arena_t arena, size_t size);
/* Aligned to `align` (a power of two); zeroed. */
void *iovt_zalloc_aligned(iovt_arena_t arena, size_t size, size_t align);
void iovt_free(iovt_arena_t arena, void *p, size_t size);
/* Usable size of an allocation, as the allocator rounds it (for memory accounting). */
size_t iovt_alloc_usable(size_t size);

/*
 * aligned_alloc() with the size rounded up to a multiple of `align`, as C11
 * requires (glibc tolerates any size, ASan does not). Freed with free().
 * Fails under iovt_alloc_fault as the others do (queues, rings, trees and
 * lookup caches are allocated here: their -ENOMEM paths were out of the
 * fault tests' reach until the twenty-fifth session).
 */
#include <stdlib.h>
static inline void *iovt_aligned_alloc(size_t align, size_t size)
{
	if (__builtin_expect(iovt_alloc_fault != NULL && iovt_alloc_fault(size), 0))
		return NULL;
	return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

#endif
