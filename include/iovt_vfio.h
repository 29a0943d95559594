/* SPDX-License-Identifier: MIT */
/**
 * @file iovt_vfio.h
 * @brief iovt's real sinks: the host-side IOVA maps a VMM keeps equal to the
 * guest's VT-d view.
 *
 * Each constructor fills a `struct iovt_sink` for iovt_notifier_attach();
 * the notifier owns it from then on and frees it at detach (the fd is the
 * host's: no sink ever closes it). A usage sketch:
 * examples/vfio/vfio_sketch.c.
 *
 * | constructor | host map | kernel calls |
 * |---|---|---|
 * | iovt_vfio_type1_sink_init() | VFIO type1v2 container | VFIO_IOMMU_MAP_DMA / VFIO_IOMMU_UNMAP_DMA (+ VFIO_DMA_UNMAP_FLAG_ALL) |
 * | iovt_iommufd_sink_init() | iommufd IOAS | IOMMU_IOAS_MAP (FIXED_IOVA) / IOMMU_IOAS_UNMAP |
 * | iovt_dpdk_vfio_sink_init() | DPDK's VFIO container | rte_vfio_container_dma_map / _unmap (only in builds with the `dpdk` feature) |
 *
 * @par What every sink here does with one engine call
 *  - map(extent): the target is extent->hva (the engine fills it from the
 *    guest RAM map: GPA -> HVA is already done); permissions from
 *    extent->perm (R -> device may read, W -> device may write). Before any
 *    kernel call the sink checks what the kernel told it at init: iova, size
 *    and hva aligned to the smallest supported page size (or the IOAS's
 *    alignment), and [iova, iova+size) inside one usable IOVA range (the
 *    kernel's ranges exclude the MSI window and anything above the IOMMU's
 *    width). A MAP that fails a check is refused with -EINVAL and no kernel
 *    call (counted in `refused`; the engine counts it as a sink failure,
 *    IOVT_ERR_SINK_MAP, and retries it at the next fence).
 *  - unmap(iova, size): type1 and iommufd, one kernel call over the whole
 *    range (the range may hold several whole mappings, and gaps:
 *    IOVT_SINK_MULTI_UNMAP); the DPDK sink, one rte call per mapping in it.
 *  - unmap_all: type1 and iommufd, one kernel call (type1 with the
 *    VFIO_UNMAP_ALL extension; iommufd: iova 0, length U64_MAX); the DPDK
 *    sink, one rte call per mapping.
 *  - Errors are the kernel's, negated (-EEXIST, -EINVAL, -ENOSPC, -ENOENT,
 *    -EBADF, -EFAULT, ...). *unmapped is what the kernel says it removed:
 *    the reply's byte count on success, 0 on a failed kernel call (see
 *    iommufd below); the DPDK sink reports the whole mappings it removed
 *    before a failure.
 *  - Every sink here sets IOVT_SINK_EXACT_UNMAPPED: a successful UNMAP that
 *    reports less than the engine recorded (type1 before Linux 6.3 stops at
 *    a mapping another process made) is taken as a failure, not as whole.
 *
 * The engine keeps its record equal to what the sink reports, so after any
 * failed call the record is what the kernel holds.
 *
 * @par A host map shared with mappings the engine did not make
 * By default the type1 and iommufd sinks assume their container or IOAS
 * holds only what the engine mapped through them: a multi-mapping UNMAP spans the gaps between recorded
 * extents, and detach (or destroy) sends one unmap-all, and either removes a
 * mapping the host made there itself (an MSI doorbell, another device
 * model's DMA window). A host that shares the space sets both
 * `no_multi_unmap` and `no_unmap_all`: then every UNMAP covers exactly one
 * recorded extent, and nothing else is ever touched (an engine MAP over a
 * host mapping fails -EEXIST in the kernel, counted as IOVT_ERR_SINK_MAP).
 * The DPDK sink unmaps only the mappings in its own table, one call each.
 *
 * @par Threads
 * The engine calls one sink from one thread at a time (the thread applying
 * the batch). The counters may be read from any thread at any time (each
 * field is an atomic load; a snapshot is not one instant).
 */
#ifndef IOVT_VFIO_H
#define IOVT_VFIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iovt.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Most usable IOVA ranges a sink keeps (more reported: the sink keeps the
 * first ones and says so in iovt_vfio_sink_info::ranges_truncated). */
#define IOVT_VFIO_MAX_RANGES 32u

/** @brief One usable IOVA range, inclusive. */
struct iovt_vfio_iova_range {
	uint64_t first; /**< first usable IOVA */
	uint64_t last;  /**< last usable IOVA (inclusive) */
};

/** @brief What the kernel reported at init (or what the config supplied),
 * and what the sink honours (iovt_vfio_sink_info()). */
struct iovt_vfio_sink_info {
	uint64_t page_sizes;     /**< bit n: 2^n-byte pages (type1 iova_pgsizes); never 0 */
	uint64_t iova_alignment; /**< smallest page size / iommufd out_iova_alignment */
	uint32_t dma_avail;      /**< type1 DMA_AVAIL capability at init; 0: not reported */
	uint32_t nr_ranges;      /**< usable IOVA ranges (ascending, disjoint) */
	struct iovt_vfio_iova_range ranges[IOVT_VFIO_MAX_RANGES]; /**< the first nr_ranges are valid */
	bool ranges_reported;    /**< false: the kernel said nothing, all of 64 bits assumed */
	bool ranges_truncated;   /**< the kernel reported more than IOVT_VFIO_MAX_RANGES */
	bool unmap_all;          /**< the kernel can unmap everything in one call */
};

/** @brief Per-sink counters (iovt_vfio_sink_counters()).
 *
 * calls count kernel calls made; errors count the kernel calls that failed
 * (the kernel rejected them); refused counts calls (MAP or UNMAP) the sink
 * refused itself without a kernel call; `*_ns` is wall time spent inside
 * the kernel calls
 * (CLOCK_MONOTONIC around each ioctl / rte call). */
struct iovt_vfio_sink_counters {
	uint64_t map_calls;        /**< MAP kernel calls */
	uint64_t unmap_calls;      /**< UNMAP kernel calls */
	uint64_t unmap_all_calls;  /**< unmap-all kernel calls */
	uint64_t map_errors;       /**< MAP kernel calls that failed */
	uint64_t unmap_errors;     /**< UNMAP kernel calls that failed */
	uint64_t unmap_all_errors; /**< unmap-all kernel calls that failed */
	uint64_t refused;          /**< calls (MAP or UNMAP) refused by the sink's own checks, no kernel call */
	uint64_t map_ns;           /**< ns inside MAP calls */
	uint64_t unmap_ns;         /**< ns inside UNMAP calls */
	uint64_t unmap_all_ns;     /**< ns inside unmap-all calls */
	uint64_t bytes_mapped;    /**< by successful MAPs */
	uint64_t bytes_unmapped;  /**< reported by successful UNMAP kernel calls (unmap_all included; the DPDK sink's one call per mapping, each counted when it succeeds) */
	uint64_t unmap_all_bytes; /**< reported by successful unmap_all calls */
	int64_t last_errno;       /**< positive errno of the last failure (refusals too); 0: none */
};

/** @brief Sink configuration. All fields optional (zero = default); cfg NULL = all
 * defaults. */
struct iovt_vfio_sink_config {
	/** Advertise at most this many mappings (caps.max_mappings). 0: what the
	 * kernel reports (type1 dma_avail, else unlimited; DPDK: 256, its
	 * user-mapping table). A smaller value is kept; a larger one is capped
	 * to the kernel's. */
	uint32_t max_mappings;
	/** Do not use one UNMAP over several mappings (one call per mapping). */
	bool no_multi_unmap;
	/** Do not use the kernel's unmap-all even when present. */
	bool no_unmap_all;
	/** Do not ask the kernel at init: take page sizes and ranges from below
	 * (defaults: 4 KiB pages, the whole 64-bit space, no unmap-all for type1,
	 * unmap-all for iommufd). For hosts that already queried, and for tests. */
	bool no_query;
	/** DPDK sink only: map an extent the guest grants only reading (or
	 * only writing) read-write all the same. DPDK's API has no
	 * permissions (rte_vfio_container_dma_map maps read+write), so
	 * without this such an extent is refused (-EPERM, counted in
	 * `refused`, retried by the engine, returned by its fence): the device
	 * never gets write access the guest did not grant. With it, a device
	 * may write guest memory the guest made read-only (its TX buffers,
	 * say): the host's choice. Ignored by the other sinks, which map
	 * extent->perm exactly. (In the struct's padding: no layout change.) */
	bool dpdk_upgrade_to_rw;
	uint64_t page_sizes;   /**< with no_query: 0 = 4 KiB */
	uint32_t nr_ranges;    /**< with no_query: 0 = [0, 2^64-1] */
	const struct iovt_vfio_iova_range *ranges; /**< with no_query: nr_ranges ranges, ascending, disjoint */
	/** Where the sink keeps its counters: host memory that must outlive the
	 * sink (so they can be read after the notifier detached and freed the
	 * sink). NULL: inside the sink, readable until detach. The sink zeroes
	 * them at init. */
	struct iovt_vfio_sink_counters *counters;
};

/**
 * @brief Fills a VFIO type1v2 container sink.
 *
 * Unless cfg->no_query, init asks the kernel:
 * VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) (required) and (VFIO_UNMAP_ALL),
 * and VFIO_IOMMU_GET_INFO with its capability chain (IOVA ranges,
 * dma_avail). Caps: IOVT_SINK_MULTI_UNMAP (type1v2 removes every whole
 * mapping in the range; an UNMAP that would bisect one fails -EINVAL and
 * removes nothing) only when VFIO_UNMAP_ALL is present too — Linux 5.12's
 * series, from which the kernel removes them in ascending order: 5.10 and
 * 5.11 took them in their tree's search order and could stop at another
 * process's mapping with success, so a short answer was not a prefix and
 * the engine's record could not follow it; there every UNMAP covers one
 * mapping (with no_query, which cannot ask, a host on such a kernel sets
 * no_multi_unmap) —, IOVT_SINK_UNMAP_ALL when the extension is present,
 * IOVT_SINK_EXACT_UNMAPPED, IOVT_SINK_PARTIAL_UNMAP,
 * IOVT_SINK_PARTIAL_UNCOUNTED and IOVT_SINK_UNMAP_EMPTY_ERR (for the
 * /dev/vfio/vfio of iommufd, CONFIG_IOMMUFD_VFIO_CONTAINER, which answers
 * the same extensions: a failed UNMAP there may have removed whole mappings
 * up to the one it stopped at, and reports their size; before Linux commit
 * afb47765f923 an empty range answered -ENOENT), max_mappings from
 * dma_avail, page_sizes from iova_pgsizes.
 * Thread-safety: init is reentrant (any thread).
 * @param[out] out the sink, for iovt_notifier_attach(); free it with
 *        iovt_vfio_sink_free() if it is never attached.
 * @param container_fd an open /dev/vfio/vfio container with at least one
 *        group attached and VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU) done (by the
 *        host; the sink never closes it). It must stay open while the sink
 *        exists.
 * @param cfg the configuration; NULL for defaults. Not kept after the call
 *        (except cfg->counters, which must outlive the sink).
 * @return 0 or a negative errno.
 * @retval -EINVAL out NULL, a bad cfg.
 * @retval -EBADF container_fd < 0.
 * @retval -ENODEV no type1v2 in the container.
 * @retval -ENOMEM out of memory.
 * @retval -EPROTO a malformed capability chain.
 * @retval other the kernel's errno from a query.
 */
int iovt_vfio_type1_sink_init(struct iovt_sink *out, int container_fd,
			      const struct iovt_vfio_sink_config *cfg);

/**
 * @brief Fills an iommufd IOAS sink.
 *
 * Unless cfg->no_query, init asks IOMMU_IOAS_IOVA_RANGES (usable ranges and
 * out_iova_alignment). Maps with IOMMU_IOAS_MAP_FIXED_IOVA (+ READABLE /
 * WRITEABLE from perm); unmaps with IOMMU_IOAS_UNMAP; unmap-all is iova 0,
 * length U64_MAX. Caps: MULTI_UNMAP | UNMAP_ALL | UNMAP_EMPTY_ERR (an UNMAP
 * of an empty range is -ENOENT; so is one that bisects a mapping) |
 * PARTIAL_UNMAP (a failing multi-mapping UNMAP may have removed the mappings
 * before the one it failed on) | PARTIAL_UNCOUNTED (the kernel reports no
 * byte count for a failed UNMAP, so `*unmapped` is 0 then: after a failed
 * multi-mapping UNMAP the engine unmaps each recorded extent of it alone to
 * learn what was removed) | EXACT_UNMAPPED. max_mappings 0 (no kernel limit)
 * unless cfg says. Thread-safety: init is reentrant (any thread).
 * @param[out] out the sink, for iovt_notifier_attach(); free it with
 *        iovt_vfio_sink_free() if it is never attached.
 * @param iommufd_fd an open /dev/iommu (the host's; never closed by the
 *        sink; open while the sink exists).
 * @param ioas_id an IOAS (IOMMU_IOAS_ALLOC) the host's devices are attached to.
 * @param cfg the configuration; NULL for defaults (cfg->counters must
 *        outlive the sink).
 * @return 0 or a negative errno.
 * @retval -EINVAL out NULL, a bad cfg.
 * @retval -EBADF iommufd_fd < 0.
 * @retval -ENOMEM out of memory.
 * @retval -EPROTO a malformed IOMMU_IOAS_IOVA_RANGES reply.
 * @retval other the kernel's errno from the query.
 */
int iovt_iommufd_sink_init(struct iovt_sink *out, int iommufd_fd, uint32_t ioas_id,
			   const struct iovt_vfio_sink_config *cfg);

/**
 * @brief Fills a DPDK sink: rte_vfio_container_dma_map / rte_vfio_container_dma_unmap.
 *
 * EAL must be initialised before the first map. DPDK's unmap needs the host
 * address too, and DPDK refuses to split its own records, so the sink
 * remembers its mappings (at most max_mappings, default 256 = DPDK's
 * user-mapping table) and sends one rte call per mapping inside an UNMAP
 * range (MULTI_UNMAP and PARTIAL_UNMAP at the sink level: a failing UNMAP
 * reports the whole mappings it removed before the failure; and
 * EXACT_UNMAPPED). No kernel
 * query (the rte API has none): ranges and page sizes come from cfg
 * (no_query is implied). The rte calls' errors reach the engine as
 * -rte_errno. Thread-safety: init is reentrant (any thread). In
 * libiovt-dpdk (pkg-config iovt-dpdk), not libiovt.
 * @param[out] out the sink, for iovt_notifier_attach(); free it with
 *        iovt_vfio_sink_free() if it is never attached.
 * @param container_fd a container from rte_vfio_container_create(), or
 *        RTE_VFIO_DEFAULT_CONTAINER_FD (-1) for EAL's default container.
 *        Prefer a container of its own: DPDK answers a MAP whose IOVA the
 *        container already maps (the kernel's -EEXIST) with success, and
 *        EAL's default container holds EAL's own DMA mappings (its
 *        hugepages, at IOVAs of its choosing) — a guest IOVA range over
 *        them would be recorded as mapped while the device reaches EAL's
 *        memory. With the default container the guest's IOVA ranges must
 *        not overlap any other mapping in it (found by review; DPDK 22.11,
 *        eal_vfio.c).
 * @param cfg the configuration; NULL for defaults (cfg->counters must
 *        outlive the sink).
 * @return 0 or a negative errno.
 * @retval -EINVAL out NULL, a bad cfg.
 * @retval -EBADF container_fd < 0 and not RTE_VFIO_DEFAULT_CONTAINER_FD.
 * @retval -ENOMEM out of memory.
 */
int iovt_dpdk_vfio_sink_init(struct iovt_sink *out, int container_fd,
			     const struct iovt_vfio_sink_config *cfg);

/**
 * @brief Reads the counters of a sink filled by one of the constructors above.
 *
 * Valid until the notifier is detached unless cfg->counters was given (then
 * read that memory directly, any time). Any thread.
 * @param sink the caller's copy of the struct iovt_sink it passed to
 *        iovt_notifier_attach().
 * @param[out] out the counters.
 * @return 0, or -EINVAL for another kind of sink (or NULL).
 */
int iovt_vfio_sink_counters(const struct iovt_sink *sink, struct iovt_vfio_sink_counters *out);

/**
 * @brief What the kernel reported at init, as the sink honours it.
 *
 * Same rules as iovt_vfio_sink_counters(): until detach, any thread.
 * @param sink the caller's copy of the sink.
 * @param[out] out the information.
 * @return 0, or -EINVAL for another kind of sink (or NULL).
 */
int iovt_vfio_sink_info(const struct iovt_sink *sink, struct iovt_vfio_sink_info *out);

/**
 * @brief Frees a sink that was never attached.
 *
 * Attach takes ownership: never call this after an iovt_notifier_attach()
 * that set its `*out` (0 or a replay error).
 * @param sink the sink; NULL ops: no-op.
 */
void iovt_vfio_sink_free(struct iovt_sink *sink);

/**
 * @brief Parses a VFIO_IOMMU_GET_INFO reply.
 *
 * The reply is a struct vfio_iommu_type1_info followed by its capability
 * chain; it fills page sizes, IOVA ranges, dma_avail. Unknown capabilities
 * are skipped. What the sink calls at init; public so a host (and the
 * tests) can feed it buffers. out->unmap_all is left false (it is an
 * extension, not in the reply). Any thread; reads only `buf`.
 * @param buf the reply.
 * @param len the valid bytes of it.
 * @param[out] out the parsed information.
 * @return 0 or a negative errno.
 * @retval -EINVAL NULL, len shorter than the fixed part.
 * @retval -EPROTO a capability offset outside the buffer, misaligned, or
 *         going backwards (a loop); a truncated capability; an IOVA-range
 *         capability with no range, or ranges that overlap or end before
 *         they begin (ranges in any order are sorted); zero page sizes.
 */
int iovt_vfio_type1_parse_info(const void *buf, size_t len, struct iovt_vfio_sink_info *out);

#ifdef __cplusplus
}
#endif

#endif
