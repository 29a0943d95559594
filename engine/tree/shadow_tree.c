/* SPDX-License-Identifier: MIT */
/*
 * The shadow tree: a B+-tree of extents with copy-on-write internal nodes
 * (contract: shadow_tree.h; design and measurements: ARCHITECTURE.md, "The
 * shadow tree").
 *
 * Nodes. A leaf is a 16-byte header and `cap` (1, 3, 7 or 15) 32-byte
 * extent records: 48, 112, 240 or 496 bytes, each a jemalloc size class.
 * Its order word (header word 0) names the live records in IOVA order: bits
 * 0..3 hold their number n, nibble k (bits 4+4k..7+4k) the slot of the k-th.
 * An internal node holds n <= 31 children and n-1 pivots, in 256 bytes (15
 * slots) while n <= 15, else in 512 (31): child i covers [piv[i-1],
 * piv[i]-1] within the node's own range; the root covers [0, top]. Every
 * extent lies inside the range of its leaf (an insert that would cross a
 * leaf boundary moves the boundary first), so the one extent that can
 * cover an IOVA is in the leaf the IOVA descends to.
 *
 * Reader safety, the three kinds of write:
 *  1. A published internal node is never written again (copy-on-write),
 *     but for its child slots, each replaced by rule 2 (a leaf's copy in
 *     place of the leaf): a reader that loaded its pointer reads fixed
 *     pivots and either child.
 *  2. A child pointer (or the root pointer) is replaced by one release store
 *     of a fully built node; a reader follows either the old node (intact
 *     until a grace period after its retirement) or the new one.
 *  3. A leaf changes in place in two ways only. Insert: the record is
 *     written into slot `used`, which no order word has ever named (slots
 *     are never reused within a leaf), then the new order word is stored
 *     with release: a reader that loaded the old word never reads that slot,
 *     one that loads the new word (acquire) sees the record. Remove: the
 *     new order word without the record is stored with release; the record
 *     itself stays untouched, so a reader holding the old word reads it
 *     whole. When the slots run out the leaf is copied (compacted, grown or
 *     split) and the copy published by rule 2.
 * A retired node is never written again; it joins the tree's batch (one
 * call_rcu per batch). Writers are serialised by the caller.
 */
#include "tree/shadow_tree.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rcu.h"
#include "tree/lookup_cache.h"
#include "tree/node_pool.h"

#define LEAF_MAX 15u /* records per leaf: 15 nibbles + a 4-bit count = one word */
#define FAN 31u      /* children per internal node: 512 bytes */
#define FAN_SMALL 15u /* ... while it has at most this many: 256 bytes */
#define MAX_H 24u    /* levels (a height of 24 needs more than 2^24 leaves) */
#define BATCH_N NPOOL_BATCH /* nodes per retirement batch (node_pool.h) */
#define MAX_SIZE SHADOW_TREE_MAX_SIZE
_Static_assert(2 * MAX_H <= BATCH_N, "the largest batch_room (unlink_empty's, <= 2 * MAX_H) fits a batch");
#define EDGE_ROOM 3u /* leaf_insert's early edge split: a buffer's ~3.7 pieces (strict-dma) */
#define RUN_SPLIT_MAX_BYTES 96u /* bytes an extent under which runs split where they are: the QEMU-style GTree's */

struct rec {
	uint64_t iova, gpa, hva;
	uint32_t npages;      /* size >> 12; size < 2^44 */
	uint32_t perm_region; /* perm in bits 0..7, region in 8..31 */
};
_Static_assert(sizeof(struct rec) == 32, "an extent record is 32 bytes");

struct node {
	uint64_t word; /* leaf: the order word (acquire/release); internal: n */
	uint8_t level; /* 0: leaf; immutable */
	uint8_t cap;   /* leaf: slots; immutable */
	uint8_t used;  /* leaf: slots written so far; writer only */
	uint8_t pad[5];
};

struct leaf {
	struct node h;
	struct rec r[];
};

/* h.cap (immutable): FAN_SMALL or FAN, the smaller when it holds the node's
 * h.word children (inode_cap). cap pivots, then cap child pointers
 * (in_child). A copy of the node's children writes half the bytes while
 * they are few: strict-dma's splits and unlinks copy the root of a tree of
 * a few leaves, and a copy is fresh memory (see ARCHITECTURE.md). */
struct inode {
	struct node h;
	uint64_t piv[]; /* n-1 used; the rest, and always piv[cap-1], UINT64_MAX */
};

static inline size_t inode_bytes(unsigned cap)
{
	return sizeof(struct node) + cap * (sizeof(uint64_t) + sizeof(struct node *));
}
_Static_assert(sizeof(struct node) + FAN * 16 == 512 && sizeof(struct node) + FAN_SMALL * 16 == 256,
	       "internal nodes of 512 and 256 bytes");

/* A word of an internal node read whatever its stored type (child_pos). */
typedef uint64_t __attribute__((may_alias)) u64_alias;

/* The capacity of an internal node of n children. */
static inline unsigned inode_cap(unsigned n)
{
	return n <= FAN_SMALL ? FAN_SMALL : FAN;
}

/* Its child pointers, after its cap pivots. */
static inline struct node **in_child(const struct inode *in)
{
	return (struct node **)(uintptr_t)(in->piv + in->h.cap);
}

/* The writer's descent: nodes, child indexes and ranges from the root. */
struct path {
	unsigned h; /* n[0] the root .. n[h-1] the leaf */
	struct node *n[MAX_H];
	unsigned idx[MAX_H];
	uint64_t lo[MAX_H], hi[MAX_H];
};

/* Lines: the cache's writer counter; then what every lookup reads (the
 * cache's table and epoch, root, top: written rarely); then what the writer
 * updates on every operation (a reader's line would otherwise move to the
 * writer's core at each insert). */
struct shadow_tree {
	struct lookup_cache lc; /* shadow_tree_translate's cache (its two lines) */
	struct node *root; /* NULL: no extent (never any, or the last one went) */
	uint64_t top;      /* last valid IOVA */
	_Alignas(64) uint64_t count, mem; /* written by the writer, read racily (relaxed) */
	struct npool_batch *batch; /* retired nodes not yet handed to call_rcu */
	struct rcu_head rcu; /* shadow_tree_retire */
	/* The writer's last descent (descend_w), valid while no node was
	 * published since: a pivot or a child pointer changes only by
	 * publishing a node, so every key in the leaf's range descends along
	 * the same path. And the descent before it that ended in another
	 * leaf (alt), under the same rule: a strict guest maps at one end of
	 * its buffers' window and unmaps at the other, and each PSI's first
	 * descent missed the one finger (strict-dma: 15K of 20K). The two
	 * swap by pointer. Writer only. */
	bool finger_ok, alt_ok;
	struct path *finger, *alt; /* paths[0] and paths[1], in some order */
	struct path paths[2];
	/* The leaf and position of the last in-place insert (writer only; a
	 * hint, never trusted: it picks a run's split point, and the next
	 * insert's position when two compares confirm it). */
	const struct leaf *seq_leaf;
	unsigned seq_k;
};

/* Nodes come from the engine's jemalloc through its default arenas and the
 * thread cache's fast path (alloc.h). The once: g_usable below. */
static pthread_once_t g_sizes_once = PTHREAD_ONCE_INIT;

/* What the allocator makes of each node size (leaves by capacity, then an
 * internal node): asked once, not per allocation and retirement (nallocx,
 * ~37 instructions, was most of a leaf's accounting). */
static size_t g_usable[LEAF_MAX + 3];
_Static_assert(LEAF_MAX + 3 == NPOOL_CLASSES, "a node pool class per node size");

static inline size_t leaf_bytes(unsigned cap);

/* And the node pool's classes: the same sizes, the same indexes. */
static void sizes_init(void)
{
	size_t bytes[NPOOL_CLASSES];
	for (unsigned cap = 0; cap <= LEAF_MAX; cap++)
		bytes[cap] = leaf_bytes(cap);
	bytes[LEAF_MAX + 1] = inode_bytes(FAN);
	bytes[LEAF_MAX + 2] = inode_bytes(FAN_SMALL);
	for (unsigned c = 0; c < NPOOL_CLASSES; c++)
		g_usable[c] = iovt_alloc_usable(bytes[c]);
	npool_init(bytes);
}

/* The size class of a node of `bytes` (a leaf_bytes or an inode's): its
 * g_usable index and its node pool class. */
static inline unsigned size_class(size_t bytes)
{
	if (bytes == inode_bytes(FAN)) /* no leaf size is either */
		return LEAF_MAX + 1;
	if (bytes == inode_bytes(FAN_SMALL))
		return LEAF_MAX + 2;
	return (unsigned)((bytes - sizeof(struct node)) / sizeof(struct rec));
}

/* The usable size of a node of `bytes`. */
static inline size_t usable(size_t bytes)
{
	return g_usable[size_class(bytes)];
}

/* Identity order words: records 0..m-1 in slots 0..m-1 (m <= 15): the
 * nibbles 0..14 in positions 1..15, cut to m, and the count. A shift and a
 * mask, not a loop per slot (every copied or split leaf takes one). */
static inline uint64_t ident_word(unsigned m)
{
	const uint64_t all = 0xEDCBA9876543210ull << 4;
	return (m < LEAF_MAX ? all & ((1ull << (4 + 4 * m)) - 1) : all) | m;
}

static inline unsigned ow_n(uint64_t w)
{
	return (unsigned)(w & 15);
}

static inline unsigned ow_at(uint64_t w, unsigned k)
{
	return (unsigned)(w >> (4 + 4 * k)) & 15;
}

/* w with `slot` inserted at position k (n < 15, k <= n). */
static inline uint64_t ow_insert(uint64_t w, unsigned k, unsigned slot)
{
	unsigned sh = 4 + 4 * k; /* <= 60 */
	uint64_t lo = w & ((1ull << sh) - 1) & ~15ull;
	uint64_t hi = sh + 4 < 64 ? (w >> sh) << (sh + 4) : 0;
	return lo | hi | (uint64_t)slot << sh | (ow_n(w) + 1);
}

/* w without positions k..k+m-1. */
static inline uint64_t ow_remove(uint64_t w, unsigned k, unsigned m)
{
	unsigned sh = 4 + 4 * k, sh2 = 4 + 4 * (k + m); /* sh2 <= 64 */
	uint64_t lo = w & ((1ull << sh) - 1) & ~15ull;
	uint64_t hi = sh2 < 64 ? (w >> sh2) << sh : 0;
	return lo | hi | (ow_n(w) - m);
}

static inline uint64_t rec_last(const struct rec *r)
{
	return r->iova + ((uint64_t)r->npages << 12) - 1;
}

static void rec_copy(const struct rec *r, struct iovt_extent *out)
{
	out->iova = r->iova;
	out->size = (uint64_t)r->npages << 12;
	out->gpa = r->gpa;
	out->hva = r->hva;
	out->perm = r->perm_region & 0xff;
	out->region = r->perm_region >> 8;
}

static inline size_t leaf_bytes(unsigned cap)
{
	return sizeof(struct node) + cap * sizeof(struct rec);
}

static inline size_t node_bytes(const struct node *x)
{
	return x->level ? inode_bytes(x->cap) : leaf_bytes(x->cap);
}

/*
 * Searches are branch-free: a lookup's path through the keys is random, and
 * a mispredicted branch per step cost more than the loads (first version,
 * branchy binary searches: 57 ns a lookup at 1K extents; these: ~32 ns).
 */

/* Whether the record at position k of leaf l (order word w, n >= 1 live) is
 * <= key; a position past the last counts as > key (its load reads the last
 * record: live, inside the leaf). */
static inline __attribute__((always_inline)) bool leaf_le(const struct leaf *l, uint64_t w,
							unsigned n, unsigned k, uint64_t key)
{
	unsigned at = k < n ? k : n - 1;
	return (k < n) & (l->r[ow_at(w, at)].iova <= key);
}

/* One step of a leaf's search (leaf_pos; leaf_pos_w's of up to four
 * records): the count b + step when the record at that count is <= key (a
 * select). */
static inline __attribute__((always_inline)) unsigned leaf_step(const struct leaf *l, uint64_t w,
								    unsigned n, unsigned b, unsigned step,
								    uint64_t key)
{
	unsigned j = b + step;
	return leaf_le(l, w, n, j - 1, key) ? j : b;
}

/*
 * Number of records of leaf l (order word w) whose iova <= key: four fixed
 * steps (8, 4, 2, 1), each reading the record at the candidate count,
 * clamped into the leaf. A loop halving the live count instead ended after
 * a number of steps that depends on the leaf, a mispredicted exit per
 * lookup (29 -> 26 ns at 1K extents, 65 -> 52 ns at 64K).
 */
static inline unsigned leaf_pos(const struct leaf *l, uint64_t w, uint64_t key)
{
	unsigned n = ow_n(w), b = 0;
	if (!n)
		return 0;
	for (unsigned step = 8; step; step >>= 1)
		b = leaf_step(l, w, n, b, step, key);
	return b;
}

/*
 * leaf_pos for the tree's writer: the same count in two rounds of three
 * independent compares instead of a chain of four. The records at
 * positions 3, 7 and 11 pick a block of four (every record before it is
 * <= key, its fourth is not), then the block's first three are counted. A
 * position past the last record counts as > key; its load reads the last
 * record instead (live, inside the leaf). The writer's leaf is mostly in
 * cache (its finger, its last insert), where the chain's latency is the
 * cost: tree/insert_remove/1024 95 -> 88 ns, /65536 199 -> 180, the
 * insert+remove pairs 4-9% (3 alternating rounds), strict-dma's own CPU
 * -3% (6 rounds). A reader's leaf is mostly not, and six lines asked for
 * instead of four cost more than the chain (tree/lookup/1024 25 -> 31 ns):
 * readers keep leaf_pos. So does a leaf of up to four records (a strict
 * guest's one-page fence), whose chain is that short.
 */
static inline __attribute__((always_inline)) unsigned leaf_pos_w(const struct leaf *l, uint64_t w,
								   uint64_t key)
{
	unsigned n = ow_n(w);
	if (n <= 4) {
		/* leaf_pos's chain without its first step (8: never within
		 * 4 records), written out: a strict guest's one-page fence
		 * searches such a leaf three times (lookup, insert or remove,
		 * tidy): fence/map_unmap_1 1,646 -> 1,606 instructions a step
		 * (callgrind). Readers keep leaf_pos's loop: unrolled there
		 * (#pragma GCC unroll), gcc made its selects branches and
		 * tree/shadow_lookup/1024 went 37 -> 64 ns. */
		if (!n)
			return 0;
		unsigned b = leaf_step(l, w, n, 0, 4, key);
		b = leaf_step(l, w, n, b, 2, key);
		return leaf_step(l, w, n, b, 1, key);
	}
	unsigned b = 4 * (leaf_le(l, w, n, 3, key) + leaf_le(l, w, n, 7, key) +
			  leaf_le(l, w, n, 11, key));
	return b + leaf_le(l, w, n, b, key) + leaf_le(l, w, n, b + 1, key) +
	       leaf_le(l, w, n, b + 2, key);
}

/* The position in leaf l (order word w) of the first record that ends at or
 * after key: the one covering key, else the first after it. */
static inline __attribute__((always_inline)) unsigned leaf_from(const struct leaf *l, uint64_t w,
								  uint64_t key)
{
	unsigned k = leaf_pos_w(l, w, key);
	return k && rec_last(&l->r[ow_at(w, k - 1)]) >= key ? k - 1 : k;
}

/*
 * The child of `in` whose range holds key: the number of pivots <= key.
 * Unused pivots hold UINT64_MAX (inode_fill). Two rounds of independent
 * compares instead of a chain of five: the three block fences (pivots 7,
 * 15, 23) pick a block of eight, then its eight pivots are counted. A small
 * node has two blocks (its piv[14] is the pad): its words 15 and 23 are
 * child pointers, read inside the node and not counted (a select, not a
 * branch: a tree's levels may differ in size).
 */
static inline unsigned child_pos(const struct inode *in, uint64_t key)
{
	/* relaxed loads: in a small node these are child pointers, which the
	 * writer may replace (publish) while a reader is here; read as words
	 * through a may_alias type (they are stored as pointers) */
	const u64_alias *w = (const u64_alias *)in->piv;
	unsigned hi = (__atomic_load_n(&w[15], __ATOMIC_RELAXED) <= key) +
		      (__atomic_load_n(&w[23], __ATOMIC_RELAXED) <= key);
	unsigned blk = (in->piv[7] <= key) + (in->h.cap == FAN ? hi : 0);
	const uint64_t *p = in->piv + 8 * blk;
	unsigned c = 8 * blk;
	/* the block's pivots before its fence (the last block: piv[24..30] or
	 * piv[8..14], the last one the UINT64_MAX pad, so no load leaves the
	 * node) */
	for (unsigned i = 0; i < 7; i++)
		c += p[i] <= key;
	return c;
}

static inline void publish(struct shadow_tree *t, struct node **slot, struct node *x)
{
	t->finger_ok = t->alt_ok = false; /* the shape changes: the writer's fingers are stale */
	/* A release store: the node was built before it; readers load the
	 * pointer with iovt_rcu_dereference (a dependent load). Not liburcu's
	 * rcu_assign_pointer, whose x86 form adds an sfence. */
	__atomic_store_n(slot, x, __ATOMIC_RELEASE);
}

static void stat_add(uint64_t *v, int64_t d)
{
	__atomic_store_n(v, *v + (uint64_t)d, __ATOMIC_RELAXED); /* one writer */
}

/* ------------------------------------------------------------------------ */
/* Allocation and retirement                                                 */

/* A node this thread retired and got back after its grace period, else a
 * new one (node_pool.h). */
static struct node *node_alloc(struct shadow_tree *t, size_t bytes)
{
	struct node *x = npool_get(size_class(bytes));
	if (!x)
		x = iovt_alloc(0, bytes);
	if (x)
		stat_add(&t->mem, (int64_t)usable(bytes));
	return x;
}

static struct leaf *leaf_alloc(struct shadow_tree *t, unsigned cap)
{
	struct leaf *l = (struct leaf *)node_alloc(t, leaf_bytes(cap));
	if (l) {
		memset(&l->h, 0, sizeof(l->h));
		l->h.cap = (uint8_t)cap;
	}
	return l;
}

static void node_free(struct node *x)
{
	iovt_free(0, x, node_bytes(x));
}

/* Frees a node no reader ever saw (allocated for an update that failed). */
static void node_unused(struct shadow_tree *t, struct node *x, size_t bytes)
{
	stat_add(&t->mem, -(int64_t)usable(bytes));
	iovt_free(0, x, bytes);
}

void shadow_tree_flush(struct shadow_tree *t)
{
	struct npool_batch *b = t->batch;
	if (!b || !b->n)
		return;
	t->batch = NULL;
	npool_batch_flush(b);
}

/*
 * Makes room for k retirements in the current batch, before an update
 * changes anything: a full batch is flushed (the automatic flush) and a new
 * one allocated. -ENOMEM when it cannot be: the update is then not made.
 */
static int batch_room(struct shadow_tree *t, unsigned k)
{
	if (t->batch && t->batch->n + k <= BATCH_N)
		return 0;
	shadow_tree_flush(t);
	if (t->batch) /* empty and still too small: cannot happen, k <= BATCH_N */
		return 0;
	struct npool_batch *b = npool_batch_new();
	if (!b)
		return -ENOMEM;
	t->batch = b;
	return 0;
}

/* x was unlinked (readers may still hold it): reused or freed after a grace period. */
static void retire(struct shadow_tree *t, struct node *x)
{
	const size_t bytes = node_bytes(x);
	stat_add(&t->mem, -(int64_t)usable(bytes));
	npool_batch_add(t->batch, x, size_class(bytes)); /* room reserved by batch_room */
}

uint64_t shadow_tree_pool_bytes(void)
{
	return npool_held_bytes();
}

/* ------------------------------------------------------------------------ */
/* Create / destroy                                                          */

struct shadow_tree *shadow_tree_create(unsigned addr_width)
{
	if (addr_width < 21 || addr_width > 63)
		return NULL; /* below 2^63: no key is UINT64_MAX, which child_pos would count past the pads */
	pthread_once(&g_sizes_once, sizes_init);
	struct shadow_tree *t = iovt_aligned_alloc(64, sizeof(*t)); /* freed with free() */
	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->top = (1ull << addr_width) - 1;
	t->finger = &t->paths[0];
	t->alt = &t->paths[1];
	return t;
}

static void free_subtree(struct node *x)
{
	if (x->level) {
		struct inode *in = (struct inode *)x;
		for (unsigned i = 0; i < in->h.word; i++)
			free_subtree(in_child(in)[i]);
	}
	node_free(x);
}

/* Frees everything; no reader can still be inside (a grace period passed
 * since the last unlink, which is also the last retirement). */
static void tree_free(struct shadow_tree *t)
{
	if (t->root)
		free_subtree(t->root);
	lc_destroy(&t->lc);
	if (t->batch)
		npool_batch_free(t->batch);
	free(t);
}

void shadow_tree_destroy(struct shadow_tree *t)
{
	if (!t)
		return;
	iovt_synchronize_rcu();
	tree_free(t);
}

static void tree_free_cb(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	tree_free(caa_container_of(h, struct shadow_tree, rcu));
}

void shadow_tree_retire(struct shadow_tree *t)
{
	if (t)
		iovt_call_rcu(&t->rcu, tree_free_cb);
}

/* ------------------------------------------------------------------------ */
/* Read side                                                                 */

/* The record of leaf l (order word w) covering iova, or NULL. `writer` (a
 * constant): the tree's writer's search (leaf_pos_w). */
static inline __attribute__((always_inline)) const struct rec *
leaf_cover(const struct leaf *l, uint64_t w, uint64_t iova, const bool writer)
{
	unsigned k = writer ? leaf_pos_w(l, w, iova) : leaf_pos(l, w, iova);
	if (!k)
		return NULL;
	const struct rec *r = &l->r[ow_at(w, k - 1)];
	if (iova - r->iova >= (uint64_t)r->npages << 12)
		return NULL;
	return r;
}

/* The record covering iova, or NULL. Read side (or the writer). */
static const struct rec *find_rec(const struct shadow_tree *t, uint64_t iova)
{
	if (iova > t->top)
		return NULL;
	const struct node *x = iovt_rcu_dereference(t->root);
	if (!x)
		return NULL;
	while (x->level) {
		const struct inode *in = (const struct inode *)x;
		x = iovt_rcu_dereference(in_child(in)[child_pos(in, iova)]);
	}
	const struct leaf *l = (const struct leaf *)x;
	return leaf_cover(l, __atomic_load_n(&l->h.word, __ATOMIC_ACQUIRE), iova, false);
}

bool shadow_tree_lookup(const struct shadow_tree *t, uint64_t iova, struct iovt_extent *out)
{
	const struct rec *r = find_rec(t, iova);
	if (r && out)
		rec_copy(r, out);
	return r != NULL;
}

/*
 * When removals kill cached answers faster than readers come back (a
 * writer churning the tree: each probe then finds its slot dead and its
 * line cold, and the fill dirties another: 3.6 vs 7.6 M lookups/s at 64K
 * extents with a 1M ops/s writer), the cache costs more than the descent
 * it saves. Each thread counts the dead slots it meets over windows of
 * LC_WINDOW probes; a window with half or more dead makes it descend
 * directly for the next LC_BYPASS lookups, doubled for each such window in
 * a row up to 32x (the probe windows that remain keep filling; one good
 * window ends it). Slots never filled do not count: a cold cache is
 * warming (counting them kept a fresh 64K-extent cache cold for millions
 * of lookups). Per thread, for the last tree it read.
 */
#define LC_WINDOW 32u
#define LC_BYPASS (7u * LC_WINDOW)
#define LC_BYPASS_MAX_SHIFT 5u /* at most 32x: one probe window in 225 */

/* Initial-exec, as every thread-local of the library (meson.build):
 * no __tls_get_addr call per translate in libiovt.so. */
static __thread struct {
	const struct shadow_tree *t;
	unsigned probes, dead, skip, bad;
} tl_lc;

bool shadow_tree_test_no_bypass;

bool shadow_tree_translate(struct shadow_tree *t, uint64_t iova, struct iovt_extent *out,
			   uint64_t max_slots)
{
	struct iovt_extent tmp;
	if (!out)
		out = &tmp;
	const struct node *root = iovt_rcu_dereference(t->root);
	/* A tree of one or two levels answers in about one cache probe's
	 * time: no cache (and no table memory) for small domains. */
	if (!root || root->level < 2 || !lc_on(&t->lc))
		return shadow_tree_lookup(t, iova, out);
	if (__builtin_expect(tl_lc.t != t, 0)) {
		tl_lc.t = t;
		tl_lc.probes = tl_lc.dead = tl_lc.skip = tl_lc.bad = 0;
	}
	if (tl_lc.skip && !shadow_tree_test_no_bypass) {
		tl_lc.skip--;
		return shadow_tree_lookup(t, iova, out);
	}
	int got = lc_get(&t->lc, iova, out);
	tl_lc.dead += got < 0;
	if (++tl_lc.probes == LC_WINDOW) {
		if (tl_lc.dead >= LC_WINDOW / 2) {
			/* each bad window in a row doubles the next bypass */
			tl_lc.skip = LC_BYPASS << tl_lc.bad;
			tl_lc.bad += tl_lc.bad < LC_BYPASS_MAX_SHIFT;
		} else {
			tl_lc.bad = 0;
		}
		tl_lc.probes = tl_lc.dead = 0;
	}
	if (got > 0)
		return true;
	struct lc_ticket k = lc_ticket(&t->lc); /* before the descent */
	const struct rec *r = find_rec(t, iova);
	if (!r)
		return false; /* holes are not cached */
	rec_copy(r, out);
	lc_put(&t->lc, k, iova, out, __atomic_load_n(&t->count, __ATOMIC_RELAXED), max_slots);
	return true;
}

uint64_t shadow_tree_cache_bytes(struct shadow_tree *t)
{
	return lc_memory_bytes(&t->lc);
}

static inline __attribute__((always_inline)) const struct path *descend_w(struct shadow_tree *t,
									   uint64_t key);

/* The leaf whose range holds cur, and in *hi that range's upper bound; NULL:
 * the tree is empty. `writer` (a constant) descends through the finger. */
static inline __attribute__((always_inline)) const struct leaf *
leaf_at(const struct shadow_tree *t, uint64_t cur, uint64_t *hi, const bool writer)
{
	const struct node *x = iovt_rcu_dereference(t->root);
	if (!x)
		return NULL;
	*hi = t->top;
	if (writer) {
		/* the caller is the writer: t is its own (shadow_tree_iterate_w) */
		const struct path *p = descend_w((struct shadow_tree *)t, cur);
		x = p->n[p->h - 1];
		*hi = p->hi[p->h - 1];
	}
	while (x->level) {
		const struct inode *in = (const struct inode *)x;
		unsigned i = child_pos(in, cur);
		if (i + 1 < in->h.word)
			*hi = in->piv[i] - 1; /* >= cur: piv[i] > cur */
		x = iovt_rcu_dereference(in_child(in)[i]);
	}
	return (const struct leaf *)x;
}

/*
 * Leaf by leaf: descend to the leaf holding cur, visit its records that
 * overlap [cur, last], go on at the leaf's upper bound + 1. Each descent may
 * see a newer tree than the previous one; `prev` (the last IOVA visited)
 * keeps the visit ascending and each extent once. An extent present during
 * the whole call lies inside the range of its leaf in every version, so the
 * descent for any cur in that range finds it. Both iterates: `writer` (a
 * constant) descends through the writer's finger (shadow_tree_iterate_w).
 */
static inline __attribute__((always_inline)) int
iterate(const struct shadow_tree *t, uint64_t first, uint64_t last, shadow_visit_fn fn, void *arg,
	const bool writer)
{
	if (first > t->top || first > last)
		return 0;
	if (last > t->top)
		last = t->top;
	uint64_t cur = first, prev = 0, hi;
	bool any = false;
	for (;;) {
		const struct leaf *l = leaf_at(t, cur, &hi, writer);
		if (!l)
			return 0;
		uint64_t w = __atomic_load_n(&l->h.word, __ATOMIC_ACQUIRE);
		for (unsigned k = 0, n = ow_n(w); k < n; k++) {
			const struct rec *r = &l->r[ow_at(w, k)];
			if (r->iova > last)
				break;
			if (rec_last(r) < cur || (any && r->iova <= prev))
				continue;
			any = true;
			prev = r->iova;
			struct iovt_extent c;
			rec_copy(r, &c);
			int rc = fn(arg, &c);
			if (rc)
				return rc;
		}
		if (hi >= last)
			return 0;
		cur = hi + 1;
	}
}

int shadow_tree_iterate(const struct shadow_tree *t, uint64_t first, uint64_t last,
			shadow_visit_fn fn, void *arg)
{
	return iterate(t, first, last, fn, arg, false);
}

int shadow_tree_iterate_w(struct shadow_tree *t, uint64_t first, uint64_t last,
			  shadow_visit_fn fn, void *arg)
{
	return iterate(t, first, last, fn, arg, true);
}

/* An extent no run holds, handed to fn. The loop below marks the kept
 * path likely: laid out as equals, the copy and the call kept registers
 * busy across the kept records' path, which then spilled the run it
 * advances (map4k-psi2m own ms 24.5 -> 20.8, 3 alternating rounds; out
 * of line, noinline, 21.6: strict-dma's unkept extents paid the call). */
static inline int visit_unkept(const struct rec *r, bool before, shadow_visit_unkept_fn fn,
			       void *arg)
{
	struct iovt_extent c;
	rec_copy(r, &c);
	return fn(arg, &c, before);
}

/*
 * The writer's iterate, compared with the runs as it goes (the contract is
 * in shadow_tree.h). The records stay where they are: an extent that a run
 * begins with costs a few compares and the run's advance, with no copy and
 * no call (map4k-psi2m: ~90 instructions an unchanged extent as a visit
 * per extent; ~60% of that scenario's engine). The others are copied and
 * handed over one by one: collecting them a leaf's stretch at a time kept
 * more state live across the loop and cost the kept ones ~10% more (they
 * are most of a window in the steady state). The writer's tree
 * does not change during the call: one version, each extent in one leaf,
 * so no `prev` check as the readers' iterate needs.
 */
int shadow_tree_iterate_unkept_w(struct shadow_tree *t, uint64_t first, uint64_t last,
				 struct iovt_extent *runs, size_t nruns, size_t *ri, bool *dropped,
				 shadow_visit_unkept_fn fn, void *arg)
{
	if (first > t->top || first > last)
		return 0;
	if (last > t->top)
		last = t->top;
	uint64_t cur = first, hi;
	bool drop = *dropped;
	struct iovt_extent *run = runs, *end = runs; /* runs may be NULL (none) */
	if (nruns) {
		run += *ri;
		end += nruns;
	}
	/* The current run's moving fields in registers, loaded when the cursor
	 * reaches it, written back when it leaves it and at the end (fn does
	 * not read the runs). Advanced in memory, the next record's compare
	 * loaded what the last one had just stored, and the compiler stored
	 * iova and size as one 16-byte store whose upper half an 8-byte load
	 * cannot take from the store buffer on this CPU (perf: a quarter of
	 * map4k-psi2m's samples of this loop on that load). */
	uint64_t c_iova = 0, c_size = 0, c_gpa = 0, c_hva = 0;
#define RUN_LOAD()                                                                                 \
	do {                                                                                       \
		c_iova = run->iova;                                                                \
		c_size = run->size;                                                                \
		c_gpa = run->gpa;                                                                  \
		c_hva = run->hva;                                                                  \
	} while (0)
#define RUN_STORE()                                                                                \
	do {                                                                                       \
		run->iova = c_iova;                                                                \
		run->size = c_size;                                                                \
		run->gpa = c_gpa;                                                                  \
		run->hva = c_hva;                                                                  \
	} while (0)
	if (run < end)
		RUN_LOAD();
	int rc = 0;
	for (;;) {
		const struct leaf *l = leaf_at(t, cur, &hi, true);
		if (!l)
			break;
		uint64_t w = __atomic_load_n(&l->h.word, __ATOMIC_ACQUIRE);
		/* the order word consumed a slot at a time: one register for
		 * the position, the count and the word (w, k and n spilled) */
		for (uint64_t ow = w >> 4, n = ow_n(w); n; n--, ow >>= 4) {
			const struct rec *r = &l->r[ow & 15];
			uint64_t iova = r->iova, size = (uint64_t)r->npages << 12;
			if (iova > last)
				break;
			if (iova + size - 1 < cur)
				continue;
			while (run < end && c_iova + c_size <= iova) {
				RUN_STORE();
				if (++run < end)
					RUN_LOAD();
			}
			/* sync.h's still_mapped at offset 0 */
			if (__builtin_expect(run < end && c_iova == iova && size <= c_size &&
						     c_gpa == r->gpa && c_hva == r->hva &&
						     run->perm == (r->perm_region & 0xff) &&
						     run->region == r->perm_region >> 8,
					     1)) {
				c_iova += size;
				c_gpa += size;
				c_hva += size;
				c_size -= size; /* 0: all of it kept (the cursor moves on) */
				drop = true;
				continue;
			}
			bool before = drop;
			drop = false; /* visited, even if fn stops here */
			if ((rc = visit_unkept(r, before, fn, arg)))
				goto out;
		}
		if (hi >= last)
			break;
		cur = hi + 1;
	}
out:
	if (run < end)
		RUN_STORE();
#undef RUN_LOAD
#undef RUN_STORE
	if (nruns)
		*ri = (size_t)(run - runs);
	*dropped = drop;
	return rc;
}

size_t shadow_tree_collect_w(struct shadow_tree *t, uint64_t first, uint64_t last,
			     struct iovt_extent *out, size_t max)
{
	if (first > t->top || first > last)
		return 0;
	if (last > t->top)
		last = t->top;
	uint64_t cur = first, hi;
	size_t m = 0;
	for (;;) {
		const struct leaf *l = leaf_at(t, cur, &hi, true);
		if (!l)
			return 0;
		const uint64_t w = l->h.word; /* the writer's own word */
		const unsigned n = ow_n(w);
		/* from the record covering cur, or the first after it (every
		 * extent lies inside its leaf's range: each is met once) */
		unsigned k = leaf_from(l, w, cur);
		for (; k < n; k++) {
			const struct rec *r = &l->r[ow_at(w, k)];
			if (r->iova > last)
				return m;
			if (m == max)
				return max + 1;
			rec_copy(r, &out[m++]);
		}
		if (hi >= last)
			return m;
		cur = hi + 1;
	}
}

uint64_t shadow_tree_count(const struct shadow_tree *t)
{
	return __atomic_load_n(&t->count, __ATOMIC_RELAXED);
}

uint64_t shadow_tree_memory_bytes(const struct shadow_tree *t)
{
	return __atomic_load_n(&t->mem, __ATOMIC_RELAXED);
}

unsigned shadow_tree_height(const struct shadow_tree *t)
{
	return t->root ? t->root->level + 1u : 0u;
}

unsigned shadow_tree_pending_retired(const struct shadow_tree *t)
{
	return t->batch ? t->batch->n : 0;
}

/* ------------------------------------------------------------------------ */
/* Write side (one writer)                                                   */

/* p's path from n[d] down to key's leaf: n[d], lo[d], hi[d] are set and
 * [lo[d], hi[d]] holds key; n[0..d-1] and their idx stay. */
static void descend_from(uint64_t key, struct path *p, unsigned d)
{
	struct node *x = p->n[d];
	uint64_t lo = p->lo[d], hi = p->hi[d];
	for (;;) {
		p->n[d] = x;
		p->lo[d] = lo;
		p->hi[d] = hi;
		if (!x->level)
			break;
		struct inode *in = (struct inode *)x;
		unsigned i = child_pos(in, key);
		if (i > 0)
			lo = in->piv[i - 1];
		if (i + 1 < in->h.word)
			hi = in->piv[i] - 1;
		p->idx[d] = i;
		x = in_child(in)[i];
		d++;
	}
	p->h = d + 1;
}

static void descend(const struct shadow_tree *t, uint64_t key, struct path *p)
{
	p->n[0] = t->root;
	p->lo[0] = 0;
	p->hi[0] = t->top;
	descend_from(key, p, 0);
}

bool shadow_tree_test_check_finger;
bool shadow_tree_test_split_where;

/* The finger's path against a full descent (shadow_tree_test_check_finger). */
static void finger_check(const struct shadow_tree *t, uint64_t key, const struct path *f)
{
	struct path p;
	descend(t, key, &p);
	bool same = p.h == f->h;
	for (unsigned d = 0; same && d < p.h; d++)
		same = p.n[d] == f->n[d] && p.lo[d] == f->lo[d] && p.hi[d] == f->hi[d] &&
		       (d + 1 == p.h || p.idx[d] == f->idx[d]);
	if (!same)
		abort();
}

/*
 * descend through the finger: a key inside the range of the leaf the last
 * descent reached, with no node published since, takes the same path (a
 * strict guest's map then unmap at one IOVA, a rebuild's ascending inserts,
 * a removal's next leaf: each a full descent before). The next leaf of an
 * iterate (map4k-psi2m walks ~17 leaves a window, dsi-unchanged every
 * leaf) is its parent's next child, taken without a search when it has one;
 * a key in the other finger's leaf swaps the two fingers; any other key
 * descends from the root into the other finger's path, which becomes the
 * finger (the old one is the other now). The path returned is the tree's
 * own: valid until the writer's next descend_w. descend_w_slow is all but
 * the first test, which is inline (descend_w, below).
 */
static __attribute__((noinline)) const struct path *descend_w_slow(struct shadow_tree *t, uint64_t key)
{
	struct path *f = t->finger;
	if (!t->finger_ok) {
		descend(t, key, f);
		t->finger_ok = true;
	} else {
		unsigned d = f->h - 1;
		if (d && key == f->hi[d] + 1) {
			/* the next leaf, when it has the same parent: no search */
			struct inode *in = (struct inode *)f->n[d - 1];
			unsigned i = f->idx[d - 1] + 1;
			if (i < in->h.word) {
				f->idx[d - 1] = i;
				f->n[d] = in_child(in)[i];
				f->lo[d] = in->piv[i - 1]; /* == key */
				f->hi[d] = i + 1 < in->h.word ? in->piv[i] - 1 : f->hi[d - 1];
				goto done;
			}
		}
		/* the other finger's leaf: the two swap */
		struct path *a = t->alt;
		t->alt = f;
		t->finger = a;
		if (t->alt_ok && key >= a->lo[a->h - 1] && key <= a->hi[a->h - 1]) {
			f = a;
			goto done;
		}
		/* else the old finger stays as the other one (it was valid) and
		 * the new one descends from the root: from the deepest node of
		 * the old path whose range holds key would need that path
		 * copied first (gcc makes the copy four memcpy calls) */
		t->alt_ok = true;
		f = a;
		descend(t, key, f);
	}
done:
	if (__builtin_expect(shadow_tree_test_check_finger, 0))
		finger_check(t, key, f);
	return f;
}

/* The first test inline: most writer operations stay in the finger's leaf. */
static inline __attribute__((always_inline)) const struct path *descend_w(struct shadow_tree *t,
									   uint64_t key)
{
	struct path *f = t->finger;
	if (__builtin_expect(t->finger_ok && key >= f->lo[f->h - 1] && key <= f->hi[f->h - 1], 1)) {
		if (__builtin_expect(shadow_tree_test_check_finger, 0))
			finger_check(t, key, f);
		return f;
	}
	return descend_w_slow(t, key);
}

static inline struct leaf *path_leaf(const struct path *p)
{
	return (struct leaf *)p->n[p->h - 1];
}

/* Where n[d] is linked. */
static inline struct node **slot_of(struct shadow_tree *t, const struct path *p, unsigned d)
{
	return d ? &in_child((struct inode *)p->n[d - 1])[p->idx[d - 1]] : &t->root;
}

/* Publishes nl in place of the leaf of p (a copy: compacted, grown or
 * shrunk; same range). Nothing above it changes, so the finger — p is the
 * finger when it came from descend_w — stays valid with the new leaf: the
 * next operation in that leaf needs no descent (perm-churn: a quarter of
 * its flips copy a leaf). */
static void replace_leaf(struct shadow_tree *t, const struct path *p, struct leaf *nl)
{
	const bool ok = t->finger_ok, alt_ok = t->alt_ok; /* as they were */
	const struct node *old = p->n[p->h - 1];
	publish(t, slot_of(t, p, p->h - 1), &nl->h);
	if (p == t->finger) {
		t->finger->n[p->h - 1] = &nl->h;
		t->finger_ok = ok;
		/* the other finger's path is untouched, unless it ends here too */
		struct path *a = t->alt;
		if (alt_ok && a->n[a->h - 1] == old)
			a->n[a->h - 1] = &nl->h;
		t->alt_ok = alt_ok;
	}
}

/* in: inode_bytes(inode_cap(n)) bytes (inode_alloc). */
static void inode_fill(struct inode *in, unsigned level, unsigned n, struct node *const *ch,
		       const uint64_t *pv)
{
	const unsigned cap = inode_cap(n);
	memset(&in->h, 0, sizeof(in->h));
	in->h.word = n;
	in->h.level = (uint8_t)level;
	in->h.cap = (uint8_t)cap;
	memcpy(in_child(in), ch, n * sizeof(*ch));
	memcpy(in->piv, pv, (n - 1) * sizeof(*pv));
	/* the rest UINT64_MAX, never <= a key below it (child_pos): all-ones
	 * bytes, one memset instead of a store per pivot */
	memset(in->piv + n - 1, 0xff, (cap - (n - 1)) * sizeof(*pv));
	/* child_pos reads word 23 of every node, in a small one its ninth
	 * child slot, and discards it there: written, so that no read of
	 * uninitialised memory happens (MemorySanitizer would flag it). */
	if (cap == FAN_SMALL && n <= 8)
		in_child(in)[8] = NULL;
}

/* An internal node for n children (inode_fill), or NULL. */
static struct inode *inode_alloc(struct shadow_tree *t, unsigned n)
{
	return (struct inode *)node_alloc(t, inode_bytes(inode_cap(n)));
}

/* np (inode_alloc(t, n - 1)) as a copy of par (n children) without its
 * child c and its pivot v: the neighbour on the side of v takes c's range
 * (unlink_empty), or a merged leaf put in place of the other one
 * (leaf_merge). */
static void inode_fill_without(struct inode *np, const struct inode *par, unsigned c, unsigned v)
{
	const unsigned n = (unsigned)par->h.word;
	struct node *ch[FAN];
	uint64_t pv[FAN];
	for (unsigned k = 0, m = 0; k < n; k++)
		if (k != c)
			ch[m++] = in_child(par)[k];
	for (unsigned k = 0, m = 0; k + 1 < n; k++)
		if (k != v)
			pv[m++] = par->piv[k];
	inode_fill(np, par->h.level, n - 1, ch, pv);
}

/* Slack for in-place inserts: half the live records again (at least one
 * slot), in a size class; small domains stay under the GTree's bytes. */
static unsigned cap_for(unsigned live)
{
	unsigned want = live + (live / 2 ? live / 2 : 1);
	return want <= 3 ? 3 : want <= 7 ? 7 : LEAF_MAX;
}

/* A new leaf whose records 0..m-1 are written, in order: its used count
 * and its order word. */
static inline void leaf_seal(struct leaf *l, unsigned m)
{
	l->h.used = (uint8_t)m;
	l->h.word = ident_word(m);
}

/*
 * The record an insert has just built on its stack (shadow_tree_insert's
 * nr), copied field by field, each a scalar load: it was stored a field at
 * a time, and a struct copy's 16-byte loads cannot be forwarded from
 * narrower stores still in the store buffer — each would wait for them to
 * reach the cache (perf, fence/map_unmap_1: a fifth of the insert's
 * samples were on that copy).
 */
static inline void rec_load(struct rec *d, const struct rec *s)
{
	d->iova = __atomic_load_n(&s->iova, __ATOMIC_RELAXED);
	d->gpa = __atomic_load_n(&s->gpa, __ATOMIC_RELAXED);
	d->hva = __atomic_load_n(&s->hva, __ATOMIC_RELAXED);
	d->npages = __atomic_load_n(&s->npages, __ATOMIC_RELAXED);
	d->perm_region = __atomic_load_n(&s->perm_region, __ATOMIC_RELAXED);
}

/* Copies the n live records of l (order word w) into fresh leaf nl in IOVA
 * order, with *ins (if any) at position k. nl is not yet published. */
static void leaf_build(struct leaf *nl, const struct leaf *l, uint64_t w, unsigned k,
		       const struct rec *ins)
{
	unsigned n = ow_n(w), m = 0;
	for (unsigned i = 0; i <= n; i++) {
		if (ins && i == k)
			rec_load(&nl->r[m++], ins);
		if (i < n)
			nl->r[m++] = l->r[ow_at(w, i)];
	}
	leaf_seal(nl, m);
}

/* Climbs from the root while it is an internal node with one child. */
static void collapse_root(struct shadow_tree *t)
{
	while (t->root->level && t->root->word == 1) {
		struct node *old = t->root;
		publish(t, &t->root, in_child((struct inode *)old)[0]);
		retire(t, old);
	}
}

/*
 * Unlinks n[d], an empty leaf (d > 0), with every ancestor it leaves
 * childless; the nearest sibling takes its range (the pivot between them
 * goes). One copied internal node. 0, -ENOMEM (nothing changed), or 1 when
 * the whole tree is that empty chain (nothing to do; it stays).
 */
static int unlink_empty(struct shadow_tree *t, const struct path *p, unsigned d)
{
	unsigned up = d;
	while (up > 1 && p->n[up - 1]->word == 1)
		up--;
	/* n[up-1] keeps at least one child (the root has >= 2 when d is empty
	 * and the tree holds anything else; with one it simply loses it below). */
	struct inode *par = (struct inode *)p->n[up - 1];
	unsigned n = (unsigned)par->h.word, i = p->idx[up - 1];
	if (n == 1)
		return 1; /* the whole tree is this empty chain: leave it */
	if (batch_room(t, (d - up + 1) + 1 + MAX_H))
		return -ENOMEM;
	struct inode *np = inode_alloc(t, n - 1);
	if (!np)
		return -ENOMEM;
	/* the left sibling takes the range (pivot i - 1 goes), or the right (pivot 0) */
	inode_fill_without(np, par, i, i ? i - 1 : 0);
	publish(t, slot_of(t, p, up - 1), &np->h);
	retire(t, &par->h);
	for (unsigned k = up; k <= d; k++)
		retire(t, p->n[k]);
	collapse_root(t);
	return 0;
}

/*
 * The leaf of p ends before `last`; the next leaf's records all start past
 * last (checked). Moves the one pivot between them (in their lowest common
 * ancestor) to last + 1: the range it hands over holds no extent. 0 or
 * -ENOMEM (nothing changed).
 */
static int raise_boundary(struct shadow_tree *t, const struct path *p, uint64_t v)
{
	int d = (int)p->h - 2;
	while (d >= 0 && p->idx[d] + 1 >= p->n[d]->word)
		d--;
	if (d < 0)
		return -EINVAL; /* the leaf ends at top: callers never get here */
	if (batch_room(t, 1))
		return -ENOMEM;
	struct inode *old = (struct inode *)p->n[d];
	struct inode *np = inode_alloc(t, (unsigned)old->h.word);
	if (!np)
		return -ENOMEM;
	inode_fill(np, old->h.level, (unsigned)old->h.word, in_child(old), old->piv);
	np->piv[p->idx[d]] = v;
	publish(t, slot_of(t, p, (unsigned)d), &np->h);
	retire(t, &old->h);
	return 0;
}

/*
 * An extent [s, last] from the leaf of p on crosses its upper bound: make
 * the leaf's range reach `last`, one step per call (the caller descends
 * again). -EEXIST if the next leaf holds an overlapping record.
 */
static int cross(struct shadow_tree *t, const struct path *p, uint64_t last)
{
	struct path q;
	descend(t, p->hi[p->h - 1] + 1, &q);
	const struct leaf *r = path_leaf(&q);
	uint64_t w = r->h.word;
	if (!ow_n(w)) {
		/* an ENOMEM left it; 1 (nothing done) cannot happen here, the
		 * tree also holds p's leaf: never loop on it */
		int rc = unlink_empty(t, &q, q.h - 1);
		return rc > 0 ? -EINVAL : rc;
	}
	if (r->r[ow_at(w, 0)].iova <= last)
		return -EEXIST;
	return raise_boundary(t, p, last + 1);
}

/* Internal nodes allocated before a split changes anything: x[0] small,
 * x[1] big (inode_cap), as insert_up takes them. */
struct pool {
	struct node *x[2][2 * MAX_H + 4];
	unsigned n[2];
};

/* One for n children. */
static inline struct inode *pool_take(struct pool *pl, unsigned n)
{
	const unsigned big = inode_cap(n) == FAN;
	return (struct inode *)pl->x[big][--pl->n[big]];
}

/*
 * Replaces child idx[d] of n[d] by (left, pivot, right), splitting full
 * nodes upward; d < 0: a new root over them. Nodes come from the pool
 * (counted by the caller); exactly one pointer store publishes it all.
 */
static void insert_up(struct shadow_tree *t, const struct path *p, int d, struct node *left,
		      uint64_t pivot, struct node *right, struct pool *pl)
{
	if (d < 0) {
		struct inode *nr = pool_take(pl, 2);
		struct node *ch[2] = { left, right };
		inode_fill(nr, left->level + 1u, 2, ch, &pivot);
		publish(t, &t->root, &nr->h);
		if (nr->h.level >= 2) /* tall enough for translate's cache */
			lc_enable(&t->lc);
		return;
	}
	struct inode *in = (struct inode *)p->n[d];
	unsigned n = (unsigned)in->h.word, i = p->idx[d];
	struct node *ch[FAN + 1];
	uint64_t pv[FAN];
	struct node *const *ich = in_child(in);
	memcpy(ch, ich, i * sizeof(*ch));
	ch[i] = left;
	ch[i + 1] = right;
	memcpy(ch + i + 2, ich + i + 1, (n - i - 1) * sizeof(*ch));
	memcpy(pv, in->piv, i * sizeof(*pv));
	pv[i] = pivot;
	memcpy(pv + i + 1, in->piv + i, (n - 1 - i) * sizeof(*pv));
	retire(t, &in->h);
	if (n + 1 <= FAN) {
		struct inode *ni = pool_take(pl, n + 1);
		inode_fill(ni, in->h.level, n + 1, ch, pv);
		publish(t, slot_of(t, p, (unsigned)d), &ni->h);
		return;
	}
	/* 32 children: 16 and 16, pivot 15 goes up */
	unsigned h = (FAN + 1) / 2;
	struct inode *a = pool_take(pl, h), *b = pool_take(pl, FAN + 1 - h);
	inode_fill(a, in->h.level, h, ch, pv);
	inode_fill(b, in->h.level, FAN + 1 - h, ch + h, pv + h);
	insert_up(t, p, d - 1, &a->h, pv[h - 1], &b->h, pl);
}

/*
 * The leaf of p is full (15 live), or nearly and nr goes first (leaf_insert:
 * EDGE_ROOM): two leaves, and the path above.
 * Appending at either end (an ascending or a descending fill: a strict
 * guest's top-down IOVAs, a rebuild) keeps the leaf as it is, with a
 * narrower range, beside a new leaf holding the one record: no copy of the
 * records, one leaf allocated and none retired. The leaf is not
 * written: a reader that reached it through the old parent reads it whole,
 * and its records lie inside its new range (the insert's overlap checks).
 * The new leaf takes the whole gap between the full leaf's records and the
 * range's end on its side, so that the fill goes on in it: with the pivot
 * at the new record instead, a descending fill that began above a full
 * leaf fell back into the full leaf at every insert, a 512-byte leaf per
 * extent (found by review; 533 bytes an extent, now 37). Else two halves.
 */
static int leaf_split(struct shadow_tree *t, const struct path *p, unsigned k, const struct rec *nr)
{
	struct leaf *l = path_leaf(p);
	const uint64_t w = l->h.word;
	const unsigned n0 = ow_n(w);
	const bool edge = k == 0 || k == n0;
	unsigned need[2] = { 0, 0 }; /* small, big: what insert_up will take */
	int d;
	for (d = (int)p->h - 2; d >= 0; d--) {
		const unsigned n = (unsigned)p->n[d]->word;
		if (n < FAN) {
			need[inode_cap(n + 1) == FAN]++;
			break;
		}
		need[inode_cap((FAN + 1) / 2) == FAN] += 2; /* two halves */
	}
	if (d < 0)
		need[inode_cap(2) == FAN]++; /* a new root */
	if (batch_room(t, p->h))
		return -ENOMEM;
	struct pool pl; /* x[] is written before it is read: only n set (a
			 * zeroed pool was ~58 instructions a split) */
	pl.n[0] = pl.n[1] = 0;
	struct leaf *a = leaf_alloc(t, LEAF_MAX), *b = edge ? NULL : leaf_alloc(t, LEAF_MAX);
	bool ok = a && (b || edge);
	for (unsigned big = 0; big < 2; big++)
		while (ok && pl.n[big] < need[big]) {
			struct node *x = node_alloc(t, inode_bytes(big ? FAN : FAN_SMALL));
			if (x)
				pl.x[big][pl.n[big]++] = x;
			else
				ok = false;
		}
	if (!ok) {
		for (unsigned big = 0; big < 2; big++)
			while (pl.n[big])
				node_unused(t, pl.x[big][--pl.n[big]], inode_bytes(big ? FAN : FAN_SMALL));
		if (a)
			node_unused(t, &a->h, leaf_bytes(LEAF_MAX));
		if (b)
			node_unused(t, &b->h, leaf_bytes(LEAF_MAX));
		return -ENOMEM;
	}
	if (edge) {
		/* a: the new record alone, beside l (its records all end
		 * before nr starts, or start after nr ends) */
		rec_load(&a->r[0], nr);
		leaf_seal(a, 1);
		if (k == 0)
			insert_up(t, p, (int)p->h - 2, &a->h, l->r[ow_at(w, 0)].iova, &l->h, &pl);
		else
			insert_up(t, p, (int)p->h - 2, &l->h, rec_last(&l->r[ow_at(w, n0 - 1)]) + 1,
				  &a->h, &pl);
		t->seq_leaf = a; /* a buffer's next piece follows nr in a */
		t->seq_k = 0;
		return 0;
	}
	/* the 16 records in order (nr at k) go straight into a's slots, then
	 * b's: no copy of them all first */
	/* A run of inserts at consecutive positions of this leaf (a buffer's
	 * pieces, ascending, inside a top-down order of buffers) splits where
	 * it is, the new record last in a: the run goes on in a's free slots
	 * and the records after it stay together in b. Any other insert: two
	 * halves (random inserts keep leaves at least half full). A run that
	 * stops early leaves a short a of 15 slots: runs of two cut from full
	 * leaves, round after round, made 182 bytes an extent (review), so
	 * run splits are taken only while the tree holds at most
	 * RUN_SPLIT_MAX_BYTES an extent (strict-dma runs at 58-65). */
	const bool run = (t->seq_leaf == l && t->seq_k + 1 == k &&
			  t->mem <= RUN_SPLIT_MAX_BYTES * t->count) ||
			 __builtin_expect(shadow_tree_test_split_where, 0);
	const unsigned m = run ? k + 1 : (LEAF_MAX + 1) / 2;
	for (unsigned j = 0; j <= LEAF_MAX; j++) {
		const struct rec *r = j < k ? &l->r[ow_at(w, j)] : j == k ? nr : &l->r[ow_at(w, j - 1)];
		if (j < m)
			a->r[j] = *r;
		else
			b->r[j - m] = *r;
	}
	leaf_seal(a, m);
	leaf_seal(b, LEAF_MAX + 1 - m);
	/* a's last record ends before b's first starts: b's first IOVA bounds a */
	retire(t, (struct node *)&l->h);
	insert_up(t, p, (int)p->h - 2, &a->h, b->r[0].iova, &b->h, &pl);
	if (run) {
		t->seq_leaf = a; /* nr is a's last: the run's next insert follows it */
		t->seq_k = k;
	}
	return 0;
}

/* Puts nr at position k of the leaf of p (no overlap, inside its range). */
static int leaf_insert(struct shadow_tree *t, const struct path *p, unsigned k, const struct rec *nr)
{
	struct leaf *l = path_leaf(p);
	uint64_t w = l->h.word;
	unsigned n = ow_n(w);
	/* A descending fill's next buffer: nr goes before every record of a
	 * leaf that has at most EDGE_ROOM slots of room, and the buffer's other
	 * pieces will follow it, ascending. Inserted here, they would fill the
	 * leaf mid-run, and its split would copy both halves into two new
	 * leaves; an edge split now writes one new leaf and leaves this one
	 * as it is (strict-dma: every one of its ~2,450 splits per 20K PSIs
	 * was such a run split, k = 1..10). Under the memory bound of run
	 * splits: the leaf it leaves has at least LEAF_MAX - EDGE_ROOM
	 * records. Ascending fills (nr last) need none: their pieces are each
	 * last too, and the full leaf's edge split costs no copy either. */
	if (k == 0 && n >= LEAF_MAX - EDGE_ROOM && t->mem <= RUN_SPLIT_MAX_BYTES * t->count) {
		int rc = leaf_split(t, p, k, nr);
		/* Without memory for it, a leaf with room still takes nr in
		 * place (the split changed nothing): an insert that needed no
		 * allocation before does not fail now. */
		if (rc != -ENOMEM || l->h.used == l->h.cap)
			return rc;
	}
	if (l->h.used < l->h.cap) {
		/* In place (rule 3): slot `used` was never named by an order
		 * word, so no reader reads it before the release store. */
		unsigned s = l->h.used++;
		rec_load(&l->r[s], nr);
		__atomic_store_n(&l->h.word, ow_insert(w, k, s), __ATOMIC_RELEASE);
		t->seq_leaf = l;
		t->seq_k = k;
		return 0;
	}
	if (n == LEAF_MAX)
		return leaf_split(t, p, k, nr);
	/* compact (and grow) into a copy, published by rule 2 */
	if (batch_room(t, 1))
		return -ENOMEM;
	unsigned cap = cap_for(n + 1);
	/* A small leaf filled by churn (its slots are removed records', not
	 * live ones: a map/unmap pair at one IOVA takes a slot each time) is
	 * copied into 7 slots, not 3, and stays at 7 while it churns: one
	 * copy every 6 inserts instead of every 2 (fence/map_unmap_1: a copy
	 * was ~110 instructions per insert). 128 bytes more for such a leaf.
	 * Only with a record beside the new one (n >= 1): leaf_tidy keeps 7
	 * slots while one record lives (n * 8 > 7). A leaf that empties is
	 * unlinked, or freed as the root, since the eighth session; before,
	 * an emptied root shrank to 3 and a lone churned extent alternated 7
	 * and 3, a copy on every map and every unmap (found by review). An
	 * empty leaf left linked (an unlink it could not afford) gets 3. */
	if (cap == 3 && n && (l->h.cap == 3 || l->h.cap == 7))
		cap = 7;
	struct leaf *nl = leaf_alloc(t, cap);
	if (!nl)
		return -ENOMEM;
	leaf_build(nl, l, w, k, nr);
	replace_leaf(t, p, nl);
	retire(t, &l->h);
	/* nr is at position k of the copy, as of an in-place insert: the
	 * next insert tests the same hint the same way (left pointing at the
	 * retired leaf, the first test failed where it had passed: a branch
	 * mispredicted, ~25 cycles on the insert after each churn copy,
	 * fence/map_unmap_1). */
	t->seq_leaf = nl;
	t->seq_k = k;
	return 0;
}

int shadow_tree_insert(struct shadow_tree *t, const struct iovt_extent *e)
{
	if (!e || !e->size || (e->iova | e->size) & (IOVT_PAGE_SIZE - 1) ||
	    e->size >= MAX_SIZE || e->iova > t->top || e->size - 1 > t->top - e->iova ||
	    e->perm > 0xff || e->region >= (1u << 24))
		return -EINVAL;
	uint64_t s = e->iova, last = e->iova + (e->size - 1);
	struct rec nr = { e->iova, e->gpa, e->hva, (uint32_t)(e->size >> 12),
			  e->perm | e->region << 8 };

	if (!t->root) {
		/* the first extent: a one-slot leaf (48 bytes) */
		struct leaf *l = leaf_alloc(t, 1);
		if (!l)
			return -ENOMEM;
		rec_load(&l->r[0], &nr);
		leaf_seal(l, 1);
		publish(t, &t->root, &l->h);
		/* The finger: the root leaf alone (a domain that empties and
		 * refills — one strict map/unmap in an otherwise empty domain —
		 * would descend again at the next operation). What descend()
		 * makes of a leaf root, set directly: its loop cost
		 * fence/map_unmap_1_region_empties 12 instructions a step. */
		t->finger->h = 1;
		t->finger->n[0] = &l->h;
		t->finger->lo[0] = 0;
		t->finger->hi[0] = t->top;
		t->finger_ok = true;
		stat_add(&t->count, 1);
		return 0;
	}
	const struct path *p;
	unsigned k;
	for (;;) {
		p = descend_w(t, s);
		const struct leaf *l = path_leaf(p);
		uint64_t w = l->h.word;
		/* Right after the last in-place insert (a buffer's pieces, in
		 * order): its position is checked, not searched. The hint may be
		 * stale or another leaf's; the two compares decide alone: the
		 * record at seq_k ends before s and the next begins after last,
		 * so s goes between them (the leaf is sorted), overlapping
		 * nothing. */
		k = t->seq_k + 1;
		if (!(t->seq_leaf == l && k <= ow_n(w) && rec_last(&l->r[ow_at(w, k - 1)]) < s &&
		      (k == ow_n(w) || l->r[ow_at(w, k)].iova > last))) {
			k = leaf_pos_w(l, w, s);
			if (k && rec_last(&l->r[ow_at(w, k - 1)]) >= s)
				return -EEXIST;
			if (k < ow_n(w) && l->r[ow_at(w, k)].iova <= last)
				return -EEXIST;
		}
		if (last <= p->hi[p->h - 1])
			break;
		int rc = cross(t, p, last);
		if (rc)
			return rc;
	}
	int rc = leaf_insert(t, p, k, &nr);
	if (!rc)
		stat_add(&t->count, 1);
	return rc;
}

bool shadow_tree_lookup_w(struct shadow_tree *t, uint64_t iova, struct iovt_extent *out)
{
	if (iova > t->top || !t->root)
		return false;
	const struct leaf *l = path_leaf(descend_w(t, iova));
	const struct rec *r = leaf_cover(l, l->h.word, iova, true); /* the writer's own word */
	if (r && out)
		rec_copy(r, out);
	return r != NULL;
}

/* A leaf left with at most MERGE_LOW records by a removal looks at its
 * sibling, and the two become one leaf when they hold at most MERGE_MAX
 * together (leaf_merge). Below a split's halves (8 and 8) and well below a
 * full leaf, so that the records one merge gathers take several inserts to
 * split again. */
#define MERGE_LOW 5u
#define MERGE_MAX 10u

/*
 * The leaf of p (h >= 2) and its sibling under the same parent — the next
 * one, or the one before for a last child — become one new leaf with
 * slack (cap_for), in a copy of the parent with one child less (rules 1
 * and 2: a reader that loaded the old parent reads both old leaves whole).
 * Without it a tree whose extents come and go at random keeps the halves
 * its splits made: perm-churn's settled at 8.3 records a 15-slot leaf, 65.6
 * bytes an extent. 0 when merged, 1 when the two hold too many, -ENOMEM
 * (nothing changed).
 */
static int leaf_merge(struct shadow_tree *t, const struct path *p)
{
	const unsigned d = p->h - 2;
	struct inode *par = (struct inode *)p->n[d];
	const unsigned pn = (unsigned)par->h.word, i = p->idx[d];
	if (pn < 2)
		return 1;
	const unsigned j = i + 1 < pn ? i : i - 1; /* the pair: children j and j + 1 */
	const struct leaf *a = (const struct leaf *)in_child(par)[j];
	const struct leaf *b = (const struct leaf *)in_child(par)[j + 1];
	const uint64_t wa = a->h.word, wb = b->h.word; /* the writer's own words */
	const unsigned na = ow_n(wa), nb = ow_n(wb);
	if (na + nb > MERGE_MAX)
		return 1;
	if (batch_room(t, 4)) /* a, b, the parent; the root, when it collapses (the parent is at level 1) */
		return -ENOMEM;
	struct leaf *nl = leaf_alloc(t, cap_for(na + nb));
	struct inode *np = nl ? inode_alloc(t, pn - 1) : NULL;
	if (!np) {
		if (nl)
			node_unused(t, &nl->h, leaf_bytes(nl->h.cap));
		return -ENOMEM;
	}
	for (unsigned k = 0; k < na; k++)
		nl->r[k] = a->r[ow_at(wa, k)];
	for (unsigned k = 0; k < nb; k++)
		nl->r[na + k] = b->r[ow_at(wb, k)];
	leaf_seal(nl, na + nb);
	inode_fill_without(np, par, j + 1, j); /* b and the pivot between a and b go */
	in_child(np)[j] = &nl->h; /* not yet published: a plain store */
	publish(t, slot_of(t, p, d), &np->h);
	retire(t, &par->h);
	retire(t, (struct node *)&a->h);
	retire(t, (struct node *)&b->h);
	collapse_root(t); /* a root left with the one child */
	return 0;
}

/* After records left the leaf of p: unlink it if empty, shrink it if it is
 * mostly slack. Both optional (skipped without memory). */
static void leaf_tidy(struct shadow_tree *t, const struct path *p)
{
	struct leaf *l = path_leaf(p);
	uint64_t w = l->h.word;
	unsigned n = ow_n(w);
	if (!n) {
		if (p->h > 1) {
			(void)unlink_empty(t, p, p->h - 1);
			return;
		}
		/* The tree's last extent went: the root leaf goes too, so that
		 * an empty domain holds no node (the next insert makes a 1-slot
		 * leaf). Optional, like the rest (skipped without memory). */
		if (batch_room(t, 1))
			return;
		publish(t, &t->root, NULL);
		retire(t, &l->h);
		return;
	}
	if (n <= MERGE_LOW && p->h > 1 && !leaf_merge(t, p))
		return;
	/* Hysteresis: a leaf grown to cap_for(n + 1) by one insert is not
	 * shrunk back by the remove that follows (cap_for(2) = 3 < 8). An
	 * emptied leaf never gets here: it is unlinked, or freed as the root. */
	unsigned cap = cap_for(n);
	if (n * 8 > l->h.cap || cap >= l->h.cap)
		return;
	if (batch_room(t, 1))
		return;
	struct leaf *nl = leaf_alloc(t, cap);
	if (!nl)
		return;
	leaf_build(nl, l, w, 0, NULL);
	replace_leaf(t, p, nl);
	retire(t, &l->h);
}

/*
 * Both removals: `pages` (NULL or not, a constant at each call) counts the
 * pages removed into *pages, without the records copied out for a visitor
 * (the sync's UNMAPs: a copy and an indirect call per extent, ~20
 * instructions each, for a sum).
 */
static inline __attribute__((always_inline)) long
remove_core(struct shadow_tree *t, uint64_t first, uint64_t last, shadow_visit_fn removed,
	    void *arg, uint64_t *pages)
{
	if (first > last)
		return -EINVAL;
	if (first > t->top || !t->root)
		return 0;
	if (last > t->top)
		last = t->top;
	long total = 0;
	for (uint64_t cur = first;;) {
		const struct path *p = descend_w(t, cur);
		struct leaf *l = path_leaf(p);
		uint64_t w = l->h.word, hi = p->hi[p->h - 1];
		/* the records overlapping [first, last] are positions a..b-1 */
		unsigned a = leaf_from(l, w, first), b, n = ow_n(w);
		/* b by a forward scan, not a second search: the records a
		 * removal reaches are few (one, for the strict guest's UNMAP),
		 * and at most a leaf's 15. */
		for (b = a; b < n && l->r[ow_at(w, b)].iova <= last; b++)
			;
		if (b > a) {
			struct iovt_extent out[LEAF_MAX];
			if (removed)
				for (unsigned i = a; i < b; i++)
					rec_copy(&l->r[ow_at(w, i)], &out[i - a]);
			/* rule 3: the records stay whole for readers of w (and
			 * for this writer, which reads them below) */
			__atomic_store_n(&l->h.word, ow_remove(w, a, b - a), __ATOMIC_RELEASE);
			for (unsigned i = a; i < b; i++) { /* after the unlink: lookup_cache.h */
				const struct rec *r = &l->r[ow_at(w, i)];
				lc_invalidate(&t->lc, r->iova, rec_last(r));
				if (pages)
					*pages += r->npages;
			}
			stat_add(&t->count, -(int64_t)(b - a));
			total += b - a;
			if (removed)
				for (unsigned i = 0; i < b - a; i++)
					removed(arg, &out[i]);
			leaf_tidy(t, p);
		}
		if (hi >= last)
			break;
		cur = hi + 1;
	}
	return total;
}

long shadow_tree_remove_range(struct shadow_tree *t, uint64_t first, uint64_t last,
			      shadow_visit_fn removed, void *arg)
{
	return remove_core(t, first, last, removed, arg, NULL);
}

long shadow_tree_remove_count(struct shadow_tree *t, uint64_t first, uint64_t last,
			      uint64_t *pages)
{
	return remove_core(t, first, last, NULL, NULL, pages);
}

/* ------------------------------------------------------------------------ */
/* Verification (tests)                                                      */

static int verify_node(const struct node *x, unsigned level, uint64_t lo, uint64_t hi, bool root,
		       uint64_t *cnt, uint64_t *mem)
{
	if (x->level != level)
		return -1; /* leaves at different depths */
	if (level ? x->cap != FAN_SMALL && x->cap != FAN
		  : x->cap != 1 && x->cap != 3 && x->cap != 7 && x->cap != LEAF_MAX)
		return -2; /* a size no node has (checked before usable() indexes by it) */
	*mem += usable(node_bytes(x));
	if (!level) {
		const struct leaf *l = (const struct leaf *)x;
		uint64_t w = l->h.word;
		unsigned n = ow_n(w), seen = 0;
		if (n > l->h.cap || l->h.used > l->h.cap)
			return -3;
		for (unsigned k = 0; k < n; k++) {
			unsigned s = ow_at(w, k);
			if (s >= l->h.used || (seen & (1u << s)))
				return -4; /* a slot never written, or named twice */
			seen |= 1u << s;
			const struct rec *r = &l->r[s];
			if (!r->npages || r->iova < lo || rec_last(r) > hi || rec_last(r) < r->iova)
				return -5; /* an extent outside its leaf's range */
			if (k && rec_last(&l->r[ow_at(w, k - 1)]) >= r->iova)
				return -6; /* unsorted or overlapping */
		}
		if (!n && !root)
			return -7; /* an empty leaf left linked (allowed only after ENOMEM) */
		*cnt += n;
		return 0;
	}
	const struct inode *in = (const struct inode *)x;
	unsigned n = (unsigned)in->h.word;
	if (n < 1 || n > FAN || (root && n < 2) || in->h.cap != inode_cap(n))
		return -8;
	for (unsigned i = 0; i + 1 < n; i++)
		if (in->piv[i] <= (i ? in->piv[i - 1] : lo) || in->piv[i] > hi)
			return -9; /* a child with an empty range, or pivots out of order */
	for (unsigned i = n - 1; i < in->h.cap; i++)
		if (in->piv[i] != UINT64_MAX)
			return -9; /* a pad child_pos would count */
	int rc7 = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t clo = i ? in->piv[i - 1] : lo, chi = i + 1 < n ? in->piv[i] - 1 : hi;
		int rc = verify_node(in_child(in)[i], level - 1, clo, chi, false, cnt, mem);
		if (rc == -7)
			rc7 = rc;
		else if (rc)
			return rc;
	}
	return rc7;
}

int shadow_tree_verify(const struct shadow_tree *t)
{
	uint64_t cnt = 0, mem = 0;
	int rc = 0;
	if (t->root)
		rc = verify_node(t->root, t->root->level, 0, t->top, true, &cnt, &mem);
	if (rc && rc != -7)
		return rc;
	if (cnt != t->count)
		return -10;
	if (mem != t->mem)
		return -11;
	if (t->batch && t->batch->n > BATCH_N)
		return -12;
	return rc;
}
