/* SPDX-License-Identifier: MIT */
/*
 * Support for the concurrent tests (soak, stress, intake, dpdk).
 *
 * conc_engine / conc_domain: the world they share — an engine over a
 * guestsim's RAM region 0, and domain pairs (guest table + engine domain).
 *
 * locked_model: a model sink that test threads may read while the engine
 * calls it from another thread (a worker, a poller, another producer's
 * fence): every call and every read holds `lock`. It may also log the calls
 * it sees, in order (log_cap > 0).
 *
 * agree_check: guest truth == model sink == engine record, page by page.
 */
#ifndef IOVT_TESTS_LOCKED_MODEL_H
#define IOVT_TESTS_LOCKED_MODEL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"

struct locked_model_event {
	enum iovt_event_type type;
	uint64_t iova, size, gpa; /* unmap_all: iova 0, size UINT64_MAX */
	uint32_t perm;
};

struct locked_model {
	pthread_mutex_t lock;
	struct iovt_model_sink *model;
	struct iovt_sink inner;
	uint64_t calls;
	struct locked_model_event *log;
	unsigned log_cap, log_n; /* calls past log_cap are counted, not logged */
};

/* Creates the model and fills *out: the sink to attach. Exits on failure. */
void locked_model_init(struct locked_model *lm, const struct iovt_model_config *cfg,
		       unsigned log_cap, struct iovt_sink *out);
/* After the engine is destroyed: checks the model rejected nothing, frees it. */
void locked_model_fini(struct locked_model *lm);

bool locked_model_find(struct locked_model *lm, uint64_t iova, struct iovt_extent *out);
size_t locked_model_count(struct locked_model *lm);
uint64_t locked_model_calls(struct locked_model *lm);
unsigned locked_model_events(struct locked_model *lm);
struct locked_model_event locked_model_event(struct locked_model *lm, unsigned i);

/* What agree_check compares; every guestsim call holds gs_lock. */
struct agree_target {
	struct guestsim *gs;
	struct gs_domain *gd;
	pthread_mutex_t *gs_lock;
	struct locked_model *lm;
	struct iovt_domain *d;
};

/*
 * On every page of [lo, hi): the guest truth, the model sink and the engine
 * record (iovt_translate) agree — mapped or not, gpa, permission, host
 * address, and the record's extent is the model's mapping. Prints the first
 * divergence with `who` and exits 1. Returns the pages checked.
 */
uint64_t agree_check(const struct agree_target *t, uint64_t lo, uint64_t hi, const char *who);

/* An engine (default config) over all of the guest's RAM region 0. Exits on failure. */
struct iovt_engine *conc_engine(struct guestsim *gs);

/*
 * A 48-bit guest domain and the engine's domain `did` over its table.
 * Leaves must be 4 KiB only: guestsim then never frees a table page that a
 * concurrent walk (another producer's fence, a worker) may still read.
 * Returns the guest domain; *d gets the engine's. Exits on failure.
 */
struct gs_domain *conc_domain(struct guestsim *gs, struct iovt_engine *e, uint16_t did,
			      struct iovt_domain **d);

/*
 * The asynchronous wait of a host that completes the guest's wait descriptor
 * later: post a fence, poll fence_done a little (yielding, so a worker may
 * take it first; each poll counted in *polls), then fence_wait for its result.
 */
int conc_fence_async(struct iovt_queue *q, uint64_t *polls);

/* The smallest PSI (aligned 2^am-page block) covering [iova, iova + size). */
struct iovt_inval psi_covering(uint16_t did, uint64_t iova, uint64_t size);

#endif
