/* SPDX-License-Identifier: MIT */
/*
 * fault_sink: a sink wrapper that makes chosen calls of an inner sink fail.
 *
 * Why: the engine's promise under sink failures ("the record is what the
 * sink holds", ARCHITECTURE.md) can only be judged if the failures are
 * real, i.e. a failed call really leaves the device unchanged. So an
 * injected failure never reaches the inner sink: the inner sink (a strict
 * model sink in the tests) stays the exact truth of what the "device" holds,
 * and its own rejected_calls still catches any call the engine should not
 * have sent (a MAP over what stayed after a failed UNMAP is -EEXIST there).
 *
 * Partial mode (iommufd-style): the wrapper advertises
 * IOVT_SINK_PARTIAL_UNMAP, and an injected UNMAP failure first removes a
 * prefix (in IOVA order) of the whole mappings inside the requested range,
 * as iommufd does when it fails part way through, reports the bytes of those
 * mappings in *unmapped (the sum of their sizes, like iommufd's `length`
 * out-parameter, gaps not counted) and then returns the errno. Needs the
 * inner model (to find the mappings).
 *
 * Which calls fail: scheduled ones (the n-th call of a kind counted from
 * now), and random ones with probability p. The errno is the scheduled one,
 * or drawn from {ENOMEM, EINVAL, EEXIST, ENOSPC, EIO}.
 *
 * Threads: the engine calls one domain's sink from one thread at a time
 * (fences serialise), so the schedule and the PRNG are plain fields; the
 * counters and p are atomics so another thread may read or switch them
 * between fences (the soak test does).
 */
#ifndef IOVT_TESTS_FAULT_SINK_H
#define IOVT_TESTS_FAULT_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "iovt.h"
#include "iovt_model.h"

enum fault_kind { FAULT_MAP, FAULT_UNMAP, FAULT_KINDS }; /* unmap_all counts as UNMAP */

#define FAULT_NERRNO 5
extern const int fault_errnos[FAULT_NERRNO]; /* positive: ENOMEM, EINVAL, EEXIST, ENOSPC, EIO */

struct fault_stats {
	uint64_t calls[FAULT_KINDS];    /* calls the engine made (failed or not) */
	uint64_t injected[FAULT_KINDS]; /* of them, failed by injection */
	uint64_t by_errno[FAULT_NERRNO];
	uint64_t partial_unmaps;        /* injected UNMAP failures that removed something */
	uint64_t partial_bytes;         /* bytes they removed */
};

struct fault_sink;

/*
 * Wraps `inner` (copied). `model` is the model behind inner (may be NULL
 * unless partial). Fills *out with the wrapper's sink: inner's caps, plus
 * IOVT_SINK_PARTIAL_UNMAP when partial. The wrapper is freed by
 * fault_sink_destroy (out->ops->destroy is NULL), after the notifier is gone.
 */
int fault_sink_create(const struct iovt_sink *inner, struct iovt_model_sink *model, bool partial,
		      uint64_t seed, struct fault_sink **fs, struct iovt_sink *out);
void fault_sink_destroy(struct fault_sink *fs);

/* Fails the n-th (0-based) call of `kind` counted from now with -err
 * (err > 0). Up to 64 pending schedules. */
void fault_sink_fail_nth(struct fault_sink *fs, enum fault_kind kind, uint64_t n, int err);
/* Random failures: each call fails with probability p (0 stops). */
void fault_sink_set_random(struct fault_sink *fs, double p);
/* Drops every pending schedule and sets p to 0: nothing more is injected. */
void fault_sink_stop(struct fault_sink *fs);
/* Partial mode: how many whole mappings an injected UNMAP failure removes
 * first; -1 (default): random in [0, all]. */
void fault_sink_set_partial_prefix(struct fault_sink *fs, int k);

void fault_sink_stats(const struct fault_sink *fs, struct fault_stats *out);
/* Total injected failures (all kinds). */
uint64_t fault_sink_injected(const struct fault_sink *fs);
/*
 * A mark for the judges: the first errno injected since the previous call
 * (negative; 0 when none), and how many were injected since then. A fence
 * returns the first error met, so with no other error source it must return
 * exactly this.
 */
int fault_sink_take_mark(struct fault_sink *fs, uint64_t *injected_since);

#endif
