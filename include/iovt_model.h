/* SPDX-License-Identifier: MIT */
/*
 * iovt's judges: a strict model sink and the oracle. Both are independent of
 * the engine's diff and batcher code; tests, the storm driver and VMM authors
 * use them to check that a sink receives exactly what it should.
 */
#ifndef IOVT_MODEL_H
#define IOVT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iovt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Model sink: the VFIO type1v2 rules, enforced exactly                      */

enum iovt_model_flavor {
	IOVT_MODEL_TYPE1,   /* empty UNMAP succeeds with 0; bisecting UNMAP -EINVAL */
	IOVT_MODEL_IOMMUFD, /* empty UNMAP -ENOENT; bisecting UNMAP -ENOENT */
};

struct iovt_model_config {
	enum iovt_model_flavor flavor;
	uint32_t max_mappings;  /* -ENOSPC past it; 0: 65535 (VFIO's dma_entry_limit) */
	bool multi_unmap;       /* advertise IOVT_SINK_MULTI_UNMAP (type1 and iommufd both can) */
	uint64_t iova_limit;    /* IOVAs must be below it (-EINVAL); 0: 2^57 */
	uint64_t unmap_cost_ns; /* charged per UNMAP call into stats (estimated host time) */
	uint64_t map_cost_ns;   /* charged per MAP call */
};

/*
 * What the model holds and what it was asked.
 *  rejected_calls: calls it refused (any error). A correct engine causes 0.
 */
struct iovt_model_stats {
	uint64_t map_calls, unmap_calls, unmap_all_calls;
	uint64_t rejected_calls;
	uint64_t rejected_eexist, rejected_einval, rejected_enospc, rejected_enoent;
	uint64_t mappings;        /* held now */
	uint64_t bytes_mapped;    /* held now */
	uint64_t charged_ns;      /* sum of per-call costs */
};

struct iovt_model_sink;

/*
 * Creates a model sink and fills *sink with its vtable, ctx and caps (the
 * caller passes *sink to iovt_notifier_attach; the notifier copies it).
 * The model is freed by iovt_model_sink_destroy(), never by the engine
 * (sink.ops->destroy is NULL), so it can be inspected after detach.
 * Not thread-safe: the engine calls one domain's sink from one thread at a
 * time; inspect it only between fences.
 * Rules (type1v2 as the Linux kernel answers them, see ../shared/vfio-guest):
 *  map:   iova/size/hva 4 KiB aligned and size > 0 else -EINVAL; iova+size
 *         beyond iova_limit -EINVAL; any overlap with a held mapping -EEXIST;
 *         past max_mappings -ENOSPC.
 *  unmap: aligned, size > 0 else -EINVAL; if a held mapping is partly inside
 *         and partly outside [iova, iova+size): -EINVAL (IOMMUFD: -ENOENT);
 *         else removes every mapping inside; none inside: success with 0
 *         bytes (IOMMUFD: -ENOENT).
 */
int iovt_model_sink_create(const struct iovt_model_config *cfg, struct iovt_model_sink **model,
			   struct iovt_sink *sink);
void iovt_model_sink_destroy(struct iovt_model_sink *m);

void iovt_model_sink_stats(const struct iovt_model_sink *m, struct iovt_model_stats *out);

/* Number of mappings held. */
size_t iovt_model_sink_count(const struct iovt_model_sink *m);

/*
 * Copies up to `max` held mappings with iova >= from, ascending, into out.
 * Returns how many were copied. (Dump the whole state by paging with from =
 * last.iova + last.size.)
 */
size_t iovt_model_sink_dump(const struct iovt_model_sink *m, uint64_t from, struct iovt_extent *out,
			    size_t max);

/* The held mapping covering iova, if any. */
bool iovt_model_sink_find(const struct iovt_model_sink *m, uint64_t iova, struct iovt_extent *out);

/* ------------------------------------------------------------------------ */
/* Oracle: the fewest sink calls from a state to a guest view                */

/*
 * The guest view, one 4 KiB page at a time: fills *out (size 4 KiB, region =
 * the guest RAM region of the target) and returns true if the page at `iova`
 * is mapped, false if not.
 */
typedef bool (*iovt_oracle_guest_fn)(void *arg, uint64_t iova, struct iovt_extent *out);

struct iovt_oracle_input {
	/* The sink's state before: sorted by iova, disjoint. */
	const struct iovt_extent *before;
	size_t n_before;
	/* Ranges [first, last] the guest may have changed since `before` was
	 * its exact image; outside them the guest view equals `before`. Any
	 * order, may overlap. */
	const uint64_t (*touched)[2];
	size_t n_touched;
	iovt_oracle_guest_fn guest;
	void *guest_arg;
	bool multi_unmap; /* the sink may remove several mappings in one UNMAP */
};

struct iovt_oracle_result {
	uint64_t min_calls;   /* = min_unmaps + min_maps */
	uint64_t min_unmaps;
	uint64_t min_maps;
	uint64_t kept;        /* mappings of `before` that stay */
};

/*
 * The minimum number of sink calls that turn `before` into the guest view
 * under the sink's rules (no MAP over a mapping, no UNMAP that bisects one),
 * among STABLE plans: a mapping whose every page is unchanged is never taken
 * away (a device may be using it; an UNMAP+MAP would open a window of DMA
 * faults). So: every changed mapping is removed whole; with multi_unmap,
 * removed mappings with no kept mapping between them (in IOVA order) go in
 * one UNMAP; and the pages to map — present in the guest view, not covered
 * by a kept mapping — go in one MAP per maximal run that is IOVA-contiguous,
 * host-contiguous, of one permission and one RAM region.
 * Returns 0, -EINVAL (unsorted/overlapping input), -ENOMEM.
 */
int iovt_oracle_min_calls(const struct iovt_oracle_input *in, struct iovt_oracle_result *out);

#ifdef __cplusplus
}
#endif

#endif
