/* SPDX-License-Identifier: MIT */
/*
 * The baselines' guest RAM (engine/guest/guest_ram.c, an object of the
 * internal archive) allocates through the engine's allocator, which lives
 * hidden inside libiovt.so. In the shared-library benchmarks the executable
 * gets its own copy of the walker and the guest RAM, and this plain-malloc
 * allocator under them: the engine side never sees it.
 */
#include <stdlib.h>

#include "common/alloc.h"

void *iovt_zalloc(iovt_arena_t arena, size_t size)
{
	(void)arena;
	return calloc(1, size);
}

void iovt_free(iovt_arena_t arena, void *p, size_t size)
{
	(void)arena;
	(void)size;
	free(p);
}
