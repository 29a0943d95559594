/* SPDX-License-Identifier: MIT */
/*
 * The shadow tree (contract and layout: shadow_tree.h).
 *
 * Slot encoding (a slot is one pointer-sized word, read with
 * iovt_rcu_dereference, written with iovt_rcu_assign):
 *   0                        empty
 *   node | 1                 the extent `node` covers the whole slot span
 *   table | (count << 1)     a lower table; tables are 4 KiB aligned, so the
 *                            low 12 bits are free and carry the number of
 *                            non-empty slots of that table (0..512). Only
 *                            tables of level 1 and 2 (span <= 1 GiB, one
 *                            shard each) keep a count: they are freed when it
 *                            drops to 0. Keeping it in the parent slot keeps a
 *                            table at exactly 4096 bytes (a header would
 *                            push it to jemalloc's 5120 class) and costs
 *                            readers one AND.
 * Level l (1 = leaf) slots span 2^(12 + 9(l-1)) bytes; the root is level
 * `levels`.
 *
 * Why readers never see a false miss: a slot on the path to a present extent
 * is never rewritten to something else while the extent is there. Inserts
 * only fill empty slots (new tables are linked before they are filled, the
 * extent pointer published last per slot); removals only clear the extent's
 * own slots and unlink tables whose count reached 0 — a table holding a
 * present extent has count >= 1. A count update rewrites the parent slot
 * with the same pointer bits, so a racing reader follows the same table.
 */
#include "tree/shadow_tree.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rcu.h"

#define SLOTS 512u
#define TABLE_BYTES (SLOTS * sizeof(void *))
#define TAG_EXT ((uintptr_t)1)
#define PTR_MASK (~(uintptr_t)0xfff)
#define COUNT_ONE ((uintptr_t)2)
#define REGION_SHIFT 30 /* shard granule: 1 GiB */
#define MAX_SIZE (1ull << 44)
#define MAX_LEVELS 6 /* ceil((64 - 12) / 9) */

/* The extent as stored: 48 bytes (jemalloc has a 48-byte class). */
struct tnode {
	uint64_t iova;
	uint64_t gpa;
	uint64_t hva;
	uint32_t npages;      /* size >> 12; size < 2^44 */
	uint32_t perm_region; /* perm in bits 0..7, region in 8..31 */
	struct rcu_head rcu;
};
_Static_assert(sizeof(struct tnode) == 48, "extent node must stay 48 bytes");

/* Holds a table that waits for its grace period (a table has no spare room). */
struct tfree {
	struct rcu_head rcu;
	void *table;
	iovt_arena_t arena;
};

struct shard_lock {
	pthread_mutex_t m;
} __attribute__((aligned(64)));

struct shadow_tree {
	struct rcu_head rcu; /* shadow_tree_retire */
	void **root;
	unsigned aw, levels;
	uint64_t top; /* last valid IOVA */
	uint64_t count, mem; /* __atomic */
	struct shard_lock locks[IOVT_TREE_SHARDS];
};

/*
 * Arenas are per shard and process-wide (shared by all trees): a call_rcu
 * callback then finds its arena from the freed object alone, and creating
 * many domains does not leak jemalloc arenas (alloc.h cannot destroy them).
 */
static iovt_arena_t g_arena[IOVT_TREE_SHARDS];
static pthread_once_t g_arena_once = PTHREAD_ONCE_INIT;

static void arenas_init(void)
{
	for (unsigned i = 0; i < IOVT_TREE_SHARDS; i++)
		g_arena[i] = iovt_arena_create();
}

static inline unsigned shard_of(uint64_t iova)
{
	return (unsigned)(iova >> REGION_SHIFT) % IOVT_TREE_SHARDS;
}

static inline iovt_arena_t arena_of(uint64_t iova)
{
	return g_arena[shard_of(iova)];
}

static inline unsigned shift_of(unsigned level)
{
	return 12 + 9 * (level - 1);
}

static inline unsigned idx_of(uint64_t a, unsigned level)
{
	return (unsigned)(a >> shift_of(level)) & (SLOTS - 1);
}

/* First address of the level-`level` table that holds address a. */
static inline uint64_t table_base(uint64_t a, unsigned level)
{
	unsigned s = shift_of(level) + 9;
	return s >= 64 ? 0 : a & ~((1ull << s) - 1);
}

/* Only tables of level 1..2 below the root keep a count and may be freed. */
static inline bool counted(const struct shadow_tree *t, unsigned level)
{
	return level <= 2 && level < t->levels;
}

static inline uintptr_t slot_load(void **s)
{
	return (uintptr_t)iovt_rcu_dereference(*s);
}

static inline void slot_store(void **s, uintptr_t v)
{
	iovt_rcu_assign(*s, (void *)v);
}

static inline uint64_t node_last(const struct tnode *x)
{
	return x->iova + ((uint64_t)x->npages << 12) - 1;
}

static void node_copy(const struct tnode *x, struct iovt_extent *out)
{
	out->iova = x->iova;
	out->size = (uint64_t)x->npages << 12;
	out->gpa = x->gpa;
	out->hva = x->hva;
	out->perm = x->perm_region & 0xff;
	out->region = x->perm_region >> 8;
}

static void mem_add(struct shadow_tree *t, int64_t d)
{
	__atomic_fetch_add(&t->mem, (uint64_t)d, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------ */
/* Locks                                                                     */

/* Stripes covering [first, last]: one per 1 GiB region, all when >= 64. */
static uint64_t stripes(uint64_t first, uint64_t last)
{
	uint64_t r0 = first >> REGION_SHIFT, r1 = last >> REGION_SHIFT, m = 0;
	if (r1 - r0 >= IOVT_TREE_SHARDS - 1)
		return ~0ull;
	for (uint64_t r = r0; r <= r1; r++)
		m |= 1ull << (r % IOVT_TREE_SHARDS);
	return m;
}

/* Ascending stripe order is the one lock order, so writers never deadlock. */
static void lock_mask(struct shadow_tree *t, uint64_t m)
{
	for (; m; m &= m - 1)
		pthread_mutex_lock(&t->locks[__builtin_ctzll(m)].m);
}

static void unlock_mask(struct shadow_tree *t, uint64_t m)
{
	for (; m; m &= m - 1)
		pthread_mutex_unlock(&t->locks[__builtin_ctzll(m)].m);
}

/* ------------------------------------------------------------------------ */
/* Freeing                                                                   */

static void node_free_cb(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	struct tnode *x = caa_container_of(h, struct tnode, rcu);
	iovt_free(arena_of(x->iova), x, sizeof(*x));
}

static void table_free_cb(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	struct tfree *f = caa_container_of(h, struct tfree, rcu);
	iovt_free(f->arena, f->table, TABLE_BYTES);
	iovt_free(0, f, sizeof(*f));
}

/*
 * Retiring a table needs a holder for its rcu_head (a table has no spare
 * room), allocated *before* the table is unlinked: without memory for it the
 * caller leaves the empty table linked (count 0, reused by later inserts)
 * instead of waiting for a grace period — writers run under a domain's
 * sync_lock, and a grace-period wait there can deadlock against a drainer
 * that waits for that lock (ARCHITECTURE.md, "Lifetimes and locks").
 */
static struct tfree *tfree_alloc(void)
{
	return iovt_alloc(0, sizeof(struct tfree));
}

/* Frees an unlinked table after a grace period (readers may be inside). */
static void table_retire(struct shadow_tree *t, struct tfree *f, void **table, iovt_arena_t arena)
{
	mem_add(t, -(int64_t)iovt_alloc_usable(TABLE_BYTES));
	f->table = table;
	f->arena = arena;
	iovt_call_rcu(&f->rcu, table_free_cb);
}

/* ------------------------------------------------------------------------ */
/* Create / destroy                                                          */

static void **table_new(struct shadow_tree *t, iovt_arena_t arena)
{
	void **tb = iovt_zalloc_aligned(arena, TABLE_BYTES, TABLE_BYTES);
	if (tb)
		mem_add(t, (int64_t)iovt_alloc_usable(TABLE_BYTES));
	return tb;
}

struct shadow_tree *shadow_tree_create(unsigned addr_width)
{
	if (addr_width < 21 || addr_width > 64)
		return NULL;
	pthread_once(&g_arena_once, arenas_init);
	struct shadow_tree *t = iovt_aligned_alloc(64, sizeof(*t));
	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->aw = addr_width;
	t->levels = (addr_width - 12 + 8) / 9;
	t->top = addr_width == 64 ? ~0ull : (1ull << addr_width) - 1;
	for (unsigned i = 0; i < IOVT_TREE_SHARDS; i++)
		pthread_mutex_init(&t->locks[i].m, NULL);
	t->root = table_new(t, g_arena[0]);
	if (!t->root) {
		free(t);
		return NULL;
	}
	return t;
}

/* Frees a table and everything below it; base = its first address. */
static void destroy_table(void **tb, unsigned level, uint64_t base, iovt_arena_t arena)
{
	unsigned sh = shift_of(level);
	for (unsigned i = 0; i < SLOTS; i++) {
		uintptr_t v = (uintptr_t)tb[i];
		uint64_t sb = base + ((uint64_t)i << sh);
		if (!v)
			continue;
		if (v & TAG_EXT) {
			struct tnode *x = (struct tnode *)(v - TAG_EXT);
			/* slots are visited in address order: free at the last one */
			if (node_last(x) == sb + ((1ull << sh) - 1))
				iovt_free(arena_of(x->iova), x, sizeof(*x));
		} else {
			/* permanent tables (level >= 3) all come from arena 0 */
			destroy_table((void **)(v & PTR_MASK), level - 1, sb,
				      level - 1 >= 3 ? g_arena[0] : arena_of(sb));
		}
	}
	iovt_free(arena, tb, TABLE_BYTES);
}

/* Frees everything; no reader can still be inside (a grace period has passed). */
static void tree_free(struct shadow_tree *t)
{
	/*
	 * No rcu_barrier: callbacks queued by earlier removals touch only the
	 * object they free and the process-wide arenas, never the tree. (It
	 * would also cost a grace period per destroy, and under TSan its
	 * liburcu-internal handoff reads as a race.)
	 */
	destroy_table(t->root, t->levels, 0, g_arena[0]);
	for (unsigned i = 0; i < IOVT_TREE_SHARDS; i++)
		pthread_mutex_destroy(&t->locks[i].m);
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

/* The node covering iova, or NULL. Caller in a read section or a writer. */
static struct tnode *find_at(const struct shadow_tree *t, uint64_t iova)
{
	if (iova > t->top)
		return NULL;
	void **tb = t->root;
	for (unsigned l = t->levels;; l--) {
		uintptr_t v = slot_load(&tb[idx_of(iova, l)]);
		if (v & TAG_EXT)
			return (struct tnode *)(v - TAG_EXT);
		if (!v || l == 1)
			return NULL;
		tb = (void **)(v & PTR_MASK);
	}
}

bool shadow_tree_lookup(const struct shadow_tree *t, uint64_t iova, struct iovt_extent *out)
{
	struct tnode *x = find_at(t, iova);
	if (x && out)
		node_copy(x, out);
	return x != NULL;
}

/* First node (in IOVA order) with a slot in [lo, hi] inside table tb. */
static struct tnode *find_first_in(void **tb, unsigned level, uint64_t lo, uint64_t hi)
{
	unsigned sh = shift_of(level);
	uint64_t base = table_base(lo, level);
	for (unsigned i = idx_of(lo, level), e = idx_of(hi, level); i <= e; i++) {
		uintptr_t v = slot_load(&tb[i]);
		if (!v)
			continue;
		if (v & TAG_EXT)
			return (struct tnode *)(v - TAG_EXT);
		if (level == 1)
			continue;
		uint64_t sb = base + ((uint64_t)i << sh), sl = sb + ((1ull << sh) - 1);
		struct tnode *x = find_first_in((void **)(v & PTR_MASK), level - 1,
						lo > sb ? lo : sb, hi < sl ? hi : sl);
		if (x)
			return x;
	}
	return NULL;
}

/* First node overlapping [lo, hi] (clipped to the width), or NULL. */
static struct tnode *find_first(const struct shadow_tree *t, uint64_t lo, uint64_t hi)
{
	if (lo > t->top || lo > hi)
		return NULL;
	return find_first_in(t->root, t->levels, lo, hi < t->top ? hi : t->top);
}

struct iter {
	shadow_visit_fn fn;
	void *arg;
	const struct tnode *prev; /* an extent fills consecutive slots: visit it once */
};

static int iterate_in(void **tb, unsigned level, uint64_t lo, uint64_t hi, struct iter *it)
{
	unsigned sh = shift_of(level);
	uint64_t base = table_base(lo, level);
	for (unsigned i = idx_of(lo, level), e = idx_of(hi, level); i <= e; i++) {
		uintptr_t v = slot_load(&tb[i]);
		if (!v)
			continue;
		if (v & TAG_EXT) {
			const struct tnode *x = (const struct tnode *)(v - TAG_EXT);
			if (x == it->prev)
				continue;
			it->prev = x;
			struct iovt_extent c;
			node_copy(x, &c);
			int rc = it->fn(it->arg, &c);
			if (rc)
				return rc;
			continue;
		}
		if (level == 1)
			continue;
		uint64_t sb = base + ((uint64_t)i << sh), sl = sb + ((1ull << sh) - 1);
		int rc = iterate_in((void **)(v & PTR_MASK), level - 1, lo > sb ? lo : sb,
				    hi < sl ? hi : sl, it);
		if (rc)
			return rc;
	}
	return 0;
}

int shadow_tree_iterate(const struct shadow_tree *t, uint64_t first, uint64_t last,
			shadow_visit_fn fn, void *arg)
{
	if (first > t->top || first > last)
		return 0;
	struct iter it = { fn, arg, NULL };
	return iterate_in(t->root, t->levels, first, last < t->top ? last : t->top, &it);
}

uint64_t shadow_tree_count(const struct shadow_tree *t)
{
	return __atomic_load_n(&t->count, __ATOMIC_RELAXED);
}

uint64_t shadow_tree_memory_bytes(const struct shadow_tree *t)
{
	return __atomic_load_n(&t->mem, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------ */
/* Write side (shard locks of the span held)                                 */

/* Largest level whose aligned slot starts at a and ends by last. */
static unsigned chunk_level(const struct shadow_tree *t, uint64_t a, uint64_t last)
{
	unsigned l = 1;
	while (l < t->levels) {
		unsigned sh = shift_of(l + 1);
		if (a & ((1ull << sh) - 1) || last - a < (1ull << sh) - 1)
			break;
		l++;
	}
	return l;
}

/*
 * Clears the slot of the chunk at (a, level L) and unlinks the counted tables
 * this leaves empty, bottom up.
 */
static void clear_chunk(struct shadow_tree *t, uint64_t a, unsigned L)
{
	void **tabs[MAX_LEVELS + 1];  /* tabs[l]: the level-l table on the path */
	void **owner[MAX_LEVELS + 1]; /* owner[l]: the slot that links tabs[l] */
	tabs[t->levels] = t->root;
	owner[t->levels] = NULL;
	for (unsigned l = t->levels; l > L; l--) {
		void **s = &tabs[l][idx_of(a, l)];
		owner[l - 1] = s;
		tabs[l - 1] = (void **)(slot_load(s) & PTR_MASK);
	}
	void **s = &tabs[L][idx_of(a, L)];
	uintptr_t old = slot_load(s);
	if (old && !(old & TAG_EXT) && (L - 1 >= 3 || (old & ~PTR_MASK))) {
		/* The extent filled a lower table (see write_chunk): a permanent
		 * one, or a counted one an ENOMEM left empty and linked. Clear
		 * its slots one by one: the counts then retire it (or keep it,
		 * empty, without memory to retire it) — never leave it linked
		 * full of pointers to a node that is about to be freed. */
		for (unsigned i = 0; i < SLOTS; i++)
			clear_chunk(t, a + ((uint64_t)i << shift_of(L - 1)), L - 1);
		return;
	}
	if (old && !(old & TAG_EXT)) {
		/* an empty counted table (count 0) an ENOMEM insert left: unlink
		 * it only if it can be retired without waiting (else it stays,
		 * empty and valid) */
		struct tfree *f = tfree_alloc();
		if (!f)
			return;
		slot_store(s, 0);
		table_retire(t, f, (void **)(old & PTR_MASK), arena_of(a)); /* after unlink */
	} else {
		slot_store(s, 0);
	}
	for (unsigned l = L; counted(t, l); l++) {
		uintptr_t v = slot_load(owner[l]) - COUNT_ONE;
		struct tfree *f;
		if ((v & ~PTR_MASK) || !(f = tfree_alloc())) {
			slot_store(owner[l], v); /* still used, or kept empty (no holder) */
			return;
		}
		slot_store(owner[l], 0);
		table_retire(t, f, tabs[l], arena_of(a));
	}
}

/* Bumps the count of the level-l table whose link is *owner (if counted). */
static inline void count_up(struct shadow_tree *t, void **owner, unsigned l)
{
	if (owner && counted(t, l))
		slot_store(owner, slot_load(owner) + COUNT_ONE);
}

/* Writes node x into the slot of the chunk at (a, level L). 0 or -ENOMEM. */
static int write_chunk(struct shadow_tree *t, struct tnode *x, uint64_t a, unsigned L)
{
	void **tb = t->root, **owner = NULL;
	for (unsigned l = t->levels; l > L; l--) {
		void **s = &tb[idx_of(a, l)];
		uintptr_t v = slot_load(s);
		if (!v) {
			unsigned cl = l - 1; /* level of the table to create */
			void **nt = table_new(t, cl >= 3 ? g_arena[0] : arena_of(a));
			if (!nt) {
				/* Leave no empty counted table behind: only one
				 * this call created can have count 0 here. */
				if (counted(t, l) && !(slot_load(owner) & ~PTR_MASK))
					clear_chunk(t, a, l + 1);
				return -ENOMEM;
			}
			if (cl >= 3) {
				/* The slot is shared by every shard under it: publish
				 * with a CAS, the loser frees its unseen copy. */
				uintptr_t exp = 0;
				if (__atomic_compare_exchange_n((uintptr_t *)s, &exp, (uintptr_t)nt,
								false, __ATOMIC_RELEASE,
								__ATOMIC_ACQUIRE)) {
					v = (uintptr_t)nt;
				} else {
					iovt_free(g_arena[0], nt, TABLE_BYTES);
					mem_add(t, -(int64_t)iovt_alloc_usable(TABLE_BYTES));
					v = exp;
				}
			} else {
				/* Link it empty (count 0), then count it in its parent. */
				slot_store(s, (uintptr_t)nt);
				count_up(t, owner, l);
				v = (uintptr_t)nt;
			}
		}
		owner = s;
		tb = (void **)(v & PTR_MASK);
	}
	void **s = &tb[idx_of(a, L)];
	uintptr_t v = slot_load(s);
	if (v) {
		/*
		 * Only an empty table can sit in a slot an extent gets (the
		 * overlap check passed): a permanent one, or a counted one that
		 * an ENOMEM left empty and linked (clear_chunk). Fill its slots
		 * instead; that allocates nothing and cannot fail.
		 */
		for (unsigned i = 0; i < SLOTS; i++)
			write_chunk(t, x, a + ((uint64_t)i << shift_of(L - 1)), L - 1);
		return 0;
	}
	slot_store(s, (uintptr_t)x | TAG_EXT);
	count_up(t, owner, L);
	return 0;
}

int shadow_tree_insert(struct shadow_tree *t, const struct iovt_extent *e)
{
	if (!e || !e->size || (e->iova | e->size) & (IOVT_PAGE_SIZE - 1) ||
	    e->size >= MAX_SIZE || e->iova > t->top || e->size - 1 > t->top - e->iova ||
	    e->perm > 0xff || e->region >= (1u << 24))
		return -EINVAL;
	uint64_t last = e->iova + (e->size - 1);

	struct tnode *x = iovt_alloc(arena_of(e->iova), sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->iova = e->iova;
	x->gpa = e->gpa;
	x->hva = e->hva;
	x->npages = (uint32_t)(e->size >> 12);
	x->perm_region = e->perm | e->region << 8;

	uint64_t m = stripes(e->iova, last);
	lock_mask(t, m);
	if (find_first(t, e->iova, last)) {
		unlock_mask(t, m);
		iovt_free(arena_of(e->iova), x, sizeof(*x));
		return -EEXIST;
	}
	uint64_t a = e->iova;
	for (;;) {
		unsigned L = chunk_level(t, a, last);
		if (write_chunk(t, x, a, L) < 0)
			goto nomem;
		uint64_t span = 1ull << shift_of(L);
		if (last - a < span)
			break;
		a += span;
	}
	__atomic_fetch_add(&t->count, 1, __ATOMIC_RELAXED);
	mem_add(t, (int64_t)iovt_alloc_usable(sizeof(*x)));
	unlock_mask(t, m);
	return 0;

nomem:
	/* Undo the chunks before a; readers may have seen x: retire it. */
	for (uint64_t b = e->iova; b < a;) {
		unsigned L = chunk_level(t, b, last);
		clear_chunk(t, b, L);
		b += 1ull << shift_of(L);
	}
	unlock_mask(t, m);
	if (a == e->iova)
		iovt_free(arena_of(e->iova), x, sizeof(*x));
	else
		iovt_call_rcu(&x->rcu, node_free_cb);
	return -ENOMEM;
}

/* Clears every slot of x, then retires it. */
static void remove_node(struct shadow_tree *t, struct tnode *x)
{
	uint64_t last = node_last(x);
	for (uint64_t a = x->iova;;) {
		unsigned L = chunk_level(t, a, last);
		clear_chunk(t, a, L);
		uint64_t span = 1ull << shift_of(L);
		if (last - a < span)
			break;
		a += span;
	}
	__atomic_fetch_sub(&t->count, 1, __ATOMIC_RELAXED);
	mem_add(t, -(int64_t)iovt_alloc_usable(sizeof(*x)));
}

/* The visitor runs with the shard locks held: it must not write the tree. */
long shadow_tree_remove_range(struct shadow_tree *t, uint64_t first, uint64_t last,
			      shadow_visit_fn removed, void *arg)
{
	if (first > last)
		return -EINVAL;
	if (first > t->top)
		return 0;
	if (last > t->top)
		last = t->top;

	/*
	 * The extents overlapping [first, last] are fixed while the stripes of
	 * [first, last] are held; but removing one writes its slots in every
	 * region it spans, so those stripes are needed too. Only the extents at
	 * `first` and `last` can stick out: grow the held set until it covers
	 * them (re-locking in ascending order), then remove.
	 */
	uint64_t held = stripes(first, last), lo = first;
	lock_mask(t, held);
	for (;;) {
		struct tnode *a = find_at(t, first), *b = find_at(t, last);
		uint64_t hi = b ? node_last(b) : last;
		lo = a ? a->iova : first;
		uint64_t need = stripes(lo, hi);
		if (!(need & ~held))
			break;
		unlock_mask(t, held);
		held |= need;
		lock_mask(t, held);
	}

	long n = 0;
	for (uint64_t cur = lo;;) {
		struct tnode *x = find_first(t, cur, last);
		if (!x)
			break;
		struct iovt_extent c;
		node_copy(x, &c);
		uint64_t xl = node_last(x);
		remove_node(t, x);
		iovt_call_rcu(&x->rcu, node_free_cb);
		n++;
		if (removed)
			removed(arg, &c);
		if (xl >= last)
			break;
		cur = xl + 1;
	}
	unlock_mask(t, held);
	return n;
}
