/* SPDX-License-Identifier: MIT */
/**
 * @file iovt.h
 * @brief iovt — an IOVA tracking engine for virtual IOMMUs (Intel VT-d).
 *
 * A guest programs a VT-d second-level page table and sends invalidations
 * (PSI: page-selective, DSI: domain-selective, global) that do not say what
 * changed. A host-side IOVA map (a VFIO container, an iommufd IOAS, a DPDK
 * IOVA-VA map) needs exact MAP and UNMAP events: never a MAP over a mapping
 * (VFIO: -EEXIST), never an UNMAP that bisects one (-EINVAL). iovt keeps, per
 * domain, what it has told the domain's MAP sink (the shadow tree), walks the
 * guest table over each invalidated range, diffs, and sends the smallest batch
 * of sink calls that makes the sink equal to the guest view. UNMAP-only
 * notifiers (device IOTLBs) get the raw, possibly oversized, range and cost
 * no tree at all.
 *
 * @verbatim
   guest RAM map --> domain (DID, table root, width) --> notifiers --> sinks
   invalidate(PSI/DSI/global) ... fence --> walk > diff > batch > sink calls
   iovt_translate(domain, iova): lock-free, from the shadow tree or the engine IOTLB
   @endverbatim
 *
 * The table format the guest writes (and the VMM may write in tests) is in
 * iovt_vtd.h; the real sinks (VFIO type1, iommufd, DPDK) in iovt_vfio.h; the
 * DPDK lcore pollers in iovt_dpdk.h; a strict model sink and the oracle in
 * iovt_model.h. A complete program: examples/minimal/minimal.c.
 *
 * @par Conventions
 *  - Every function that can fail returns 0 (or a count) on success and a
 *    negative errno on failure; every rejected input also bumps a counter in
 *    struct iovt_stats.
 *  - Addresses and sizes are bytes; IOVAs and GPAs are 4 KiB aligned where
 *    the text says so.
 *  - Threads: every thread that calls into an engine (translate, post,
 *    fence, poll, control calls) must be registered with
 *    iovt_thread_register() (liburcu memb flavor readers). Other calls note
 *    their own rules; "engine lock" means they serialise on one engine-wide
 *    control mutex and may be called from any registered thread.
 *
 * @par Synchronization at a glance
 * | call | thread | blocks on |
 * |---|---|---|
 * | iovt_translate(), iovt_translate_range(), iovt_domain_lookup() / _get() / _put(), iovt_domain_alive(), iovt_queue_fence_done() | any registered thread | nothing (lock-free) |
 * | iovt_queue_post(), iovt_queue_psi(), iovt_queue_dsi(), iovt_queue_fence(), iovt_queue_fence_post(), iovt_queue_fence_wait() | the queue's producer: one registered thread at a time (calls serialised by the host when it changes) | a full queue; the fence's own work |
 * | iovt_invalidate_psi(), iovt_invalidate_dsi(), iovt_invalidate_global() | any registered thread (its implicit queue) | a full queue; a thread's first post to an engine: the queue table lock; a post to a fifth engine: the evicted queue's destroy (that engine's lock and a grace period: never inside a read-side section of the host's own) |
 * | iovt_fence() | any registered thread | other iovt_fence() calls and control calls (engine lock) |
 * | iovt_poll() | the host's loop, one caller per poller number | skips busy queues; a fence it applies takes its domains' sync locks, which control calls and other drainers hold through their sink calls |
 * | engine, guest RAM, domain, notifier control calls, iovt_queue_destroy() | any registered thread | the engine lock; may call sinks |
 * | iovt_queue_create() | any registered thread | the engine's queue table lock (not the engine lock) |
 * | iovt_workers_start() / _stop(), iovt_dpdk_pollers_start() / _stop() | any registered thread | the engine's workers lock (not the engine lock); stop joins the threads |
 * | iovt_stats_get(), iovt_domain_stats_get() | any thread (one liburcu does not know is registered with it for the call) | nothing; on such a thread, liburcu's registry lock (held through a grace period in progress) |
 * | iovt_err_kind_name() | any thread | nothing |
 * Inside a read-side section of the host's own (liburcu memb), only the
 * lock-free calls of the first row may be made: every other call may wait
 * for a grace period, its own or one a thread holding a lock it needs is
 * waiting for (a guest RAM removal holds the engine lock through two), and
 * would wait for the caller's section (a deadlock; found by review).
 * Sinks are called from the thread that applies a batch (a fence caller, a
 * worker, a poller, or a control call), one call at a time per domain.
 * Inside a sink callback a thread may post invalidations
 * (iovt_invalidate_psi(), _dsi(), _global(): a bridge forwarding to another
 * domain; there they never create, evict or wait for a queue: they go into
 * the thread's implicit queue when it has one with room, else straight to
 * the domains' pending sets, and the next iovt_fence() applies them) and use
 * the lock-free calls above; it must not post to a queue, call iovt_fence(),
 * wait on a queue fence or make a control call: the engine lock, a queue's
 * drain or the domain's sync may be held by this very thread (a deadlock).
 */
#ifndef IOVT_H
#define IOVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "iovt_version.h" /* IOVT_VERSION*, iovt_version() */

#ifdef __cplusplus
extern "C" {
#endif

/** log2 of the page size iovt tracks (4 KiB). */
#define IOVT_PAGE_SHIFT 12
/** The page size iovt tracks: 4 KiB. */
#define IOVT_PAGE_SIZE (1ull << IOVT_PAGE_SHIFT)

/** Access permission: read (the VT-d R bit). */
#define IOVT_PERM_R 1u
/** Access permission: write (the VT-d W bit). */
#define IOVT_PERM_W 2u
/** Access permission: read and write. */
#define IOVT_PERM_RW 3u

/**
 * @brief One mapping as a sink holds it: IOVA range to guest-physical and
 * host address, with permissions.
 *
 * `region` is the guest RAM region the target lies in (a sink mapping never
 * crosses regions).
 */
struct iovt_extent {
	uint64_t iova;   /**< first byte, 4 KiB aligned */
	uint64_t size;   /**< bytes, 4 KiB multiple */
	uint64_t gpa;    /**< guest-physical address of iova */
	uint64_t hva;    /**< host virtual address of iova */
	uint32_t perm;   /**< IOVT_PERM_* */
	uint32_t region; /**< guest RAM region id (from iovt_guest_ram_add()) */
};

struct iovt_engine;
struct iovt_domain;
struct iovt_notifier;

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */

/**
 * @brief Registers the calling thread as an RCU reader.
 *
 * Required before any other iovt call on that thread; idempotent per thread.
 * A thread the host already registered with liburcu's memb flavor itself is
 * left registered as it is (no second registration; the host registers
 * first: liburcu aborts on a second registration the other way round), and
 * iovt_thread_unregister() then leaves that registration to the host, which
 * keeps it until after iovt_thread_unregister() and makes no iovt call
 * after its own unregistration.
 * Any thread; never fails.
 */
void iovt_thread_register(void);

/**
 * @brief Unregisters the calling thread (the reverse of iovt_thread_register()).
 *
 * Also releases the thread's implicit queues (iovt_invalidate_psi() and
 * friends): what they still hold goes to the domains' pending sets, applied
 * by the next iovt_fence(). Call it before the thread exits, outside any
 * engine call and outside any read-side section of the host's own (the
 * queues' destroy waits a grace period: it would wait for itself).
 */
void iovt_thread_unregister(void);

/* ------------------------------------------------------------------------ */
/* Engine                                                                    */

/** @brief Engine configuration for iovt_engine_create(); zero fields take defaults. */
struct iovt_config {
	/** Max page-table entries read by one sync of a domain (hostile
	 * tables): every window a fence syncs for the domain draws on it, so
	 * a fence's walking, and the plan it builds, are bounded by it however
	 * many ranges were pending. 0: default 2^24. A sync that spends it
	 * reports -E2BIG. A window whose walk had the whole budget and still
	 * ran out (a table too large or hostile for one sync) has the rest of
	 * it unmapped, unreadable as a hostile table is, and so has one longer
	 * than the retry budget (2^16 pages); one cut short twice in a row is
	 * synced up to the cut, the rest unmapped and retried; every other
	 * window it cut short or did not reach keeps what it had and is
	 * retried by later fences (retry budget). */
	uint64_t walk_budget;
	/** Max extents one domain's shadow may hold. 0: default 2^22. */
	uint64_t max_extents_per_domain;
	/** Host address width for reserved-bit checks (VT-d HAW), 32..52
	 * (-EINVAL otherwise). 0: 48. */
	unsigned host_addr_width;
	/** Translations cached per domain by iovt_translate() for domains without
	 * a MAP notifier (the engine IOTLB): its capacity, the memory bound.
	 * Allocated at the first miss with 4096 entries (a quarter of a smaller
	 * capacity), it grows 4x at a time under eviction pressure up to this
	 * (live evictions worth a quarter of the table while at least 1% of
	 * the lookups missed: a hot set that hits keeps its table).
	 * 0: 262144 (at most 18 MiB per domain: 64 bytes an entry plus 8 of
	 * sets, allocated with each table; the first table is 288 KiB, whose
	 * entry lines get pages only as they are used); at most 2^24. Rounded up
	 * to a power of two, at least 8 (8-way sets, a power of two of them):
	 * the bound is that power of two. */
	uint64_t iotlb_entries;
	uint64_t reserved[8]; /**< must be 0 (else -EINVAL): room to grow (README "Versioning") */
};

/**
 * @brief Creates an engine.
 *
 * Any thread (registration is needed only for later calls).
 * @param cfg configuration; NULL for defaults. Not kept after the call.
 * @param[out] out the engine, on success; destroy with iovt_engine_destroy().
 * @return 0 or a negative errno.
 * @retval -ENOMEM out of memory.
 * @retval -EINVAL a bad configuration (host_addr_width outside 32..52).
 */
int iovt_engine_create(const struct iovt_config *cfg, struct iovt_engine **out);

/**
 * @brief Destroys the engine.
 *
 * Stops workers and pollers, destroys every queue, detaches every notifier
 * (no map or unmap is called: the host is tearing down the devices too;
 * each sink's destroy() runs), destroys every domain, and waits for every
 * pending call_rcu callback (the host's too): not from a callback, nor
 * inside a read-side section of the host's.
 * No other call on this engine may run concurrently or later;
 * domain references still held (iovt_domain_get()) keep only the domain's
 * memory, and must still be put: iovt_domain_put() is the one call left
 * for them (another reads the freed engine). Guest RAM may be freed after it returns.
 * @param e the engine (registered thread).
 */
void iovt_engine_destroy(struct iovt_engine *e);

/* ------------------------------------------------------------------------ */
/* Guest memory                                                              */

/**
 * @brief Declares guest RAM: [gpa, gpa+size) is backed by host memory at hva.
 *
 * Page tables are read from it; sink mappings target it. Adding RAM maps
 * nothing by itself: guest entries that pointed into the hole are mapped
 * when the guest next invalidates them. The memory must stay valid until
 * iovt_guest_ram_remove() returns 0 for it or the engine is destroyed.
 * Engine lock; safe while fences and translations run.
 * @param e the engine.
 * @param gpa first guest-physical byte, 4 KiB aligned.
 * @param size bytes, 4 KiB multiple, > 0.
 * @param hva host address of gpa: 4 KiB aligned, not NULL, [hva, hva + size)
 *        not wrapping (the engine reads guest tables through it with 8-byte loads
 *        and passes it on in every MAP).
 * @param[out] region_id the region's id (as in iovt_extent::region); may be NULL.
 * @return 0 or a negative errno; each error is counted as bad_argument.
 * @retval -EINVAL size 0, gpa or size not 4 KiB aligned, the range wraps, or hva
 *         is NULL, not 4 KiB aligned or its range wraps.
 * @retval -EEXIST overlaps a declared region.
 * @retval -ENOSPC 256 regions already.
 * @retval -ENOMEM out of memory.
 */
int iovt_guest_ram_add(struct iovt_engine *e, uint64_t gpa, uint64_t size, void *hva,
		       uint32_t *region_id);

/**
 * @brief Removes the region that starts at gpa (memory unplug).
 *
 * Safe while fences, walks and translations run on other threads. When it
 * returns 0:
 *  - no walker and no translation is still reading the region or the host
 *    memory behind it (it waited a grace period), so the host may free it;
 *  - every MAP sink of every domain has unmapped every mapping into it, and
 *    an iovt_translate() that begins now never returns one (counted in
 *    ram_purged); one that began before may have, and the removal waited a
 *    second grace period after its purge, so an answer the host used only
 *    inside its own read-side section (liburcu memb) is no longer in use;
 *  - every UNMAP-only notifier got one UNMAP of its whole domain (it may
 *    cache translations into the region that the engine cannot enumerate).
 *
 * Guest entries that still point there are then holes (leaf_outside_ram)
 * until the guest changes them. Engine lock: serialised with other control
 * calls and iovt_fence(), it may take as long as the sinks' UNMAPs. Not from
 * inside a sink callback or with a queue's fence in progress on this thread.
 * @param e the engine.
 * @param gpa the first byte of the region, as given to iovt_guest_ram_add().
 * @return 0 or a negative errno.
 * @retval -ENOENT no region starts at gpa (counted as bad_argument).
 * @retval -ENOMEM out of memory.
 * @retval -EBUSY a sink (MAP or UNMAP-only) refused an UNMAP, or the purge
 *         ran out of memory collecting the region's extents; the region is
 *         declared again, possibly still mapped, and the host must not free
 *         it (retry later). The MAP sinks asked include those of notifiers
 *         detached or destroyed with an error, for the mappings they refused
 *         to drop then (see iovt_notifier_detach()).
 */
int iovt_guest_ram_remove(struct iovt_engine *e, uint64_t gpa);

/* ------------------------------------------------------------------------ */
/* Domains                                                                   */

/**
 * @brief A domain as the guest's context entry describes it (iovt_vtd.h
 * decodes a legacy context entry into these fields).
 */
struct iovt_domain_config {
	uint16_t did;        /**< VT-d domain id, unique within the engine */
	uint64_t root_gpa;   /**< second-level page-table pointer (4 KiB aligned) */
	unsigned addr_width; /**< 39, 48 or 57 (3, 4 or 5 level tables) */
	bool allow_2m;       /**< the vIOMMU reports 2 MiB second-level pages */
	bool allow_1g;       /**< ... and 1 GiB pages */
};

/**
 * @brief Creates a domain.
 *
 * Engine lock.
 * @param e the engine.
 * @param cfg the domain; not kept after the call.
 * @param[out] out the domain: the creator's reference, consumed by
 *        iovt_domain_destroy().
 * @return 0 or a negative errno (counted as bad_argument, except -ENOMEM).
 * @retval -EINVAL width not 39/48/57, root not 4 KiB aligned.
 * @retval -EEXIST did in use.
 * @retval -ENOMEM out of memory.
 */
int iovt_domain_create(struct iovt_engine *e, const struct iovt_domain_config *cfg,
		       struct iovt_domain **out);

/**
 * @brief Points the domain at a new table root.
 *
 * For when the guest rewrote the context entry and invalidated the context
 * cache. In force before it returns: the domain is synced against the new
 * table now, as a DSI followed by a wait would, so whichever queue the guest
 * then waits on sees it. Engine lock; calls the domain's sinks.
 * @param d the domain (the caller holds a reference).
 * @param root_gpa the new second-level page-table pointer, 4 KiB aligned.
 * @return 0, or the sync's first error (as iovt_fence(), see @ref fence_errors).
 * @retval -EINVAL unaligned root (counted as bad_argument).
 * @retval -ENODEV the domain was destroyed (the caller holds a reference).
 */
int iovt_domain_set_root(struct iovt_domain *d, uint64_t root_gpa);

/**
 * @brief Destroys the domain.
 *
 * Its MAP sink is told to unmap everything it holds (one call where the sink
 * allows it), then every notifier is freed (their handles die here; do not
 * detach them afterwards). Engine lock; safe while fences, drains and
 * translations run on other threads: it waits for no grace period and for
 * no other thread's fence. Invalidations for the DID already posted are
 * dropped at drain (counted in stale_domain, not as errors); new ones are
 * -ENOENT.
 * @param d the domain. Consumes the creator's reference (the pointer from
 *        iovt_domain_create()): the memory goes when the last other
 *        reference is put.
 * @return 0, the first sink error (the domain is destroyed all the same;
 *         a MAP sink that refused to drop mappings is kept, with them, as
 *         after a failed iovt_notifier_detach()), or:
 * @retval -ENODEV it was already destroyed (the caller holds a reference).
 */
int iovt_domain_destroy(struct iovt_domain *d);

/**
 * @brief Finds a domain by DID and takes a reference to it.
 *
 * References: a thread that uses a domain pointer (translate, stats,
 * set_root) while another thread may destroy it must hold its own
 * reference: iovt_domain_lookup() returns one, iovt_domain_get() adds one to
 * a pointer the caller already holds a reference to, iovt_domain_put()
 * drops one. A destroyed domain that is still referenced is "dead":
 * iovt_translate() returns -ENODEV, set_root/attach/destroy -ENODEV, stats
 * stay readable. Lock-free, any registered thread.
 * @param e the engine.
 * @param did the domain id.
 * @return the domain with one more reference (release it with
 *         iovt_domain_put()), or NULL when no live domain has that DID.
 */
struct iovt_domain *iovt_domain_lookup(struct iovt_engine *e, uint16_t did);

/**
 * @brief Adds a reference to a domain the caller already holds a reference to.
 *
 * Lock-free, any registered thread. See iovt_domain_lookup().
 * @param d the domain.
 */
void iovt_domain_get(struct iovt_domain *d);

/**
 * @brief Drops a reference (from iovt_domain_lookup() or iovt_domain_get()).
 *
 * The last reference of a destroyed domain frees it after a grace period.
 * Lock-free, any registered thread; may be called from a sink callback.
 * @param d the domain; NULL is a no-op.
 */
void iovt_domain_put(struct iovt_domain *d);

/**
 * @brief Is the domain still alive (not destroyed)?
 *
 * Lock-free, any thread holding a reference.
 * @param d the domain.
 * @return false once iovt_domain_destroy() has run.
 */
bool iovt_domain_alive(const struct iovt_domain *d);

/* ------------------------------------------------------------------------ */
/* Sinks                                                                     */

/** Sink capability: one UNMAP may cover several whole mappings (and gaps). */
#define IOVT_SINK_MULTI_UNMAP (1u << 0)
/** Sink capability: iovt_sink_ops::unmap_all exists. */
#define IOVT_SINK_UNMAP_ALL (1u << 1)
/** Sink capability: an UNMAP of an empty range fails (-ENOENT, iommufd). The
 * engine takes that answer as "nothing held there": the span leaves its
 * record, counted in errors[IOVT_ERR_SINK_UNMAP] and not retried (a mapping
 * lost behind the engine's back would otherwise fail at every fence). */
#define IOVT_SINK_UNMAP_EMPTY_ERR (1u << 2)
/** Sink capability: a failed UNMAP may have removed part of its range. */
#define IOVT_SINK_PARTIAL_UNMAP (1u << 3)
/** Sink capability: with IOVT_SINK_PARTIAL_UNMAP, the part a failed UNMAP
 * removed is not counted (`*unmapped` 0; iommufd writes no reply on
 * failure, yet removes whole mappings in ascending order up to the first it
 * cannot). The engine then unmaps each extent it records there alone; one
 * already gone answers -ENOENT (set IOVT_SINK_UNMAP_EMPTY_ERR too), and
 * both leave its record. */
#define IOVT_SINK_PARTIAL_UNCOUNTED (1u << 4)
/** Sink capability: a successful UNMAP's `*unmapped` is exactly what it
 * removed, which may be less than what the engine recorded there (VFIO
 * type1 on kernels before 6.3 stops at a mapping another process made and
 * still answers 0 with the size it got to). The engine then keeps the rest
 * in its record, counts a sink_unmap error and retries it (-EBUSY from the
 * fence). The sinks of iovt_vfio.h set it. */
#define IOVT_SINK_EXACT_UNMAPPED (1u << 5)
/** Every IOVT_SINK_* flag this header defines (others: -EINVAL at attach). */
#define IOVT_SINK_CAPS_KNOWN ((1u << 6) - 1)

/** @brief What a sink can do; the engine plans its calls to fit. */
struct iovt_sink_caps {
	uint32_t flags;        /**< IOVT_SINK_* */
	uint32_t max_mappings; /**< 0: unlimited (VFIO type1 default: 65535) */
	uint64_t page_sizes;   /**< bitmap of supported page sizes (bit n: 2^n bytes); 0: 4 KiB.
				 *   A MAP sink's must include 4 KiB (the engine maps runs of
				 *   whole 4 KiB pages; -EINVAL at attach otherwise: a host
				 *   IOMMU of 64 KiB pages cannot shadow a 4 KiB guest) */
};

/**
 * @brief A sink's operations: the host-side IOVA map the engine keeps equal
 * to the guest view.
 *
 * Called from whichever thread applies the batch (a fence caller, a worker,
 * a poller, a control call); calls for one domain never run concurrently.
 * For an UNMAP-only notifier, only unmap() is called, with the raw
 * invalidated range, which may cover nothing that was mapped.
 */
struct iovt_sink_ops {
	/** Creates one mapping (`*m`). Returns 0, or a negative errno: nothing
	 * was mapped. */
	int (*map)(void *ctx, const struct iovt_extent *m);
	/** Removes every mapping inside [iova, iova+size). Returns 0 or a
	 * negative errno; `*unmapped` gets the bytes really removed, also on
	 * failure (a sink without IOVT_SINK_PARTIAL_UNMAP sets 0 on failure). */
	int (*unmap)(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped);
	/** Removes everything (optional, with IOVT_SINK_UNMAP_ALL); `*unmapped`
	 * as unmap(). */
	int (*unmap_all)(void *ctx, uint64_t *unmapped);
	/** Optional: called when the notifier that owns the sink frees it:
	 * from then on the engine never calls the sink again. Until then `ctx`
	 * and what it uses (a container or IOAS fd) must stay valid — after an
	 * iovt_notifier_detach() or iovt_domain_destroy() that returned an
	 * error, that may be later (the sink still held mappings: see
	 * iovt_notifier_detach()). */
	void (*destroy)(void *ctx);
};

/** @brief A sink: operations, their context and capabilities (copied by iovt_notifier_attach()). */
struct iovt_sink {
	const struct iovt_sink_ops *ops; /**< the operations */
	void *ctx;                       /**< passed to every operation */
	struct iovt_sink_caps caps;      /**< what the sink can do */
	const char *name;                /**< for messages; may be NULL */
};

/** @brief The kind of a callback sink event. */
enum iovt_event_type {
	IOVT_EVENT_MAP,  /**< a new mapping: the whole extent */
	IOVT_EVENT_UNMAP /**< remove [iova, iova+size): only those two fields are set */
};

/** @brief One callback sink call (see iovt_callback_sink_init()). */
struct iovt_event {
	enum iovt_event_type type; /**< MAP or UNMAP */
	struct iovt_extent extent; /**< MAP: the mapping; UNMAP: iova and size */
};

/**
 * @brief The host function a callback sink calls for each event.
 * @param arg the `arg` given to iovt_callback_sink_init().
 * @param ev the event; valid during the call only.
 * @return 0, or a negative errno: the call failed and nothing changed (the
 *         engine retries it at later fences).
 */
typedef int (*iovt_event_fn)(void *arg, const struct iovt_event *ev);

/**
 * @brief Fills a callback sink: each sink call becomes one event for `fn`,
 * the shape of QEMU's IOMMU notifiers.
 *
 * A MAP event carries the whole extent; an UNMAP event carries iova and size
 * (it may cover several earlier MAPs, and gaps, when caps->flags has
 * IOVT_SINK_MULTI_UNMAP; otherwise exactly one). `fn` runs on the thread
 * that applies the batch, one call at a time per domain. The notifier that
 * takes the sink frees its context on detach; a sink that was never
 * attached (or whose attach was refused) is freed with
 * `sink->ops->destroy(sink->ctx)`. Any thread.
 * @param[out] out the sink, for iovt_notifier_attach().
 * @param fn the event function (non-NULL).
 * @param arg passed to fn.
 * @param caps capabilities; NULL: multi-unmap, no limit.
 * @return 0 or a negative errno.
 * @retval -EINVAL fn NULL, or caps with IOVT_SINK_UNMAP_ALL or
 *         IOVT_SINK_PARTIAL_UNMAP (a callback has no unmap_all and cannot
 *         report a partial UNMAP).
 * @retval -ENOMEM out of memory.
 */
int iovt_callback_sink_init(struct iovt_sink *out, iovt_event_fn fn, void *arg,
			    const struct iovt_sink_caps *caps);

/* ------------------------------------------------------------------------ */
/* Notifiers                                                                 */

/** Notifier flag: MAP events (only with IOVT_NOTIFY_UNMAP: an accurate shadow). */
#define IOVT_NOTIFY_MAP (1u << 0)
/** Notifier flag: UNMAP events. */
#define IOVT_NOTIFY_UNMAP (1u << 1)
/** Notifier flag: device-IOTLB UNMAPs (raw ranges, no tree): the domain's
 * IOTLB invalidations, delivered as for IOVT_NOTIFY_UNMAP. Device-TLB
 * invalidation descriptors are not taken by the engine: the host forwards
 * them to the device itself. */
#define IOVT_NOTIFY_DEVIOTLB_UNMAP (1u << 2)
/** Notifier flags of an accurate shadow: MAP and UNMAP. */
#define IOVT_NOTIFY_IOTLB_EVENTS (IOVT_NOTIFY_MAP | IOVT_NOTIFY_UNMAP)

/**
 * @brief Attaches a device's notifier to a domain.
 *
 *  - flags IOVT_NOTIFY_IOTLB_EVENTS (MAP|UNMAP): an accurate shadow. The
 *    engine keeps the domain's tree for it and replays the current guest view
 *    into the sink now (walk + MAP), so the sink starts equal to the guest.
 *    One per domain (-EBUSY otherwise): the tree is the record of what that
 *    one sink holds. Two passthrough devices the guest puts in one domain
 *    share one sink: one VFIO container or iommufd IOAS for both (a sink
 *    that forwards to two containers must undo one when the other fails).
 *  - IOVT_NOTIFY_UNMAP or IOVT_NOTIFY_DEVIOTLB_UNMAP alone: unmap() gets the
 *    invalidated ranges with no tree and no walk — coalesced per fence (PSI
 *    blocks merged, a DSI as one range over the whole domain) and clipped
 *    to the domain's width, so a range may cover more than what changed and
 *    nothing that was mapped. Their errors are returned by the fence,
 *    counted in errors[IOVT_ERR_SINK_UNMAP] and not retried (a device
 *    IOTLB has nothing to retry).
 *
 * MAP without UNMAP is -EINVAL, and so is MAP with DEVIOTLB_UNMAP (attach
 * a second, UNMAP-only notifier for the device IOTLB), a caps.flags bit
 * this header does not define, IOVT_SINK_PARTIAL_UNCOUNTED without
 * IOVT_SINK_PARTIAL_UNMAP, and a MAP sink whose caps.page_sizes lacks
 * 4 KiB. Engine lock; safe while fences run; calls the sink (the replay)
 * on this thread.
 *
 * Ownership: `*out` is set exactly when the notifier is attached — on 0 and
 * on a replay error — and then the notifier owns `sink` (copied; its
 * destroy() is called at detach or domain destroy). On -EINVAL, -EBUSY,
 * -ENOMEM, -ENODEV before the attach, `*out` is untouched and the caller
 * still owns the sink and its context: initialise `*out` to NULL to tell the
 * cases apart.
 * @param d the domain.
 * @param flags IOVT_NOTIFY_*.
 * @param sink the sink (copied).
 * @param[out] out the notifier handle, for iovt_notifier_detach().
 * @return 0 or a negative errno.
 * @retval -EINVAL bad flags or sink (counted as bad_argument).
 * @retval -EBUSY the domain already has a MAP notifier (bad_argument).
 * @retval -ENOMEM out of memory.
 * @retval -ENODEV the domain was destroyed.
 * @retval other the replay's first error (see @ref fence_errors): the notifier
 *         is attached and its record is what the sink took; the rest is
 *         retried at later fences.
 */
int iovt_notifier_attach(struct iovt_domain *d, unsigned flags, const struct iovt_sink *sink,
			 struct iovt_notifier **out);

/**
 * @brief Detaches a notifier (device hot-unplug).
 *
 * A MAP notifier's sink is told to unmap all it holds first; then the sink's
 * destroy() runs and the handle is gone. Engine lock; safe while fences and
 * translations run on other threads (no grace-period wait: the tree is freed
 * after one, by call_rcu; a concurrent iovt_translate() answers from the
 * record until it is unpublished, then by walking the guest table, as for
 * a domain without a MAP notifier: never -ENODEV for a live domain).
 * @param n the notifier; invalid after the call. Not after the domain's
 *        destroy (which freed it).
 * @return 0, or the first sink error (detached all the same: the handle is
 *         gone and the domain no longer uses the sink). A MAP sink that
 *         refused to drop some mappings still holds them: the engine keeps
 *         the sink (its destroy() not yet called) with those extents, and an
 *         iovt_guest_ram_remove() of a region they map into asks it again
 *         and fails with -EBUSY while it refuses; once none is left the sink
 *         is destroyed, at the latest with the engine. Keep what the sink
 *         uses valid until its destroy() runs.
 */
int iovt_notifier_detach(struct iovt_notifier *n);

/* ------------------------------------------------------------------------ */
/* Invalidations and fences                                                  */

/** Largest PSI address-mask order (am): a block of 2^52 pages. */
#define IOVT_PSI_MAX_AM 52u

/**
 * @brief Page-selective invalidation, posted to the calling thread's implicit queue.
 *
 * The simple intake: iovt_invalidate_psi(), iovt_invalidate_dsi() and
 * iovt_invalidate_global() post to the calling thread's own implicit queue
 * (created on its first post, released by iovt_thread_unregister(); a thread
 * keeps up to 4, one per engine, and releases the least recently used one
 * when it posts to a fifth), so concurrent callers never share a lock;
 * iovt_fence() then
 * applies everything. The thread must be registered.
 *
 * Invalidates the 2^am-page block aligned on 2^am pages that contains addr.
 * ih (invalidation hint: only leaves changed) is accepted and counted, and
 * does not narrow the work. The invalidation is pending until the next
 * fence; a full queue blocks (see @ref intake).
 *
 * Counting (every intake path the same: queues, these calls, the no-memory
 * fallback; PSI, DSI and global alike): an invalidation is "accepted" when
 * its checks pass at post (else it is -ENOENT/-EINVAL and counts only its
 * error, unknown_domain or bad_invalidation, at post). An accepted one is
 * counted once, when a drainer takes it off the queue (the poster writes no
 * shared counter): invalidations, and psi/dsi/global/ih, in the engine's
 * stats and, for PSI/DSI, the domain's. One whose domain was destroyed
 * between post and drain is counted in the engine's stats as accepted and
 * in stale_domain, and does nothing (the destroy unmapped everything) — it
 * is not an error.
 * @param e the engine.
 * @param did the domain id.
 * @param addr an address in the block.
 * @param am the mask order, 0..IOVT_PSI_MAX_AM.
 * @param ih the invalidation hint.
 * @return 0 or a negative errno.
 * @retval -ENOENT unknown DID (unknown_domain).
 * @retval -EINVAL am too large, addr beyond the domain's width (bad_invalidation).
 */
int iovt_invalidate_psi(struct iovt_engine *e, uint16_t did, uint64_t addr, unsigned am, bool ih);

/**
 * @brief Domain-selective invalidation: everything in the domain.
 *
 * As iovt_invalidate_psi(): the calling thread's implicit queue, pending
 * until the next fence.
 * @param e the engine.
 * @param did the domain id.
 * @return 0 or a negative errno.
 * @retval -ENOENT unknown DID (unknown_domain).
 */
int iovt_invalidate_dsi(struct iovt_engine *e, uint16_t did);

/**
 * @brief Global invalidation: every domain (those that exist when its drain
 * makes its pass over the domains: at the queue's next fence at the latest).
 *
 * As iovt_invalidate_psi(): the calling thread's implicit queue, pending
 * until the next fence.
 * @param e the engine.
 * @return 0 (a global invalidation is never refused).
 */
int iovt_invalidate_global(struct iovt_engine *e);

/**
 * @brief The VT-d invalidation wait, engine-wide.
 *
 * Applies every invalidation posted before this call — on every queue,
 * implicit or not — to every sink, then returns. After it returns the guest
 * may reuse the IOVAs it unmapped. Coalescing happens here: pending ranges
 * of one domain are merged, a DSI subsumes them. Serialised with other
 * iovt_fence() calls (engine lock) — except when the only work is the
 * calling thread's own: every other queue empty and idle, no domain with
 * pending, failed or capped spans, and no control call moving
 * invalidations. Then it applies this thread's invalidations as
 * iovt_queue_fence() would, without the engine lock, concurrently with
 * other such calls. Runs concurrently with queue fences and workers.
 * Registered thread; calls sinks on this thread.
 * @param e the engine.
 * @return 0, or the first error met (a walk error, a sink error; see
 *         @ref fence_errors); the engine's record stays equal to what each
 *         sink holds, and ranges whose calls failed stay pending and are
 *         retried by the next fences (within the retry budget).
 */
int iovt_fence(struct iovt_engine *e);

/**
 * @page fence_errors Fence errors
 *
 * What iovt_fence(), iovt_queue_fence(), iovt_queue_fence_wait(),
 * iovt_domain_set_root() and the replay of iovt_notifier_attach() return.
 * Every span that could not be translated is left unmapped in the sink (what
 * a real IOMMU would fault on), and the first error is returned:
 *
 * | errno | meaning (iovt_stats counter) |
 * |---|---|
 * | -EFAULT | a table entry with reserved bits set (pt_reserved), a large page where the level or domain forbids it (pt_large_page), a table pointer into a hole of guest RAM (pt_outside_ram), a leaf whose target is not guest RAM (leaf_outside_ram: counted once per leaf, the hole skipped in one step) — e.g. after iovt_guest_ram_remove() while the guest still points there |
 * | -ELOOP | a table that is its own ancestor (pt_loop) |
 * | -E2BIG | the walk budget was spent (walk_budget). A window whose walk had the whole budget and still ran out, or one longer than 2^16 pages, has the rest of it unmapped until the guest invalidates it again; one cut short by two syncs in a row is synced up to the cut, the rest unmapped and retried; every other window the budget cut short or did not reach keeps what it had and is retried by later fences (retry budget) |
 * | -ENOSPC | the extent cap was reached (extent_cap): the MAP was not sent. The span waits for room: it is retried (walked again) only when an UNMAP has freed entries, within the retry budget and what is left of the sync's walk budget (a span that budget cut short is retried by the next fences, unless its window had the whole budget or is longer than 2^16 pages: then, as -E2BIG says, the walk's error), and every sync of the domain returns -ENOSPC until it is mapped (it walks nothing meanwhile) |
 * | -ENOMEM | the engine's own memory (no_memory); the span is retried |
 * | other | the sink's own errno (sink_map, sink_unmap); retried at the next fences within the retry budget (an UNMAP-only notifier's: counted in sink_unmap, not retried) |
 *
 * The retry budget: a sync retries at most 2^16 pages of span of earlier
 * failures beyond what it was asked (retry_ranges); the rest waits for the
 * next sync (retry_deferred). A DSI covers them all.
 *
 * Permissions AND across levels (R and W of every entry on the path); a
 * path already denied both is not read further. Walk errors are not
 * retried: the span stays unmapped until the guest invalidates it again
 * (a window the budget cut short after other windows spent part of it, or
 * did not reach, is counted and returned as -E2BIG but retried, not left
 * unmapped: above).
 */

/* ------------------------------------------------------------------------ */
/* Intake queues, workers and polling                                        */

/**
 * @page intake Intake queues, workers and polling
 *
 * The scalable intake. Each producer (a vCPU thread, a DPDK lcore, a VMM
 * I/O thread) owns one queue (iovt_queue_create()) and posts invalidations
 * and fences to it without taking any lock another thread holds: a liburcu
 * wfcqueue of item chunks, or a DPDK rte_ring when libiovt-dpdk is linked.
 * Queues are drained by
 *  - the posting thread itself at a fence, when no one else is draining it
 *    ("inline": a PSI + fence costs no hand-off, the vCPU's common case);
 *  - engine worker threads (iovt_workers_start()), or
 *  - the host's own loop calling iovt_poll() (a DPDK lcore, an I/O thread;
 *    or iovt_dpdk_pollers_start() on DPDK worker lcores).
 *
 * A drainer moves items into per-domain pending sets — so PSIs for one
 * domain from every queue coalesce — and at a fence applies the domains the
 * queue touched since its previous fence.
 *
 * Ordering: one queue's invalidations apply in the order posted; a fence
 * completes only once everything posted before it on that queue has reached
 * every sink. Nothing is ordered across queues except by iovt_fence()
 * (everything, everywhere). A VT-d wait descriptor covers every descriptor
 * before it in the guest's invalidation queue, whichever vCPU's tail write
 * brought it: map one emulated invalidation queue to one iovt queue (the
 * host serialises its processing anyway: a queue takes one producer at a
 * time, not one thread for ever), or complete waits with iovt_fence(). A
 * queue per vCPU is right only when each vCPU's descriptors are waited for
 * by a wait the same vCPU processes, in order (found by review). A full
 * queue blocks the poster (it helps drain,
 * or waits for the drainer); an invalidation is never dropped; each wait
 * is counted (iovt_stats::queue_full_waits).
 */

struct iovt_queue;

/** @brief The kind of an invalidation (iovt_inval::kind). */
enum iovt_inval_kind {
	IOVT_INVAL_PSI = 1, /**< page-selective: a 2^am-page block of one domain */
	IOVT_INVAL_DSI,     /**< domain-selective: all of one domain */
	IOVT_INVAL_GLOBAL   /**< every domain */
};

/** @brief One invalidation, as iovt_invalidate_psi(), _dsi() and _global() take them. 16 bytes. */
struct iovt_inval {
	uint64_t addr;  /**< PSI: an address in the block */
	uint16_t did;   /**< PSI, DSI: the domain id */
	uint8_t kind;   /**< enum iovt_inval_kind */
	uint8_t am;     /**< PSI: mask order, 0..IOVT_PSI_MAX_AM */
	uint8_t ih;     /**< PSI: invalidation hint (counted, does not narrow the work) */
	uint8_t pad[3]; /**< must be 0 (else -EINVAL, bad_invalidation): room to grow */
};

/** @brief The data structure behind a queue (iovt_queue_config::backend). */
enum iovt_queue_backend {
	IOVT_QUEUE_DEFAULT = 0, /**< rte_ring when libiovt-dpdk is linked, else wfcq */
	IOVT_QUEUE_WFCQ,        /**< liburcu wfcqueue of 32-item chunks */
	IOVT_QUEUE_RTE_RING,    /**< DPDK rte_ring (SP/SC, 16-byte elements); -ENOTSUP without libiovt-dpdk */
};

/** @brief Queue configuration for iovt_queue_create(); zero fields take defaults. */
struct iovt_queue_config {
	unsigned capacity;  /**< items, 2..2^24 (else -EINVAL); 0: 4096 */
	unsigned group;     /**< drained by worker / poller number group % n */
	enum iovt_queue_backend backend; /**< the data structure */
	/** Fences never drain on the posting thread: they wake the queue's worker
	 * and sleep until it is done (for hosts whose posting threads must not
	 * run sink calls). Default: drain inline when no one else is. A
	 * hand-off queue needs a drainer — workers, a poller, or iovt_fence()
	 * from another thread — or its fences and a full queue wait forever. */
	bool handoff;
};

/**
 * @brief Creates a queue for one producer thread (see @ref intake).
 *
 * The engine's queue table lock, not the engine lock (a sink callback's
 * first post makes its thread's queue through it).
 * @param e the engine.
 * @param cfg the configuration; NULL for defaults.
 * @param[out] out the queue; destroy with iovt_queue_destroy() (or the engine's destroy).
 * @return 0 or a negative errno (counted as bad_argument, except -ENOMEM).
 * @retval -EINVAL a bad configuration.
 * @retval -ENOTSUP the backend is not in this build.
 * @retval -ENOMEM out of memory.
 */
int iovt_queue_create(struct iovt_engine *e, const struct iovt_queue_config *cfg,
		      struct iovt_queue **out);

/**
 * @brief Destroys a queue.
 *
 * What it still holds is moved to the domains' pending sets (applied by the
 * next fence), fences in it complete (counted in fences_drained). Engine
 * lock; the producer must not post, nor wait on one of its fences,
 * concurrently (a waiter woken by the destroy would read the freed queue).
 * @param q the queue; invalid after the call. NULL: nothing.
 */
void iovt_queue_destroy(struct iovt_queue *q);

/**
 * @brief Posts n invalidations (a burst: one ring operation per up to 32).
 *
 * Only the queue's producer may post: one registered thread at a time (a
 * host that moves production between threads serialises the calls, e.g.
 * under its invalidation-queue lock). Each item is checked first: an
 * unknown DID or a bad PSI is counted and skipped, the others are posted.
 * Blocks while the queue is full.
 * @param q the queue.
 * @param v the invalidations.
 * @param n how many.
 * @return 0 or the first error.
 * @retval -ENOENT an item's DID is unknown (unknown_domain).
 * @retval -EINVAL a bad PSI: am too large, addr beyond the width, or a bad
 *         kind (bad_invalidation).
 */
int iovt_queue_post(struct iovt_queue *q, const struct iovt_inval *v, unsigned n);

/**
 * @brief Posts one PSI: iovt_queue_post() of one item.
 * @param q the queue (producer thread).
 * @param did the domain id.
 * @param addr an address in the block.
 * @param am the mask order, 0..IOVT_PSI_MAX_AM.
 * @param ih the invalidation hint.
 * @return as iovt_queue_post().
 */
int iovt_queue_psi(struct iovt_queue *q, uint16_t did, uint64_t addr, unsigned am, bool ih);

/**
 * @brief Posts one DSI: iovt_queue_post() of one item.
 * @param q the queue (producer thread).
 * @param did the domain id.
 * @return as iovt_queue_post().
 */
int iovt_queue_dsi(struct iovt_queue *q, uint16_t did);

/**
 * @brief The VT-d invalidation wait for this queue.
 *
 * Returns once everything posted before it on q has reached every sink.
 * Drains inline when no one else is draining q (unless
 * iovt_queue_config::handoff), calling sinks on this thread. Producer
 * thread only.
 * @param q the queue.
 * @return 0, or the first error met by the fences of q completed since the
 *         previous fence call returned (walk and sink errors, as
 *         iovt_fence(); see @ref fence_errors).
 */
int iovt_queue_fence(struct iovt_queue *q);

/**
 * @brief Posts a fence and returns its ticket (the first half of iovt_queue_fence()).
 *
 * For hosts that complete the guest's wait descriptor asynchronously: the
 * fence is applied by a worker, a poller, or a later iovt_queue_fence_wait().
 * Producer thread.
 * @param q the queue.
 * @return the fence's ticket, for iovt_queue_fence_done() and iovt_queue_fence_wait().
 */
uint64_t iovt_queue_fence_post(struct iovt_queue *q);

/**
 * @brief Has the fence with this ticket completed?
 *
 * Any thread; lock-free.
 * @param q the queue.
 * @param ticket from iovt_queue_fence_post().
 * @return true once everything posted before the fence has reached every sink.
 */
bool iovt_queue_fence_done(const struct iovt_queue *q, uint64_t ticket);

/**
 * @brief Waits for the fence with this ticket (draining inline when allowed).
 *
 * Producer thread.
 * @param q the queue.
 * @param ticket from iovt_queue_fence_post().
 * @return as iovt_queue_fence().
 * @retval -EINVAL a ticket q has not handed out yet (counted as bad_argument;
 *         waiting for it would never end).
 */
int iovt_queue_fence_wait(struct iovt_queue *q, uint64_t ticket);

/**
 * @brief Starts n engine worker threads.
 *
 * Worker i drains the queues whose group % n == i; a worker sleeps when its
 * queues are quiet and is woken by an asynchronous fence, a hand-off fence
 * or a queue past half full (plain PSIs are left to coalesce until a
 * fence). Workers call sinks. The engine's workers lock, not the engine lock.
 * @param e the engine.
 * @param n 1..64.
 * @return 0 or a negative errno.
 * @retval -EINVAL n out of range.
 * @retval -EBUSY already running, or pollers active.
 * @retval -EAGAIN thread creation failed.
 */
int iovt_workers_start(struct iovt_engine *e, unsigned n);

/**
 * @brief Stops and joins the worker threads (their queues are left as they are).
 *
 * The engine's workers lock (held while it joins them); no-op when none run.
 * @param e the engine.
 */
void iovt_workers_stop(struct iovt_engine *e);

/**
 * @brief Host-driven draining: one pass of a poller.
 *
 * Drains up to `budget` items from the queues whose group % npollers ==
 * poller (skipping any another thread is draining), applying the fences it
 * meets (calling sinks on this thread). Call it from the host's loop (a DPDK
 * lcore, a VMM I/O thread; registered); pollers with distinct `poller` run
 * concurrently. Do not combine with iovt_workers_start() on the same queues.
 * @param e the engine.
 * @param poller this poller's number, 0..npollers-1.
 * @param npollers how many pollers share the queues.
 * @param budget most items to process in this call.
 * @return the items processed (0: nothing to do).
 */
unsigned iovt_poll(struct iovt_engine *e, unsigned poller, unsigned npollers, unsigned budget);

/* ------------------------------------------------------------------------ */
/* Translation (emulated devices)                                            */

/**
 * @brief ATS-style translation of one IOVA, for every domain.
 *
 * For an emulated device, a vhost-user IOTLB miss, an ATS request: finds
 * what covers iova and copies it into `*out`: out->iova <= iova and
 * iova < out->iova + out->size, host-contiguous (out->hva + (iova -
 * out->iova) is iova's host address), one permission, one guest RAM region.
 * The contiguous length available from iova is out->iova + out->size - iova.
 *
 *  - Domain with a MAP notifier: the shadow's extent (exactly what the sink
 *    holds: a whole merged mapping).
 *  - Domain without one: the engine IOTLB. A hit is an RCU read-side
 *    section, one set probe per page size in use, no lock, no allocation. A
 *    miss walks the guest table (bounded: at most 256 entries read, loops
 *    and reserved bits detected) over a 64 KiB window and caches the answer:
 *    a whole 2 MiB / 1 GiB leaf, or the run of 4 KiB leaves from iova's page
 *    that continue it (IOVA- and host-contiguous, same permission, same RAM
 *    region; at most 64 KiB). Capacity iovt_config::iotlb_entries per
 *    domain (the table grows to it under eviction pressure), second-chance
 *    eviction.
 *
 * VT-d rule: after a PSI/DSI/global invalidation and a fence (or queue
 * fence) that waits for it have completed, no translation it invalidated is
 * returned again, from the shadow or the IOTLB; a translate that runs
 * between the invalidation and the end of its wait may return the old or
 * the new translation — never one the guest never had. set_root, destroy
 * and guest RAM removal drop the domain's cached translations before they
 * return. Raw UNMAP ranges still go to UNMAP-only (DEVIOTLB) notifiers: a
 * device that caches what translate returned drops it on that UNMAP.
 *
 * Threads: any registered thread; lock-free (a miss allocates nothing but
 * the domain's first table, or a larger one when eviction pressure grows it,
 * which queues one call_rcu for the old one; a miss whose entry line a
 * concurrent fill is rewriting answers from the guest table). Safe against concurrent fences, set_root, detach and
 * RAM removal; against a concurrent iovt_domain_destroy() when the caller
 * holds a reference (iovt_domain_lookup() / iovt_domain_get()). Errors are
 * never cached; each is counted in iovt_stats but -ENODEV (the domain is
 * being destroyed: no error of the guest's or the host's).
 * With a MAP notifier the answer is the record — what the sink holds —, so
 * while a sink refuses an UNMAP (its fence returned the error; the engine
 * retries it) the refused range still translates, as the device behind that
 * sink can still reach it; a refused MAP translates to -ENOENT until it is
 * mapped.
 * @param d the domain.
 * @param iova the address to translate.
 * @param[out] out the extent that covers iova, on success; its contents are unspecified
 *         after an error (a lookup may have written it before it missed).
 * @return 0 or a negative errno.
 * @retval -ENOENT not mapped, or iova beyond the domain's width (translate_noent).
 * @retval -EFAULT a reserved bit, a large page the domain does not allow, a
 *         table or the leaf outside guest RAM (translate_fault).
 * @retval -ELOOP a table loop (translate_fault).
 * @retval -E2BIG the walk budget was spent (translate_fault).
 * @retval -ENODEV the domain was destroyed.
 */
int iovt_translate(struct iovt_domain *d, uint64_t iova, struct iovt_extent *out);

/**
 * @brief iovt_translate() with the access the device wants checked.
 *
 * A device wanting more than the returned bytes asks again at iova + the
 * return. Threads and lifetime as iovt_translate().
 * @param d the domain.
 * @param iova the first byte wanted.
 * @param len the bytes wanted from iova (> 0).
 * @param access IOVT_PERM_R, IOVT_PERM_W or both.
 * @param[out] out filled as by iovt_translate().
 * @return the bytes available from iova (min(len, contiguous length), >= 1,
 *         at most INT32_MAX), or a negative errno.
 * @retval -EACCES the permission lacks `access` (translate_eacces).
 * @retval -EINVAL len 0 or an access outside R|W (bad_argument).
 * @retval other iovt_translate()'s errors.
 */
int iovt_translate_range(struct iovt_domain *d, uint64_t iova, uint64_t len, unsigned access,
			 struct iovt_extent *out);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */

/** @brief What went wrong, as counted in iovt_stats::errors. */
enum iovt_err_kind {
	IOVT_ERR_UNKNOWN_DOMAIN,   /**< invalidation for a DID not created */
	IOVT_ERR_BAD_INVALIDATION, /**< am too large, address beyond the width */
	IOVT_ERR_PT_RESERVED,      /**< reserved bit set in a table entry */
	IOVT_ERR_PT_LARGE_PAGE,    /**< large page where the level or domain forbids it */
	IOVT_ERR_PT_OUTSIDE_RAM,   /**< table pointer into a hole of guest RAM */
	IOVT_ERR_PT_LOOP,          /**< a table is its own ancestor */
	IOVT_ERR_WALK_BUDGET,      /**< walk budget spent */
	IOVT_ERR_LEAF_OUTSIDE_RAM, /**< a leaf targets a hole of guest RAM */
	IOVT_ERR_EXTENT_CAP,       /**< extent cap reached (engine config or sink max_mappings): MAP not sent */
	IOVT_ERR_SINK_MAP,         /**< a sink refused a MAP */
	IOVT_ERR_SINK_UNMAP,       /**< a sink refused an UNMAP */
	IOVT_ERR_BAD_ARGUMENT,     /**< a call refused its arguments: domain create (width, root,
				    * DID in use), set_root, attach (flags, sink, -EBUSY), guest RAM
				    * add/remove, queue create, a fence wait for a ticket not handed
				    * out, workers start, iovt_dpdk_pollers_start
				    * (-EINVAL, -EBUSY), iovt_translate_range (-EINVAL) */
	IOVT_ERR_NO_MEMORY,        /**< the engine's own memory ran out in a sync (a plan, the record):
				    * nothing of what failed was sent; the span is retried. Also
				    * one per queue or domain that could not be created (-ENOMEM),
				    * one per queue fence
				    * whose list of touched domains could not grow, and one per
				    * iovt_guest_ram_remove() that failed for memory (-ENOMEM,
				    * or -EBUSY when a domain's extents there could not be
				    * listed) */
	IOVT_ERR_KIND_COUNT        /**< the number of kinds */
};
/** Slots of iovt_stats::errors: fixed, room for new kinds. */
#define IOVT_ERR_KIND_SLOTS 32

/** @brief Counters of an engine (iovt_stats_get()) or a domain (iovt_domain_stats_get()). */
struct iovt_stats {
	uint64_t invalidations;   /**< PSI + DSI + global accepted */
	uint64_t psi;             /**< PSIs accepted */
	uint64_t dsi;             /**< DSIs accepted */
	uint64_t global;          /**< global invalidations accepted (engine stats only) */
	uint64_t fences;          /**< fences applied (engine stats only: a fence is a queue's or the engine's, not a domain's) */
	uint64_t ranges_coalesced; /**< ranges walked after coalescing */
	uint64_t ptes_walked;      /**< page-table entries read */
	uint64_t map_calls;        /**< sink map() calls */
	uint64_t unmap_calls;      /**< sink unmap()/unmap_all() calls (MAP notifiers) */
	uint64_t raw_unmap_calls;  /**< unmap() calls to UNMAP-only notifiers */
	uint64_t pages_mapped;     /**< 4 KiB pages mapped through sinks */
	uint64_t pages_unmapped;   /**< 4 KiB pages unmapped through sinks */
	uint64_t extents;          /**< extents in shadows now */
	uint64_t shadow_bytes;     /**< memory the shadows hold now (tables + extents) */
	uint64_t queue_items;      /**< items drained from intake queues (invalidations + fences; engine stats only) */
	uint64_t queue_full_waits; /**< posts that found their queue full and waited (engine stats only) */
	uint64_t fences_inline;    /**< queue fences applied by the posting thread itself (engine stats only) */
	uint64_t fences_drained;   /**< queue fences applied by a worker, a poller, iovt_fence or queue destroy (engine stats only) */
	uint64_t queues;           /**< intake queues now, explicit and implicit (engine stats only) */
	uint64_t ih;               /**< accepted PSIs with the invalidation hint set */
	uint64_t stale_domain;     /**< accepted invalidations whose domain was destroyed before the drain (engine stats only) */
	uint64_t retry_ranges;     /**< failed or capped spans taken up again by a sync */
	uint64_t retry_deferred;   /**< syncs that left failed spans for later (retry budget) */
	uint64_t ram_purged;       /**< extents unmapped because their guest RAM was removed */
	uint64_t iotlb_hits;       /**< translations answered from the engine IOTLB (engine: live domains) */
	uint64_t iotlb_misses;     /**< translations that walked the guest table (IOTLB domains; engine: live domains) */
	uint64_t iotlb_evictions;  /**< live IOTLB entries replaced to make room (engine: live domains) */
	uint64_t iotlb_invalidated;/**< IOTLB entries dropped by invalidations, set_root, RAM removal */
	uint64_t iotlb_entries;    /**< IOTLB entries cached now */
	uint64_t iotlb_bytes;      /**< memory the translation caches hold now: the IOTLBs (each table's
				    * allocation, its sets and its entry lines: lines no fill has used
				    * yet may have no pages behind them) and the shadows' lookup caches
				    * (iovt_translate on a domain with a MAP notifier) */
	uint64_t translate_noent;  /**< translations of an unmapped IOVA (-ENOENT) */
	uint64_t translate_eacces; /**< iovt_translate_range refused for the permission (-EACCES) */
	uint64_t translate_fault;  /**< translations a walk error answered (-EFAULT, -ELOOP, -E2BIG) */
	uint64_t domain_objects;   /**< domains of the whole process not yet freed: live ones, and
				    * destroyed ones still referenced or waiting for a grace period
				    * (a leak of references shows here; engine stats only) */
	uint64_t errors[IOVT_ERR_KIND_SLOTS]; /**< by enum iovt_err_kind; slots past IOVT_ERR_KIND_COUNT are 0 */
	uint64_t iotlb_sets_swept; /**< IOTLB sets visited by invalidation sweeps (engine: live
				    * domains): what invalidation floods cost the IOTLBs; a fence's
				    * ranges cost at most one pass over a table's sets */
	uint64_t pending_widened;  /**< invalidated ranges merged into a neighbour because a domain's
				    * set of pending ranges was full (1024): a flood of disjoint PSIs,
				    * bounded in memory, shows here (each merge syncs a wider window) */
	uint64_t node_pool_bytes;  /**< shadow-tree nodes retired and held by the threads that
				    * retired them, for reuse after their grace period (process-wide,
				    * at most ~2 MiB a thread and 16 MiB in all; kept until that thread's next node
				    * allocations or its exit, also past iovt_engine_destroy(); not in
				    * shadow_bytes; engine stats only) */
	uint64_t iotlb_pool_bytes; /**< always 0 (since the twenty-fifth session): engine IOTLB
				    * entry lines live in their tables (in iotlb_bytes) and are
				    * rewritten in place, so no thread holds retired lines for reuse
				    * any more; kept so that the struct and the storm JSON keep their
				    * layout and keys */
	uint64_t reserved[12]; /**< written 0: room to grow (README "Versioning") */
};

/**
 * @brief Snapshot of the engine's totals.
 *
 * Any thread; racy but each field is read atomically.
 * @param e the engine.
 * @param[out] out the counters.
 */
void iovt_stats_get(struct iovt_engine *e, struct iovt_stats *out);

/**
 * @brief Snapshot of one domain's counters.
 *
 * Any thread holding a reference; readable after the domain's destroy while
 * referenced. Racy but each field is read atomically.
 * @param d the domain.
 * @param[out] out the counters.
 */
void iovt_domain_stats_get(struct iovt_domain *d, struct iovt_stats *out);

/**
 * @brief A short name for an error kind ("pt_loop", ...).
 * @param k the kind.
 * @return a static string; "?" for a value outside the enum.
 */
const char *iovt_err_kind_name(enum iovt_err_kind k);

#ifdef __cplusplus
}
#endif

#endif
