/* SPDX-License-Identifier: MIT */
/*
 * The IOTLB room: a per-domain cache of guest translations for domains that
 * have no MAP notifier (iovt_translate answers from the shadow when there is
 * one). Readers are lock-free RCU readers that never allocate on a hit; a
 * miss walks the guest table (engine/guest/vtd_walk, bounded) over a small
 * window and caches what it found. Called by the domain room (the sync path
 * drops invalidated ranges) and the composition (translate, set_root,
 * destroy, RAM removal). Calls only engine/guest and engine/common; never
 * intake, never the tree or the sinks.
 *
 * Layout: `nsets` sets of IOTLB_WAYS slots, one cache line each, then one
 * 64-byte entry line per slot (iotlb_hit.h: iotlb_line, way-major). A slot
 * is a word: a state (EMPTY, BUSY, KILLED, LIVE), a 15-bit tag of its key,
 * a referenced bit and the seq its line had when it was published: a probe
 * reads a line only for a LIVE slot whose tag matches, the victim choice
 * reads none. An entry is a run of IOVA (a 4 KiB-started run of at most
 * IOTLB_RUN_MAX bytes, or a whole 2 MiB / 1 GiB leaf) mapping
 * host-contiguously, one permission, one RAM region. It lives in the set of
 * its key: (level, the 4 KiB page a run starts at / the 2 MiB or 1 GiB
 * block of a large leaf; iotlb_set_at puts 64 consecutive keys on
 * consecutive sets from a hashed base, nsets a power of two). A lookup
 * probes one set per level in use: cost independent of the number of
 * entries.
 *
 * Lines are rewritten in place, a seqlock per line (iotlb_hit.h): a fill
 * owns its slot (BUSY) while it writes the line, bumping the line's seq
 * first; a reader that copied a line out checks that its seq is still the
 * one its slot word carried, and misses otherwise. So an entry needs no
 * grace period of its own: no allocation, retirement or recycling on a
 * miss (until the twenty-fifth session each entry was an immutable line
 * behind an RCU pointer, retired in batches of 4096 to call_rcu and reused
 * by the retiring thread: a third of a miss, and a refill landed in a
 * recycled line far from its neighbours, which cost a 64K pool with an
 * invalidator 1.5x its lookups). Only whole tables wait for grace periods.
 *
 * Capacity: c->entries (iovt_config.iotlb_entries, default 262144: 18 MiB
 * of lines and sets in the largest table) bounds the table. The first
 * table, allocated by the first miss, holds iotlb_start_entries() (4096:
 * 288 KiB allocated, its lines' pages touched only as fills use them);
 * when live evictions reach a quarter of its capacity (counted per thread,
 * added in chunks of 64) and at least 1/IOTLB_GROW_MISS_RATIO of the
 * lookups since the last such count missed (else the count starts again:
 * count_eviction), an empty table IOTLB_GROWTH times larger replaces
 * it and the old one is freed after a grace period (table_grow has the
 * VT-d argument: every sweep and fill works on the table it loaded). A hot
 * set that fits the capacity then stays resident: no cliff at 16x the
 * start.
 *
 * VT-d rule (after a PSI/DSI/global and its wait, no invalidated translation
 * is returned again). An invalidation (one writer: the domain's sync_lock
 * holder) bumps c->gen, then empties every slot whose entry overlaps its
 * range in the sets such an entry can live in, and kills every BUSY slot
 * of those keys; it writes nothing else (no per-set sequence, no entry
 * line: re-stamping every entry it kept was most of a sweep, and cost
 * every translating thread a miss on each such line). A filler reads gen
 * BEFORE it walks (its stamp); after its walk it claims a slot (BUSY, a
 * seq_cst CAS) and reads gen again: moved, it gives the slot up (an
 * invalidation began after the stamp, perhaps after a walk that read the
 * old table, and its sweep may have passed the set before the claim: the
 * classic walk/invalidate/insert race); unmoved, every later invalidation
 * bumps gen after the claim, so its sweep finds the slot BUSY and kills it
 * (the fill's publication, a CAS from BUSY to LIVE, then fails) or finds
 * the entry LIVE and drops it. A fill that read the new gen walked after
 * the bump, so after the guest's write (the invalidation was drained after
 * it was posted). Which sets: those an entry overlapping the range can
 * live in, given the levels in use and the longest run cached in the first
 * page's 2 MiB block (t->maxrun, 16 buckets of blocks; a run never crosses
 * its block, so the reach back stops at the block's start too), both read
 * after the invalidation's gen bump; in each, only the slots whose tag is
 * that key's (an overlapping entry of another key is found from its own
 * key). A fill that adds a level or a longer run publishes it after its
 * walk and before its claim: an invalidation that read the old extent
 * bumped gen before that, so after the stamp (the fill gives up) or before
 * it (the fill walked after the guest's write: its entry is right). A
 * sweep needs no memory.
 *
 * Eviction: second chance inside a set (readers set the slot's referenced
 * bit with a CAS only when it is clear); empty slots first, then from a
 * random way the first slot without the bit, clearing the bits it passes;
 * never a slot a fill owns. A retired table (a growth, close) goes to
 * call_rcu whole, its lines with it.
 *
 * Destroy: the owner closes the IOTLB (iotlb_close: c->table becomes a
 * sentinel no fill replaces), then sets *gone; a fill reads *gone after its
 * stamp and fails -ENODEV. A reader that saw *gone finds no table and
 * misses into that check: a hit needs no check of its own.
 *
 * Synchronization table:
 *   function             read side?  locks held on entry     waits for
 *   iotlb_lookup         required    none                    nothing
 *   iotlb_fill           required    none                    nothing (a table's malloc on the first miss and per growth, its call_rcu per growth)
 *   iotlb_invalidate     no          sync_lock (one writer)  nothing (no memory)
 *   iotlb_flush          no          sync_lock               nothing (no memory)
 *   iotlb_close          no          sync_lock, or no sweeper left (teardown)  nothing (call_rcu of the table)
 *   iotlb_free           no          none: no reader left    nothing
 */
#ifndef IOVT_IOTLB_IOTLB_H
#define IOVT_IOTLB_IOTLB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "iovt.h"
#include "guest/guest_ram.h"
#include "guest/vtd_walk.h"

#define IOTLB_WAYS 8
#define IOTLB_RUN_MAX (64ull << 10)   /* longest 4 KiB-started run cached (bytes) */
#define IOTLB_FILL_BUDGET 256         /* entries one fill walk may read at most */
#define IOTLB_DEFAULT_ENTRIES 262144 /* capacity: 18 MiB per domain at the largest table (16 MiB of lines + 2 MiB of sets) */
#define IOTLB_START_ENTRIES 4096      /* the first table (288 KiB: 32 KiB of sets, 256 KiB of lines) */
#define IOTLB_GROWTH 4                /* a growth multiplies the capacity by this */
#define IOTLB_GROW_MISS_RATIO 100     /* no growth while misses are under 1/this of lookups */
#define IOTLB_MAX_ENTRIES (1ull << 24)

struct iotlb_table;

/* Embedded in the domain. The table is allocated by the first miss.
 * `table` (read by every hit) and `gen` (written by every invalidation) are
 * 64 bytes apart, so never in one cache line: an invalidation does not take
 * the line that every hit reads (nor does the domain's sync_lock, after). */
/* Counters kept in per-thread stripes of the table (no shared write per
 * hit or miss: two locked adds per miss into the domain's and the engine's
 * counters were a contended line with two translating threads). */
enum iotlb_counter { IOTLB_HITS, IOTLB_MISSES, IOTLB_EVICTIONS, IOTLB_NCOUNT };

struct iotlb {
	_Atomic(struct iotlb_table *) table;
	uint64_t entries;       /* configured capacity (the largest table) */
	_Atomic uint64_t before[IOTLB_NCOUNT]; /* counted by tables a growth replaced, or with no table */
	_Atomic uint64_t grown;       /* growths */
	char pad_[64 - (3 + IOTLB_NCOUNT) * sizeof(uint64_t)];
	_Atomic uint64_t gen;   /* bumped by every invalidation, table or not */
	_Atomic uint64_t swept; /* sets visited by sweeps (gen's line: the sweep writes it anyway) */
	char pad2_[64 - 2 * sizeof(uint64_t)];
};

/* What a fill did (the IOTLB counts misses and evictions itself). */
struct iotlb_fill_stats {
	uint64_t ptes;          /* entries the walk read */
	bool cached;            /* the answer went into the table */
	bool evicted;           /* it replaced a live entry */
};

void iotlb_init(struct iotlb *c, uint64_t entries); /* 0: default */
void iotlb_free(struct iotlb *c);                   /* no reader can be left */

/* iotlb_lookup (0 and *out on a hit; -ENOENT when nothing cached covers
 * iova) is inline: engine/iotlb/iotlb_hit.h. */

/*
 * Walks the guest table around iova (p: widths, page sizes, budget; first
 * and last are set here; the root is loaded from *root_gpa after the gen
 * stamp, so that a set_root's sweep orders it) and caches the answer. 0 and *out (the
 * cached run that covers iova), -ENOENT (not present), -EFAULT (reserved
 * bits, a forbidden large page, a table or the leaf outside guest RAM),
 * -ELOOP, -E2BIG (walk budget), -ENODEV when *gone is set (read after the
 * stamp; the owner closes the IOTLB before setting it: iotlb_close).
 * Errors are not cached.
 */
int iotlb_fill(struct iotlb *c, const struct guest_ram *ram, const struct vtd_walk_params *p,
	       const uint64_t *root_gpa, const _Atomic bool *gone, uint64_t top, uint64_t iova,
	       struct iovt_extent *out, struct iotlb_fill_stats *st, enum vtd_error *why);

/* Drops every entry overlapping [first, last]; returns the entries dropped. */
uint64_t iotlb_invalidate(struct iotlb *c, uint64_t first, uint64_t last);
uint64_t iotlb_flush(struct iotlb *c);
/*
 * iotlb_invalidate over n spans, span(arg, i, &first, &last) giving the
 * i-th: one sweep of every set instead when the spans' sets add up to the
 * table's (a fence's 1024 pending PSIs of 256 MiB each swept a 262,144-entry
 * table 1024 times: 3.6 s; found by review). Returns the entries dropped.
 */
uint64_t iotlb_invalidate_n(struct iotlb *c, size_t n,
			    void (*span)(const void *arg, size_t i, uint64_t *first, uint64_t *last),
			    const void *arg);
/*
 * Destroy: flushes, then closes the IOTLB for good (the table goes after a
 * grace period; no fill caches again: lookups miss, fills answer uncached).
 * Call it BEFORE publishing the owner's *gone: a reader that sees *gone
 * then finds no table, misses, and its fill returns -ENODEV; so the hit
 * path needs no check of *gone. Returns the entries dropped.
 */
uint64_t iotlb_close(struct iotlb *c);

/* Tests only (tests/translate, translate-service-narrowed-sweep): when set,
 * a fill calls it after its walk, before it publishes anything, so a test
 * can run an invalidation exactly inside the fill's window. NULL otherwise
 * (one load on the miss path). */
extern void (*iotlb_test_walked)(uint64_t iova);
/* Tests only (translate-service-narrowed-sweep's "claimed" cases): called
 * with the slot claimed BUSY and the gen check passed, before the line is
 * written and published: an invalidation run there must kill the claim. */
extern void (*iotlb_test_claimed)(uint64_t iova);

/* Racy sum of the stripes (a growth may lose the counts of threads still
 * on the old table). Misses: fills, errors included; evictions: live
 * entries replaced to make room. */
uint64_t iotlb_counter(struct iotlb *c, enum iotlb_counter k);
uint64_t iotlb_capacity(struct iotlb *c);
/* Sets the sweeps have visited (iovt_stats.iotlb_sets_swept): what an
 * invalidation flood costs the IOTLB, counted rather than timed. */
uint64_t iotlb_sets_swept(struct iotlb *c);
uint64_t iotlb_start_entries(uint64_t entries); /* the first table's size for a capacity */ /* entries the current table holds at most (0: none yet) */
uint64_t iotlb_count(struct iotlb *c);    /* visible entries now (walks the table) */

uint64_t iotlb_memory_bytes(struct iotlb *c);

#endif
