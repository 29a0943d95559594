/* SPDX-License-Identifier: MIT */
/*
 * The fence family of iovt-gbench (issue 13's fixed-cost table): one guest
 * edit + one strict PSI + the wait, on a null sink, driven through
 *   FB_QUEUE   iovt_queue_psi + iovt_queue_fence (the vCPU's own queue, drained inline),
 *   FB_LEGACY  iovt_invalidate_psi + iovt_fence,
 *   FB_BASELINE the QEMU-style baseline (bench/baseline): the PSI is processed when
 *              posted, the wait is a no-op,
 * over the same simulated guest. The guest edit is what a guest does: an 8-byte
 * PTE store into its own table (tables built once at setup), the same on every side.
 */
#ifndef IOVT_GBENCH_FENCE_SUPPORT_H
#define IOVT_GBENCH_FENCE_SUPPORT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fb_side { FB_QUEUE, FB_LEGACY, FB_BASELINE };

enum fb_workload {
	FB_MAP_UNMAP_1,       /* 1-page map, then unmap (alternating); a neighbour keeps the 2 MiB region in use */
	FB_MAP_UNMAP_1_EMPTY, /* the same, alone in its 2 MiB region: it empties at every unmap */
	FB_PIECES_1_32,       /* 1..32 pages in 1..8-page pieces (separate extents) mapped, then unmapped */
	FB_PSI_UNMAPPED,      /* a 1-page PSI over space that is and stays unmapped */
	FB_PSI_UNCHANGED,     /* a 1-page PSI over a mapping that does not change */
	FB_EMPTY_WAIT,        /* the wait alone, nothing posted */
	FB_FIRST_POST,        /* a thread's first PSI + wait over an unchanged mapping (engine_legacy:
			       * each step on a new thread, whose implicit queue the PSI creates) */
	FB_WORKLOADS
};

struct fb_world;

/* Builds the guest (tables for every page the workload touches already present),
 * the engine or baseline on a null sink, and the warm-up state. NULL on failure
 * (message printed). */
struct fb_world *fb_create(enum fb_side side, enum fb_workload w);
void fb_destroy(struct fb_world *w);

/* FB_FIRST_POST on engine_legacy: runs step i on a new thread (registered,
 * then unregistered: its implicit queue is created by the step's PSI and
 * released at exit) and returns the TSC ticks of the step alone, or
 * UINT64_MAX on failure. */
uint64_t fb_step_new_thread(struct fb_world *w, uint64_t i);

/* One step: the guest's edit for step i, one PSI, the wait. Returns the wait's
 * result (0) or the first error. */
int fb_step(struct fb_world *w, uint64_t i);

/* Sink calls made so far (MAP + UNMAP), for a per-step figure. */
uint64_t fb_sink_calls(const struct fb_world *w);

const char *fb_workload_name(enum fb_workload w);
/* Sides a workload runs on (first_post: engine_legacy and baseline only). */
int fb_has_side(enum fb_workload w, enum fb_side s);
const char *fb_side_name(enum fb_side s);

#ifdef __cplusplus
}
#endif

#endif
