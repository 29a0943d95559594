/* SPDX-License-Identifier: MIT */
/**
 * @file iovt_model.h
 * @brief iovt's judges: a strict model sink and the oracle.
 *
 * Both are independent of the engine's diff and batcher code; tests, the
 * storm driver and VMM authors use them to check that a sink receives
 * exactly what it should.
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

/** @brief Which kernel's answers the model gives. */
enum iovt_model_flavor {
	IOVT_MODEL_TYPE1,   /**< empty UNMAP succeeds with 0; bisecting UNMAP -EINVAL */
	IOVT_MODEL_IOMMUFD, /**< empty UNMAP -ENOENT; bisecting UNMAP -ENOENT */
};

/** @brief Model sink configuration (iovt_model_sink_create()). */
struct iovt_model_config {
	enum iovt_model_flavor flavor; /**< type1 or iommufd answers */
	uint32_t max_mappings;  /**< -ENOSPC past it; 0: 65535 (VFIO's dma_entry_limit) */
	bool multi_unmap;       /**< advertise IOVT_SINK_MULTI_UNMAP (type1 and iommufd both can) */
	uint64_t iova_limit;    /**< IOVAs must be below it (-EINVAL); 0: 2^57 */
	uint64_t unmap_cost_ns; /**< charged per UNMAP call into stats (estimated host time) */
	uint64_t map_cost_ns;   /**< charged per MAP call */
};

/**
 * @brief What the model holds and what it was asked (iovt_model_sink_stats()).
 *
 * rejected_calls: calls it refused (any error). A correct engine causes 0.
 */
struct iovt_model_stats {
	uint64_t map_calls;       /**< map() calls */
	uint64_t unmap_calls;     /**< unmap() calls */
	uint64_t unmap_all_calls; /**< unmap_all() calls */
	uint64_t rejected_calls;  /**< calls refused, any error */
	uint64_t rejected_eexist; /**< refused with -EEXIST (MAP over a mapping) */
	uint64_t rejected_einval; /**< refused with -EINVAL (alignment, limit, type1 bisecting UNMAP) */
	uint64_t rejected_enospc; /**< refused with -ENOSPC (max_mappings) */
	uint64_t rejected_enoent; /**< refused with -ENOENT (iommufd empty or bisecting UNMAP) */
	uint64_t mappings;        /**< held now */
	uint64_t bytes_mapped;    /**< held now */
	uint64_t charged_ns;      /**< sum of per-call costs */
};

struct iovt_model_sink;

/**
 * @brief Creates a model sink and fills `*sink` with its vtable, ctx and caps.
 *
 * The caller passes `*sink` to iovt_notifier_attach(); the notifier copies
 * it. The model is freed by iovt_model_sink_destroy(), never by the engine
 * (sink.ops->destroy is NULL), so it can be inspected after detach.
 * Not thread-safe: the engine calls one domain's sink from one thread at a
 * time; inspect it only between fences.
 *
 * Rules (type1v2 as the Linux kernel answers them, see ../shared/vfio-guest):
 *  - map: iova/size/hva 4 KiB aligned and size > 0 else -EINVAL; iova+size
 *    beyond iova_limit -EINVAL; any overlap with a held mapping -EEXIST;
 *    past max_mappings -ENOSPC.
 *  - unmap: aligned, size > 0 else -EINVAL; if a held mapping is partly
 *    inside and partly outside [iova, iova+size): -EINVAL (IOMMUFD:
 *    -ENOENT); else removes every mapping inside; none inside: success with
 *    0 bytes (IOMMUFD: -ENOENT).
 * @param cfg the configuration (copied); NULL: type1, defaults.
 * @param[out] model the model, for inspection and iovt_model_sink_destroy().
 * @param[out] sink the sink to attach.
 * @return 0 or a negative errno.
 * @retval -EINVAL model or sink NULL, an unknown flavor.
 * @retval -ENOMEM out of memory.
 */
int iovt_model_sink_create(const struct iovt_model_config *cfg, struct iovt_model_sink **model,
			   struct iovt_sink *sink);

/**
 * @brief Frees a model sink.
 *
 * After its notifier was detached or its domain destroyed (or if it was
 * never attached).
 * @param m the model; NULL is a no-op.
 */
void iovt_model_sink_destroy(struct iovt_model_sink *m);

/**
 * @brief The model's counters.
 *
 * Between fences (not thread-safe against the engine's calls).
 * @param m the model.
 * @param[out] out the counters.
 */
void iovt_model_sink_stats(const struct iovt_model_sink *m, struct iovt_model_stats *out);

/**
 * @brief Number of mappings held.
 * @param m the model (between fences).
 * @return the count.
 */
size_t iovt_model_sink_count(const struct iovt_model_sink *m);

/**
 * @brief Copies up to `max` held mappings with iova >= from, ascending, into out.
 *
 * Dump the whole state by paging with from = last.iova + last.size.
 * Between fences.
 * @param m the model.
 * @param from the lowest IOVA of interest.
 * @param[out] out room for max extents.
 * @param max the room.
 * @return how many were copied.
 */
size_t iovt_model_sink_dump(const struct iovt_model_sink *m, uint64_t from, struct iovt_extent *out,
			    size_t max);

/**
 * @brief The held mapping covering iova, if any.
 * @param m the model (between fences).
 * @param iova the address.
 * @param[out] out the mapping, when found.
 * @return true when a mapping covers iova.
 */
bool iovt_model_sink_find(const struct iovt_model_sink *m, uint64_t iova, struct iovt_extent *out);

/* ------------------------------------------------------------------------ */
/* Oracle: the fewest sink calls from a state to a guest view                */

/**
 * @brief The guest view, one 4 KiB page at a time.
 * @param arg iovt_oracle_input::guest_arg.
 * @param iova the page.
 * @param[out] out when mapped: the page's extent (size 4 KiB, region = the
 *        guest RAM region of the target).
 * @return true if the page at `iova` is mapped, false if not.
 */
typedef bool (*iovt_oracle_guest_fn)(void *arg, uint64_t iova, struct iovt_extent *out);

/** @brief The oracle's question (iovt_oracle_min_calls()). */
struct iovt_oracle_input {
	/** The sink's state before: sorted by iova, disjoint. */
	const struct iovt_extent *before;
	size_t n_before; /**< extents in before */
	/** Ranges [first, last] the guest may have changed since `before` was
	 * its exact image; outside them the guest view equals `before`. Any
	 * order, may overlap. */
	const uint64_t (*touched)[2];
	size_t n_touched;           /**< ranges in touched */
	iovt_oracle_guest_fn guest; /**< the guest view */
	void *guest_arg;            /**< passed to guest */
	bool multi_unmap;           /**< the sink may remove several mappings in one UNMAP */
};

/** @brief The oracle's answer. */
struct iovt_oracle_result {
	uint64_t min_calls;   /**< = min_unmaps + min_maps */
	uint64_t min_unmaps;  /**< UNMAP calls of the minimal stable plan */
	uint64_t min_maps;    /**< MAP calls of the minimal stable plan */
	uint64_t kept;        /**< mappings of `before` that stay */
};

/**
 * @brief The minimum number of sink calls that turn `before` into the guest view.
 *
 * Under the sink's rules (no MAP over a mapping, no UNMAP that bisects one),
 * among STABLE plans: a mapping whose every page is unchanged is never taken
 * away (a device may be using it; an UNMAP+MAP would open a window of DMA
 * faults). So: every changed mapping is removed whole; with multi_unmap,
 * removed mappings with no kept mapping between them (in IOVA order) go in
 * one UNMAP; and the pages to map — present in the guest view, not covered
 * by a kept mapping — go in one MAP per maximal run that is IOVA-contiguous,
 * host-contiguous, of one permission and one RAM region, and does not cross
 * an 8 TiB-aligned IOVA (the engine's runs break there too: an extent's
 * size stays below the record's 2^44-byte limit).
 * Any thread; no shared state.
 * @param in the question.
 * @param[out] out the answer.
 * @return 0 or a negative errno.
 * @retval -EINVAL unsorted or overlapping input.
 * @retval -ENOMEM out of memory.
 */
int iovt_oracle_min_calls(const struct iovt_oracle_input *in, struct iovt_oracle_result *out);

#ifdef __cplusplus
}
#endif

#endif
