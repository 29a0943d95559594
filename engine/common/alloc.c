/* SPDX-License-Identifier: MIT */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

bool (*iovt_alloc_fault)(size_t size);
bool (*iovt_vec_fault)(size_t bytes); /* vec.h: here, beside its sibling */
#define FAULT(size) __builtin_expect(iovt_alloc_fault != NULL && iovt_alloc_fault(size), 0)

#ifdef IOVT_USE_JEMALLOC
/*
 * jemalloc, the engine's private copy: Debian's libjemalloc_pic.a with its
 * public names renamed iovt_je_* (engine/link/private-jemalloc.sh) and, in
 * the installed libraries, made local. The host's malloc stays the host's:
 * linking Debian's libjemalloc would replace it for the whole process
 * (README "Packaging", "jemalloc"). The header only for the MALLOCX_* flags.
 */
#include <jemalloc/jemalloc.h>

void *iovt_je_malloc(size_t size);
void *iovt_je_mallocx(size_t size, int flags);
void iovt_je_sdallocx(void *ptr, size_t size, int flags);
size_t iovt_je_nallocx(size_t size, int flags);
int iovt_je_mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
/*
 * The private copy's compiled-in options (its `malloc_conf`, renamed; the
 * environment's MALLOC_CONF, read after it, still wins). Slabs of 8 pages
 * for the 256..512-byte classes — tree leaves and internal nodes, retire
 * batches — instead of jemalloc's defaults (512: 1 page, 8 regions; 256: 1
 * page, 16; 320, 384, 448: 5, 3, 7 pages): a tree writer
 * allocates nodes that the call_rcu thread frees ~10 ms later, so every
 * thread-cache refill found no free region in the bin and carved a new
 * slab (the dirty-extent recycle and emap registration: ~540 instructions
 * a node on strict-dma, 7% of the engine's). With 64 regions a slab is
 * seldom emptied and carved again: strict-dma's engine 126.9M -> 122.3M
 * instructions, own CPU -3% (ARCHITECTURE.md, "Libraries", the allocator's
 * options).
 * At most a partly used slab of 32 KiB per class and arena more (tree nodes
 * come from the automatic arenas, one per thread group: more writer
 * threads, more partly used slabs).
 */
const char *iovt_je_malloc_conf = "slab_sizes:256-512:8";

#define mallocx iovt_je_mallocx
#define sdallocx iovt_je_sdallocx
#define nallocx iovt_je_nallocx
#define mallctl iovt_je_mallctl

iovt_arena_t iovt_arena_create(void)
{
	unsigned arena = 0;
	size_t sz = sizeof(arena);
	if (mallctl("arenas.create", &arena, &sz, NULL, 0) != 0)
		return 0;
	return arena;
}

/* The thread cache is used (alloc.h): a region may then come from the
 * cache of a thread that allocated from another arena of ours; jemalloc
 * frees each region to the arena that owns it. */
static int flags_for(iovt_arena_t arena)
{
	return arena ? MALLOCX_ARENA(arena) : 0;
}

void *iovt_alloc(iovt_arena_t arena, size_t size)
{
	if (FAULT(size))
		return NULL;
	/* The default arena by malloc: jemalloc 5.3's mallocx has no fast path
	 * (its options parsed, then imalloc: ~120 instructions an allocation
	 * where malloc's thread-cache hit is ~30; sdallocx with flags 0 has
	 * one). */
	return arena ? mallocx(size, flags_for(arena)) : iovt_je_malloc(size);
}

void *iovt_zalloc(iovt_arena_t arena, size_t size)
{
	if (FAULT(size))
		return NULL;
	return mallocx(size, flags_for(arena) | MALLOCX_ZERO);
}

void *iovt_zalloc_aligned(iovt_arena_t arena, size_t size, size_t align)
{
	if (FAULT(size))
		return NULL;
	return mallocx(size, flags_for(arena) | MALLOCX_ZERO | MALLOCX_ALIGN(align));
}

void iovt_free(iovt_arena_t arena, void *p, size_t size)
{
	if (p)
		sdallocx(p, size, flags_for(arena));
}

size_t iovt_alloc_usable(size_t size)
{
	return nallocx(size, 0);
}
#else
iovt_arena_t iovt_arena_create(void)
{
	return 0;
}

void *iovt_alloc(iovt_arena_t arena, size_t size)
{
	(void)arena;
	if (FAULT(size))
		return NULL;
	return malloc(size);
}

void *iovt_zalloc(iovt_arena_t arena, size_t size)
{
	(void)arena;
	if (FAULT(size))
		return NULL;
	return calloc(1, size);
}

void *iovt_zalloc_aligned(iovt_arena_t arena, size_t size, size_t align)
{
	(void)arena;
	if (FAULT(size))
		return NULL;
	void *p = NULL;
	if (posix_memalign(&p, align, size) != 0)
		return NULL;
	memset(p, 0, size);
	return p;
}

void iovt_free(iovt_arena_t arena, void *p, size_t size)
{
	(void)arena;
	(void)size;
	free(p);
}

size_t iovt_alloc_usable(size_t size)
{
	return size;
}
#endif
