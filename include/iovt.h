/* SPDX-License-Identifier: MIT */
/*
 * iovt — an IOVA tracking engine for virtual IOMMUs (Intel VT-d).
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
 *   guest RAM map ──► domain (DID, table root, width) ──► notifiers ──► sinks
 *   invalidate(PSI/DSI/global) ... fence ──► walk ► diff ► batch ► sink calls
 *   iovt_translate(domain, iova): lock-free, from the shadow tree or the engine IOTLB
 *
 * Conventions
 *  - Every function that can fail returns 0 (or a count) on success and a
 *    negative errno on failure; every rejected input also bumps a counter in
 *    struct iovt_stats.
 *  - Addresses and sizes are bytes; IOVAs and GPAs are 4 KiB aligned where
 *    the text says so.
 *  - Threads: every thread that calls into an engine (translate, post,
 *    fence, poll, control calls) must be registered with
 *    iovt_thread_register() (liburcu memb flavor readers). Other calls note
 *    their own rules; "engine lock" means they serialise on one engine-wide
 *    control mutex and may be called from any thread.
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

#define IOVT_PAGE_SHIFT 12
#define IOVT_PAGE_SIZE (1ull << IOVT_PAGE_SHIFT)

/* Access permissions, as VT-d R/W bits. */
#define IOVT_PERM_R 1u
#define IOVT_PERM_W 2u
#define IOVT_PERM_RW 3u

/*
 * One mapping as a sink holds it: IOVA range -> guest-physical and host
 * address, with permissions. `region` is the guest RAM region the target lies
 * in (a sink mapping never crosses regions).
 */
struct iovt_extent {
	uint64_t iova;   /* first byte, 4 KiB aligned */
	uint64_t size;   /* bytes, 4 KiB multiple */
	uint64_t gpa;    /* guest-physical address of iova */
	uint64_t hva;    /* host virtual address of iova */
	uint32_t perm;   /* IOVT_PERM_* */
	uint32_t region; /* guest RAM region id */
};

struct iovt_engine;
struct iovt_domain;
struct iovt_notifier;

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */

/*
 * Registers / unregisters the calling thread as an RCU reader. Required
 * before any other iovt call on that thread; idempotent per thread.
 * Unregister also releases the thread's implicit queues (iovt_invalidate_*):
 * what they still hold goes to the domains' pending sets, applied by the
 * next iovt_fence. Call it before the thread exits, outside any engine call.
 */
void iovt_thread_register(void);
void iovt_thread_unregister(void);

/* ------------------------------------------------------------------------ */
/* Engine                                                                    */

struct iovt_config {
	/* Max page-table entries read by one walk (hostile tables). 0: default
	 * 1<<24. A walk that spends it reports -E2BIG and unmaps what it could
	 * not see. */
	uint64_t walk_budget;
	/* Max extents one domain's shadow may hold. 0: default 1<<22. */
	uint64_t max_extents_per_domain;
	/* Host address width for reserved-bit checks (VT-d HAW), 32..52
	 * (-EINVAL otherwise). 0: 48. */
	unsigned host_addr_width;
	/* Translations cached per domain by iovt_translate for domains without
	 * a MAP notifier (the engine IOTLB): its capacity, the memory bound.
	 * Allocated at the first miss with 4096 entries (a quarter of a smaller
	 * capacity), it grows 4x at a time under eviction pressure up to this.
	 * 0: 262144 (at most ~19 MiB per domain: 64 bytes an entry plus 9 of
	 * sets; the first table is 37 KiB of sets); at most 1<<24. Rounded up
	 * to a multiple of 7 (7-way sets). */
	uint64_t iotlb_entries;
	uint64_t reserved[8]; /* must be 0 (-EINVAL): room to grow, README "Versioning" */
};

/*
 * Creates an engine. `cfg` may be NULL for defaults.
 * Errors: -ENOMEM, -EINVAL (bad config).
 */
int iovt_engine_create(const struct iovt_config *cfg, struct iovt_engine **out);

/*
 * Destroys the engine: stops workers and pollers, destroys every queue,
 * detaches every notifier (sinks are not called: the host is tearing down
 * the devices too), destroys every domain. No other call on this engine may
 * run concurrently or later; domain references still held (iovt_domain_get)
 * keep only the domain's memory, and must still be put.
 */
void iovt_engine_destroy(struct iovt_engine *e);

/* ------------------------------------------------------------------------ */
/* Guest memory                                                              */

/*
 * Declares guest RAM: [gpa, gpa+size) is backed by host memory at hva.
 * gpa and size 4 KiB aligned. Page tables are read from it; sink mappings
 * target it. Engine lock; safe while fences and translations run. Errors
 * (each counted as bad_argument): -EINVAL, -EEXIST (overlap), -ENOSPC
 * (256 regions), -ENOMEM. *region_id (may be NULL) gets the region's id.
 * Adding RAM maps nothing by itself: guest entries that pointed into the
 * hole are mapped when the guest next invalidates them.
 */
int iovt_guest_ram_add(struct iovt_engine *e, uint64_t gpa, uint64_t size, void *hva,
		       uint32_t *region_id);

/*
 * Removes the region that starts at gpa (memory unplug). Safe while fences,
 * walks and translations run on other threads. When it returns 0:
 *  - no walker and no translation is still reading the region or the host
 *    memory behind it (it waited a grace period), so the host may free it;
 *  - every MAP sink of every domain has unmapped every mapping into it, and
 *    iovt_translate no longer returns one (counted in ram_purged);
 *  - every UNMAP-only notifier got one UNMAP of its whole domain (it may
 *    cache translations into the region that the engine cannot enumerate).
 * Guest entries that still point there are then holes (leaf_outside_ram)
 * until the guest changes them. Engine lock: serialised with other control
 * calls and iovt_fence, it may take as long as the sinks' UNMAPs. Not from
 * inside a sink callback or with a queue's fence in progress on this thread.
 * Errors: -ENOENT (no region starts at gpa; counted as bad_argument),
 * -ENOMEM, -EBUSY: a sink refused an UNMAP; the region is declared again,
 * still mapped by that sink, and the host must not free it (retry later).
 */
int iovt_guest_ram_remove(struct iovt_engine *e, uint64_t gpa);

/* ------------------------------------------------------------------------ */
/* Domains                                                                   */

struct iovt_domain_config {
	uint16_t did;        /* VT-d domain id, unique within the engine */
	uint64_t root_gpa;   /* second-level page-table pointer (4 KiB aligned) */
	unsigned addr_width; /* 39, 48 or 57 (3, 4 or 5 level tables) */
	bool allow_2m;       /* the vIOMMU reports 2 MiB second-level pages */
	bool allow_1g;       /* ... and 1 GiB pages */
};

/*
 * Creates a domain. Engine lock. Errors: -EINVAL (width, alignment),
 * -EEXIST (did in use), -ENOMEM.
 */
int iovt_domain_create(struct iovt_engine *e, const struct iovt_domain_config *cfg,
		       struct iovt_domain **out);

/*
 * Points the domain at a new table root (the guest rewrote the context
 * entry and invalidated the context cache). In force before it returns:
 * the domain is synced against the new table now, as a DSI followed by a
 * wait would, so whichever queue the guest then waits on sees it. Engine
 * lock; calls the domain's sinks. Returns 0 or the sync's first error (as
 * iovt_fence); -EINVAL (unaligned root, counted as bad_argument), -ENODEV
 * (the domain was destroyed; caller holds a reference).
 */
int iovt_domain_set_root(struct iovt_domain *d, uint64_t root_gpa);

/*
 * Destroys the domain: its MAP sink is told to unmap everything it holds
 * (one call where the sink allows it), then every notifier is freed (their
 * handles die here; do not detach them afterwards). Engine lock; safe while
 * fences, drains and translations run on other threads: it waits for no
 * grace period and for no other thread's fence. Consumes the creator's
 * reference (the pointer from iovt_domain_create): the memory goes when the
 * last other reference is put. Invalidations for the DID already posted are
 * dropped at drain (counted in stale_domain, not as errors); new ones are
 * -ENOENT. Returns the first sink error (the domain is destroyed all the
 * same), or -ENODEV if it was already destroyed (caller holds a reference).
 */
int iovt_domain_destroy(struct iovt_domain *d);

/*
 * References. A thread that uses a domain pointer (translate, stats,
 * set_root) while another thread may destroy it must hold its own
 * reference: iovt_domain_lookup returns one, iovt_domain_get adds one to a
 * pointer the caller already holds a reference to, iovt_domain_put drops
 * one. A destroyed domain that is still referenced is "dead": translate
 * returns -ENODEV, set_root/attach/destroy -ENODEV, stats stay readable.
 * Lock-free, any registered thread; put may be called from a sink callback.
 */
struct iovt_domain *iovt_domain_lookup(struct iovt_engine *e, uint16_t did); /* +1 or NULL */
void iovt_domain_get(struct iovt_domain *d);
void iovt_domain_put(struct iovt_domain *d); /* NULL: no-op */
/* False once the domain is destroyed. Lock-free. */
bool iovt_domain_alive(const struct iovt_domain *d);

/* ------------------------------------------------------------------------ */
/* Sinks                                                                     */

/* Sink capability flags. */
#define IOVT_SINK_MULTI_UNMAP (1u << 0)   /* one UNMAP may cover several whole mappings (and gaps) */
#define IOVT_SINK_UNMAP_ALL (1u << 1)     /* unmap_all() exists */
#define IOVT_SINK_UNMAP_EMPTY_ERR (1u << 2) /* UNMAP of an empty range fails (-ENOENT, iommufd) */
#define IOVT_SINK_PARTIAL_UNMAP (1u << 3) /* a failed UNMAP may have removed part of its range */

struct iovt_sink_caps {
	uint32_t flags;        /* IOVT_SINK_* */
	uint32_t max_mappings; /* 0: unlimited (VFIO type1 default: 65535) */
	uint64_t page_sizes;   /* bitmap of supported page sizes (bit n: 2^n bytes); 0: 4 KiB */
};

/*
 * A sink: the host-side IOVA map the engine keeps equal to the guest view.
 * Called from whichever thread applies the batch (the fence caller today);
 * calls for one domain never run concurrently.
 *
 * map():   create one mapping. 0, or a negative errno: nothing was mapped.
 * unmap(): remove every mapping inside [iova, iova+size). 0, or a negative
 *          errno. *unmapped gets the bytes really removed, also on failure
 *          (a sink without IOVT_SINK_PARTIAL_UNMAP sets 0 on failure).
 * unmap_all(): remove everything (optional, IOVT_SINK_UNMAP_ALL).
 * For an UNMAP-only notifier, only unmap() is called, with the raw
 * invalidated range, which may cover nothing that was mapped.
 */
struct iovt_sink_ops {
	int (*map)(void *ctx, const struct iovt_extent *m);
	int (*unmap)(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped);
	int (*unmap_all)(void *ctx, uint64_t *unmapped);
	void (*destroy)(void *ctx); /* optional: called when the sink is freed */
};

struct iovt_sink {
	const struct iovt_sink_ops *ops;
	void *ctx;
	struct iovt_sink_caps caps;
	const char *name;
};

/*
 * The callback sink: each sink call becomes one event for `fn`, the shape of
 * QEMU's IOMMU notifiers. A MAP event carries the whole extent; an UNMAP event
 * carries iova and size (it may cover several earlier MAPs, and gaps, when
 * caps->flags has IOVT_SINK_MULTI_UNMAP; otherwise exactly one). fn returns 0
 * or a negative errno (then the call failed and nothing changed).
 * Fills *out; the notifier that takes it frees its context on detach.
 * caps NULL: multi-unmap, no limit. Errors: -EINVAL (fn NULL, or caps with
 * IOVT_SINK_UNMAP_ALL or IOVT_SINK_PARTIAL_UNMAP: a callback has no
 * unmap_all and cannot report a partial UNMAP), -ENOMEM.
 */
enum iovt_event_type { IOVT_EVENT_MAP, IOVT_EVENT_UNMAP };
struct iovt_event {
	enum iovt_event_type type;
	struct iovt_extent extent;
};
typedef int (*iovt_event_fn)(void *arg, const struct iovt_event *ev);
int iovt_callback_sink_init(struct iovt_sink *out, iovt_event_fn fn, void *arg,
			    const struct iovt_sink_caps *caps);

/* ------------------------------------------------------------------------ */
/* Notifiers                                                                 */

#define IOVT_NOTIFY_MAP (1u << 0)
#define IOVT_NOTIFY_UNMAP (1u << 1)
#define IOVT_NOTIFY_DEVIOTLB_UNMAP (1u << 2)
#define IOVT_NOTIFY_IOTLB_EVENTS (IOVT_NOTIFY_MAP | IOVT_NOTIFY_UNMAP)

/*
 * Attaches a device's notifier to a domain.
 *  - flags IOVT_NOTIFY_IOTLB_EVENTS (MAP|UNMAP): an accurate shadow. The
 *    engine keeps the domain's tree for it and replays the current guest view
 *    into the sink now (walk + MAP), so the sink starts equal to the guest.
 *    One per domain (-EBUSY otherwise): the tree is the record of what that
 *    one sink holds.
 *  - IOVT_NOTIFY_UNMAP or IOVT_NOTIFY_DEVIOTLB_UNMAP alone: unmap() gets the
 *    invalidated ranges with no tree and no walk — coalesced per fence (PSI
 *    blocks merged, a DSI as one range over the whole domain) and clipped
 *    to the domain's width, so a range may cover more than what changed and
 *    nothing that was mapped. Their errors are returned by the fence and
 *    not retried (a device IOTLB has nothing to retry).
 * MAP without UNMAP is -EINVAL. Engine lock; safe while fences run.
 * Ownership: on 0 (and on a replay error, below) the notifier owns `sink`
 * (copied; its destroy() is called at detach or domain destroy). On -EINVAL,
 * -EBUSY, -ENOMEM, -ENODEV the caller still owns the sink and its context.
 * Errors: -EINVAL, -EBUSY, -ENOMEM, -ENODEV (domain destroyed), or the
 * replay's first sink error (then the notifier is attached and its record
 * is what the sink took; the rest is retried at later fences).
 */
int iovt_notifier_attach(struct iovt_domain *d, unsigned flags, const struct iovt_sink *sink,
			 struct iovt_notifier **out);

/*
 * Detaches (device hot-unplug): a MAP notifier's sink is told to unmap all
 * it holds first; then the sink's destroy() runs and the handle is gone.
 * Engine lock; safe while fences and translations run on other threads (no
 * grace-period wait: the tree is freed after one, by call_rcu; a concurrent
 * iovt_translate then returns -ENODEV). Returns the first sink error
 * (detached all the same: the record of what the sink held is dropped).
 */
int iovt_notifier_detach(struct iovt_notifier *n);

/* ------------------------------------------------------------------------ */
/* Invalidations and fences                                                  */

/*
 * The simple intake: these post to the calling thread's own implicit queue
 * (created on its first post, released by iovt_thread_unregister; a thread
 * keeps up to 4, one per engine, and releases the oldest when it posts to a
 * fifth), so concurrent callers never share a lock; iovt_fence() then
 * applies everything. The thread must be registered (iovt_thread_register).
 *
 * Page-selective invalidation: the 2^am-page block aligned on 2^am pages that
 * contains addr. am 0..IOVT_PSI_MAX_AM; ih (invalidation hint: only leaves
 * changed) is accepted and counted, and does not narrow the work.
 * Errors: -ENOENT (unknown DID), -EINVAL (am too large, addr beyond the
 * domain's width). The invalidation is pending until the next fence.
 */
#define IOVT_PSI_MAX_AM 52u
/*
 * Counting (every intake path the same: queues, the legacy calls, the
 * no-memory fallback; PSI, DSI and global alike): an invalidation is
 * "accepted" when its checks pass at post (else it is -ENOENT/-EINVAL and
 * counts only its error, unknown_domain or bad_invalidation, at post). An
 * accepted one is counted once, when a drainer takes it off the queue (the
 * poster writes no shared counter): invalidations, and psi/dsi/global/ih, in
 * the engine's stats and, for PSI/DSI, the domain's. One whose domain was
 * destroyed between post and drain is counted in the engine's stats as
 * accepted and in stale_domain, and does nothing (the destroy unmapped
 * everything) — it is not an error.
 */
int iovt_invalidate_psi(struct iovt_engine *e, uint16_t did, uint64_t addr, unsigned am, bool ih);

/* Domain-selective invalidation: everything in the domain. -ENOENT. */
int iovt_invalidate_dsi(struct iovt_engine *e, uint16_t did);

/* Global invalidation: every domain (those that exist when it is drained). */
int iovt_invalidate_global(struct iovt_engine *e);

/*
 * The VT-d invalidation wait, engine-wide: applies every invalidation posted
 * before this call — on every queue, implicit or not — to every sink, then
 * returns. After it returns the guest may reuse the IOVAs it unmapped.
 * Coalescing happens here: pending ranges of one domain are merged, a DSI
 * subsumes them. Serialised with other iovt_fence calls (engine lock); runs
 * concurrently with queue fences and workers. Registered thread.
 * Returns 0, or the first error met (a walk error, a sink error); the
 * engine's record stays equal to what each sink holds, and ranges whose
 * calls failed stay pending and are retried by the next fences (within the
 * retry budget, see "Fence errors").
 */
int iovt_fence(struct iovt_engine *e);

/*
 * Fence errors (iovt_fence, iovt_queue_fence, iovt_domain_set_root, the
 * replay of iovt_notifier_attach). Every span that could not be translated
 * is left unmapped in the sink (what a real IOMMU would fault on), and the
 * first error is returned:
 *  -EFAULT  a table entry with reserved bits set (pt_reserved), a large page
 *           where the level or domain forbids it (pt_large_page), a table
 *           pointer into a hole of guest RAM (pt_outside_ram), a leaf
 *           whose target is not guest RAM (leaf_outside_ram: counted once
 *           per leaf, the hole skipped in one step) — e.g. after
 *           iovt_guest_ram_remove while the guest still points there.
 *  -ELOOP   a table that is its own ancestor (pt_loop).
 *  -E2BIG   the walk budget was spent (walk_budget); the rest of the span is
 *           unmapped until the guest invalidates it again.
 *  -ENOSPC  the extent cap was reached (extent_cap): the MAP was not sent.
 *           The span waits for room: it is retried (walked again) only when
 *           an UNMAP has freed entries, within the retry budget, and every
 *           sync of the domain returns -ENOSPC until it is mapped (it walks
 *           nothing meanwhile).
 * The retry budget: a sync retries at most 2^16 pages of span of earlier
 * failures beyond what it was asked (retry_ranges); the rest waits for the
 * next sync (retry_deferred). A DSI covers them all.
 *  -ENOMEM  the engine's own memory; the span is retried.
 *  other    the sink's own errno (sink_map, sink_unmap); retried at the
 *           next fences within the retry budget.
 * Permissions AND across levels (R and W of every entry on the path); a
 * path already denied both is not read further. Walk errors are not
 * retried: the span stays unmapped until the guest invalidates it again.
 */

/* ------------------------------------------------------------------------ */
/* Intake queues, workers and polling                                        */
/*
 * The scalable intake. Each producer (a vCPU thread, a DPDK lcore, a VMM
 * I/O thread) owns one queue and posts invalidations and fences to it
 * without taking any lock another thread holds: a liburcu wfcqueue of item
 * chunks, or a DPDK rte_ring when libiovt-dpdk is linked. Queues are drained by
 *  - the posting thread itself at a fence, when no one else is draining it
 *    ("inline": a PSI + fence costs no hand-off, the vCPU's common case);
 *  - engine worker threads (iovt_workers_start), or
 *  - the host's own loop calling iovt_poll() (a DPDK lcore, an I/O thread).
 * A drainer moves items into per-domain pending sets — so PSIs for one
 * domain from every queue coalesce — and at a fence applies the domains the
 * queue touched since its previous fence.
 *
 * Ordering: one queue's invalidations apply in the order posted; a fence
 * completes only once everything posted before it on that queue has reached
 * every sink. Nothing is ordered across queues except by iovt_fence()
 * (everything, everywhere). A full queue blocks the poster (it helps drain,
 * or waits for the drainer); an invalidation is never dropped; each wait
 * is counted (iovt_stats.queue_full_waits).
 */

struct iovt_queue;

enum iovt_inval_kind { IOVT_INVAL_PSI = 1, IOVT_INVAL_DSI, IOVT_INVAL_GLOBAL };

/* One invalidation, as iovt_invalidate_psi/_dsi/_global take them. 16 bytes. */
struct iovt_inval {
	uint64_t addr;  /* PSI: an address in the block */
	uint16_t did;   /* PSI, DSI */
	uint8_t kind;   /* enum iovt_inval_kind */
	uint8_t am;     /* PSI: mask order, 0..IOVT_PSI_MAX_AM */
	uint8_t ih;     /* PSI: invalidation hint (counted, does not narrow the work) */
	uint8_t pad[3];
};

enum iovt_queue_backend {
	IOVT_QUEUE_DEFAULT = 0, /* rte_ring when libiovt-dpdk is linked, else wfcq */
	IOVT_QUEUE_WFCQ,        /* liburcu wfcqueue of 32-item chunks */
	IOVT_QUEUE_RTE_RING,    /* DPDK rte_ring (SP/SC, 16-byte elements); -ENOTSUP without libiovt-dpdk */
};

struct iovt_queue_config {
	unsigned capacity;  /* items; 0: 4096 */
	unsigned group;     /* drained by worker / poller number group % n */
	enum iovt_queue_backend backend;
	/* Fences never drain on the posting thread: they wake the queue's worker
	 * and sleep until it is done (for hosts whose posting threads must not
	 * run sink calls). Default: drain inline when no one else is. A
	 * hand-off queue needs a drainer — workers, a poller, or iovt_fence
	 * from another thread — or its fences and a full queue wait forever. */
	bool handoff;
};

/*
 * Creates a queue for one producer thread. cfg may be NULL. Engine lock.
 * Errors: -EINVAL, -ENOTSUP (backend), -ENOMEM.
 */
int iovt_queue_create(struct iovt_engine *e, const struct iovt_queue_config *cfg,
		      struct iovt_queue **out);

/*
 * Destroys a queue: what it still holds is moved to the domains' pending
 * sets (applied by the next fence), fences in it complete (counted in
 * fences_drained). Engine lock; the producer must not post concurrently.
 */
void iovt_queue_destroy(struct iovt_queue *q);

/*
 * Posts n invalidations (a burst: one ring operation per up to 32). Only the
 * queue's producer thread may post; it must be registered
 * (iovt_thread_register). Each item is checked first: an unknown DID
 * (-ENOENT, unknown_domain) or a bad PSI (-EINVAL, bad_invalidation) is
 * counted and skipped, the others are posted. Returns 0 or the first
 * error. Blocks while the queue is full.
 */
int iovt_queue_post(struct iovt_queue *q, const struct iovt_inval *v, unsigned n);

/* One PSI / one DSI: iovt_queue_post of one item. */
int iovt_queue_psi(struct iovt_queue *q, uint16_t did, uint64_t addr, unsigned am, bool ih);
int iovt_queue_dsi(struct iovt_queue *q, uint16_t did);

/*
 * The VT-d invalidation wait for this queue: returns once everything posted
 * before it on q has reached every sink. Drains inline when no one else is
 * draining q (unless cfg.handoff). Producer thread only.
 * Returns 0, or the first error met by the fences of q completed since the
 * previous fence call returned (walk and sink errors, as iovt_fence).
 */
int iovt_queue_fence(struct iovt_queue *q);

/*
 * The same in two halves, for hosts that complete the guest's wait
 * descriptor asynchronously: post a fence, get its ticket; it is applied by
 * a worker, a poller, or a later iovt_queue_fence_wait. Producer thread.
 */
uint64_t iovt_queue_fence_post(struct iovt_queue *q);
/* Has the fence with this ticket completed? Any thread; lock-free. */
bool iovt_queue_fence_done(const struct iovt_queue *q, uint64_t ticket);
/* Waits for it (draining inline when allowed); result as iovt_queue_fence. */
int iovt_queue_fence_wait(struct iovt_queue *q, uint64_t ticket);

/*
 * Starts n engine worker threads (1..64). Worker i drains the queues whose
 * group % n == i; a worker sleeps when its queues are quiet and is woken by
 * an asynchronous fence, a hand-off fence or a queue past half full (plain
 * PSIs are left to coalesce until a fence). Engine lock. Errors: -EINVAL,
 * -EBUSY (already running, or pollers active), -EAGAIN (thread creation).
 */
int iovt_workers_start(struct iovt_engine *e, unsigned n);

/* Stops and joins the worker threads (their queues are left as they are). Engine lock. */
void iovt_workers_stop(struct iovt_engine *e);

/*
 * Host-driven draining: drains up to `budget` items from the queues whose
 * group % npollers == poller (skipping any another thread is draining),
 * applying fences it meets. Returns the items processed (0: nothing to do).
 * Call it from the host's loop (a DPDK lcore, a VMM I/O thread; registered
 * with iovt_thread_register); pollers with distinct `poller` run
 * concurrently. Do not combine with iovt_workers_start on the same queues.
 */
unsigned iovt_poll(struct iovt_engine *e, unsigned poller, unsigned npollers, unsigned budget);

/* ------------------------------------------------------------------------ */
/* Translation (emulated devices)                                            */

/*
 * ATS-style translation for every domain (an emulated device, a vhost-user
 * IOTLB miss, an ATS request): finds what covers iova and copies it into
 * *out: out->iova <= iova < out->iova + out->size, host-contiguous
 * (out->hva + (iova - out->iova) is iova's host address), one permission,
 * one guest RAM region. The contiguous length available from iova is
 * out->iova + out->size - iova.
 *
 *  - Domain with a MAP notifier: the shadow's extent (exactly what the sink
 *    holds: a whole merged mapping).
 *  - Domain without one: the engine IOTLB (engine/iotlb). A hit is an RCU
 *    read-side section, one set probe per page size in use, no lock, no
 *    allocation. A miss walks the guest table (bounded: at most 256 entries
 *    read, loops and reserved bits detected) over a 64 KiB window and caches
 *    the answer: a whole 2 MiB / 1 GiB leaf, or the run of 4 KiB leaves from
 *    iova's page that continue it (IOVA- and host-contiguous, same
 *    permission, same RAM region; at most 64 KiB). Capacity
 *    iovt_config.iotlb_entries per domain (the table grows to it under
 *    eviction pressure), second-chance eviction.
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
 * Errors, each counted in iovt_stats: -ENOENT (not mapped, or iova beyond
 * the domain's width: translate_noent); -EFAULT (a reserved bit, a large
 * page the domain does not allow, a table or the leaf outside guest RAM),
 * -ELOOP (a table loop), -E2BIG (walk budget), all translate_fault;
 * -ENODEV for a destroyed domain. Errors are never cached.
 *
 * Threads: any registered thread; lock-free (a miss mallocs once and may
 * queue one call_rcu). Safe against concurrent fences, set_root, detach and
 * RAM removal; against a concurrent iovt_domain_destroy when the caller
 * holds a reference (iovt_domain_lookup/get).
 */
int iovt_translate(struct iovt_domain *d, uint64_t iova, struct iovt_extent *out);

/*
 * iovt_translate with the access the device wants checked: `access` is
 * IOVT_PERM_R, IOVT_PERM_W or both, `len` (> 0) the bytes it wants from
 * iova. Returns the bytes available from iova (min(len, contiguous length),
 * >= 1, at most INT32_MAX) with *out filled as iovt_translate; -EACCES when
 * the permission lacks `access` (translate_eacces), -EINVAL for len 0 or an
 * access outside R|W (bad_argument), else iovt_translate's errors. A device
 * wanting more than the returned bytes asks again at iova + the return.
 */
int iovt_translate_range(struct iovt_domain *d, uint64_t iova, uint64_t len, unsigned access,
			 struct iovt_extent *out);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */

enum iovt_err_kind {
	IOVT_ERR_UNKNOWN_DOMAIN,   /* invalidation for a DID not created */
	IOVT_ERR_BAD_INVALIDATION, /* am too large, address beyond the width */
	IOVT_ERR_PT_RESERVED,      /* reserved bit set in a table entry */
	IOVT_ERR_PT_LARGE_PAGE,    /* large page where the level or domain forbids it */
	IOVT_ERR_PT_OUTSIDE_RAM,   /* table pointer into a hole of guest RAM */
	IOVT_ERR_PT_LOOP,          /* a table is its own ancestor */
	IOVT_ERR_WALK_BUDGET,      /* walk budget spent */
	IOVT_ERR_LEAF_OUTSIDE_RAM, /* a leaf targets a hole of guest RAM */
	IOVT_ERR_EXTENT_CAP,       /* extent cap reached (engine config or sink max_mappings): MAP not sent */
	IOVT_ERR_SINK_MAP,         /* a sink refused a MAP */
	IOVT_ERR_SINK_UNMAP,       /* a sink refused an UNMAP */
	IOVT_ERR_BAD_ARGUMENT,     /* a control call refused its arguments: domain create (width, root,
				    * DID in use), set_root, attach (flags, sink, -EBUSY), guest RAM
				    * add/remove, queue create, workers start */
	IOVT_ERR_KIND_COUNT
};
#define IOVT_ERR_KIND_SLOTS 32 /* iovt_stats.errors[]: fixed, room for new kinds */

struct iovt_stats {
	uint64_t invalidations;   /* PSI + DSI + global accepted */
	uint64_t psi, dsi, global;
	uint64_t fences;
	uint64_t ranges_coalesced; /* ranges walked after coalescing */
	uint64_t ptes_walked;      /* page-table entries read */
	uint64_t map_calls;        /* sink map() calls */
	uint64_t unmap_calls;      /* sink unmap()/unmap_all() calls (MAP notifiers) */
	uint64_t raw_unmap_calls;  /* unmap() calls to UNMAP-only notifiers */
	uint64_t pages_mapped;     /* 4 KiB pages mapped / unmapped through sinks */
	uint64_t pages_unmapped;
	uint64_t extents;          /* extents in shadows now */
	uint64_t shadow_bytes;     /* memory the shadows hold now (tables + extents) */
	uint64_t queue_items;      /* items drained from intake queues (invalidations + fences) */
	uint64_t queue_full_waits; /* posts that found their queue full and waited */
	uint64_t fences_inline;    /* queue fences applied by the posting thread itself */
	uint64_t fences_drained;   /* queue fences applied by a worker, a poller, iovt_fence or queue destroy */
	uint64_t queues;           /* intake queues now, explicit and implicit (engine stats only) */
	uint64_t ih;               /* accepted PSIs with the invalidation hint set */
	uint64_t stale_domain;     /* accepted invalidations whose domain was destroyed before the drain */
	uint64_t retry_ranges;     /* failed or capped spans taken up again by a sync */
	uint64_t retry_deferred;   /* syncs that left failed spans for later (retry budget) */
	uint64_t ram_purged;       /* extents unmapped because their guest RAM was removed */
	uint64_t iotlb_hits;       /* translations answered from the engine IOTLB (engine: live domains) */
	uint64_t iotlb_misses;     /* translations that walked the guest table (IOTLB domains; engine: live domains) */
	uint64_t iotlb_evictions;  /* IOTLB entries replaced to make room (engine: live domains) */
	uint64_t iotlb_invalidated;/* IOTLB entries dropped by invalidations, set_root, RAM removal */
	uint64_t iotlb_entries;    /* IOTLB entries cached now */
	uint64_t iotlb_bytes;      /* memory the IOTLBs hold now */
	uint64_t translate_noent;  /* translations of an unmapped IOVA (-ENOENT) */
	uint64_t translate_eacces; /* iovt_translate_range refused for the permission (-EACCES) */
	uint64_t translate_fault;  /* translations a walk error answered (-EFAULT, -ELOOP, -E2BIG) */
	uint64_t domain_objects;   /* domains of the whole process not yet freed: live ones, and
				    * destroyed ones still referenced or waiting for a grace period
				    * (a leak of references shows here; engine stats only) */
	uint64_t errors[IOVT_ERR_KIND_SLOTS]; /* [kind]; slots past IOVT_ERR_KIND_COUNT are 0 */
	uint64_t reserved[16]; /* written 0: room to grow, README "Versioning" */
};

/* Snapshot of the engine's totals. Any thread; racy but each field atomic. */
void iovt_stats_get(struct iovt_engine *e, struct iovt_stats *out);
/* Snapshot of one domain's counters. */
void iovt_domain_stats_get(struct iovt_domain *d, struct iovt_stats *out);
/* A short name for an error kind ("pt_loop", ...). */
const char *iovt_err_kind_name(enum iovt_err_kind k);

#ifdef __cplusplus
}
#endif

#endif
