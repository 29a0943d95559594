/* SPDX-License-Identifier: MIT */
/* The public domain API: create/destroy, set_root, notifiers, translation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/rcu.h"
#include "common/sink_call.h"
#include "domain/domain.h"
#include "iotlb/iotlb_hit.h"
#include "tree/shadow_tree.h"

struct iovt_domain *iovt_domain_lookup(struct iovt_engine *e, uint16_t did)
{
	return domain_get_did(e, did);
}

void iovt_domain_get(struct iovt_domain *d)
{
	atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
}

void iovt_domain_put(struct iovt_domain *d)
{
	if (d)
		domain_put(d);
}

bool iovt_domain_alive(const struct iovt_domain *d)
{
	return !atomic_load_explicit(&d->dead, memory_order_acquire);
}

static bool width_ok(unsigned aw)
{
	return aw == 39 || aw == 48 || aw == 57;
}

int iovt_domain_create(struct iovt_engine *e, const struct iovt_domain_config *cfg,
		       struct iovt_domain **out)
{
	if (!cfg || !width_ok(cfg->addr_width) || (cfg->root_gpa & (IOVT_PAGE_SIZE - 1))) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	struct iovt_domain *d = calloc(1, sizeof(*d));
	if (!d) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_NO_MEMORY], 1);
		return -ENOMEM;
	}
	atomic_init(&d->refs, 1); /* the creator's handle, consumed by destroy */
	d->engine = e;
	d->did = cfg->did;
	d->addr_width = cfg->addr_width;
	d->allow_2m = cfg->allow_2m;
	d->allow_1g = cfg->allow_1g;
	d->root_gpa = cfg->root_gpa;
	iotlb_init(&d->iotlb, e->cfg.iotlb_entries);
	d->fill_walk = (struct vtd_walk_params){
		.addr_width = d->addr_width,
		.host_width = e->cfg.host_addr_width,
		.allow_2m = d->allow_2m,
		.allow_1g = d->allow_1g,
		.budget = e->cfg.walk_budget,
	}; /* root_gpa, first and last: iotlb_fill's */
	CDS_INIT_LIST_HEAD(&d->notifiers);
	cds_wfcq_node_init(&d->dirty);
	cds_lfht_node_init(&d->hnode);
	sync_lock_init(&d->sync_lock);
	pthread_mutex_init(&d->pending_lock, NULL);
	range_set_init(&d->pending, 0);
	range_set_init(&d->retry, 0);
	range_set_init(&d->capped, 0);
	range_set_init(&d->cut, 0);
	range_set_init(&d->cut_prev, 0);

	pthread_mutex_lock(&e->control_lock);
	int trc = domain_table_add(e, d);
	if (trc) {
		pthread_mutex_unlock(&e->control_lock);
		domain_free(d); /* never published */
		if (trc == -EEXIST)
			ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		else if (trc == -ENOMEM)
			ENGINE_STAT_ADD(e, errors[IOVT_ERR_NO_MEMORY], 1);
		return trc;
	}
	cds_list_add_tail(&d->link, &e->domain_list);
	pthread_mutex_unlock(&e->control_lock);
	*out = d;
	return 0;
}

/*
 * The guest rewrote the context entry: the new table is in force before this
 * returns, for every queue (a guest that waits on any queue must see it).
 * Synced here as a DSI would be, under the control lock.
 */
int iovt_domain_set_root(struct iovt_domain *d, uint64_t root_gpa)
{
	struct iovt_engine *e = d->engine;
	if (root_gpa & (IOVT_PAGE_SIZE - 1)) {
		STAT_ADD(d, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	pthread_mutex_lock(&e->control_lock);
	domain_lock_control(d);
	int rc = -ENODEV;
	if (!atomic_load_explicit(&d->dead, memory_order_relaxed)) {
		/* Fills load it without a lock (after their gen stamp). */
		__atomic_store_n(&d->root_gpa, root_gpa, __ATOMIC_RELEASE);
		rc = domain_sync_all_locked(d, &e->scratch, &e->todo);
	}
	sync_lock_release(&d->sync_lock);
	pthread_mutex_unlock(&e->control_lock);
	return rc;
}

static void free_notifier(struct iovt_notifier *n)
{
	if (n->sink.ops && n->sink.ops->destroy)
		sink_destroy(&n->sink);
	free(n);
}

/* Frees the UNMAP-only notifiers (sync_lock, or engine destroy). */
static void free_raw_notifiers(struct iovt_domain *d)
{
	struct iovt_notifier *n, *tmp;

	cds_list_for_each_entry_safe(n, tmp, &d->notifiers, link)
		free_notifier(n);
	CDS_INIT_LIST_HEAD(&d->notifiers);
}

/* Unpublishes the tree; readers still inside finish before call_rcu frees it. */
static void retire_tree(struct iovt_domain *d)
{
	struct shadow_tree *t = d->tree;
	iovt_rcu_assign(d->tree, NULL);
	shadow_tree_retire(t);
}

/*
 * Frees the notifiers and the tree without calling any sink (engine destroy:
 * no other call runs). The domain is unlinked; its memory goes with the
 * last reference.
 */
void domain_teardown(struct iovt_domain *d)
{
	iotlb_close(&d->iotlb); /* before `dead`: see iovt_translate */
	atomic_store_explicit(&d->dead, true, memory_order_release);
	free_raw_notifiers(d);
	if (d->map_notifier)
		free_notifier(d->map_notifier);
	d->map_notifier = NULL;
	if (d->tree)
		retire_tree(d);
}

/*
 * Orphans. A MAP sink that refuses to drop mappings at its notifier's
 * detach or its domain's destroy still holds them after the call returns
 * (with the error) — mappings into guest RAM that the host may later
 * remove. Detached regardless (iovt.h), the notifier is kept on the
 * engine's orphans with exactly the extents its sink still holds: those it
 * refused, copied into a tree of its own; and, when a refusal found no
 * memory there, every extent of the retired record from that one on (no
 * more were asked: they are all still held). Its sink stays alive: an
 * iovt_guest_ram_remove of a region they map into asks the sink again to
 * unmap them and fails with -EBUSY while it refuses, as for an attached
 * sink (before, it returned 0 with the device still mapping the freed
 * memory: found by the twenty-second session's review,
 * lifecycle-detach-refused-ram). Exact, never a superset: a superset (the
 * whole record, when the copy had no memory) was asked without the sink's
 * exact-count flag, and a type1-style refusal (0, nothing removed) then
 * passed for success, the removal returning 0 with the region mapped
 * (found by the twenty-third session's review, lifecycle-orphan-nomem-
 * short). An orphan whose extents are all gone is freed (its sink's
 * destroy called then); the rest at engine destroy. Control lock for all
 * of it; an orphan tree has no readers: the retired record's last ones are
 * gone after the removal's grace period.
 */
static void orphan_free(struct iovt_notifier *n)
{
	shadow_tree_retire(n->orphan_tree);
	shadow_tree_retire(n->orphan_rest);
	n->orphan_tree = n->orphan_rest = NULL;
	free_notifier(n);
}

/* retire_map_notifier's end: the record `old` retired, or kept as an
 * orphan's with the notifier (rc: the unmapping's result; kept, stopped,
 * from: sync_unmap_everything's). */
static void orphan_keep(struct iovt_domain *d, int rc, struct shadow_tree *old,
			struct shadow_tree *kept, bool stopped, uint64_t from)
{
	struct iovt_notifier *n = d->map_notifier;
	if (!rc || (!stopped && (!kept || !shadow_tree_count(kept)))) {
		shadow_tree_retire(kept); /* never published; NULL: none */
		shadow_tree_retire(old);
		free_notifier(n);
		return;
	}
	if (stopped) {
		n->orphan_rest = old; /* from `from` on: still held */
		n->orphan_from = from;
	} else {
		shadow_tree_retire(old);
	}
	n->orphan_tree = kept;
	n->domain = NULL;
	cds_list_add_tail(&n->link, &d->engine->orphans);
}

/* One orphan's extents into `region`: each asked alone (unmap_alone: an
 * UNMAP the sink accepts, or answers -ENOENT — not held — takes it out);
 * 0 or the first refusal. */
struct orphan_purge {
	uint32_t region;
	struct iovt_extent x; /* the extent found, if any */
	bool found;
};

static int orphan_find(void *arg, const struct iovt_extent *x)
{
	struct orphan_purge *o = arg;
	if (x->region != o->region)
		return 0;
	o->x = *x;
	o->found = true;
	return 1;
}

static int orphan_purge_tree(const struct iovt_sink *sink, struct shadow_tree *tree,
			     uint32_t region, struct sync_stats *st)
{
	struct orphan_purge o = { .region = region };
	uint64_t cur = 0;
	int first_err = 0;
	if (!tree)
		return 0;
	for (;;) {
		o.found = false;
		shadow_tree_iterate_w(tree, cur, UINT64_MAX, orphan_find, &o);
		if (!o.found)
			break;
		const uint64_t last = o.x.iova + (o.x.size - 1);
		uint64_t done;
		int rc = unmap_alone(sink, &o.x, st, &done);
		if (rc >= 0)
			shadow_tree_remove_count(tree, o.x.iova, last, NULL);
		else if (!first_err)
			first_err = rc;
		if (last == UINT64_MAX)
			break;
		cur = last + 1;
	}
	return first_err;
}

static int orphan_purge(struct iovt_engine *e, struct iovt_notifier *n, uint32_t region)
{
	/* A short answer from an IOVT_SINK_EXACT_UNMAPPED sink is a refusal
	 * (unmap_alone), as at the detach: type1 before 6.3 stops at another
	 * process's mapping and answers 0 (taken as success here, the removal
	 * returned 0 with the mapping held: found by review). Every extent
	 * asked is one the sink holds (the orphan is exact), so such an
	 * answer is never an extent already dropped. */
	if (n->orphan_from) {
		/* below orphan_from: dropped at the detach, or refused and in
		 * orphan_tree; the removal's grace period has passed (no reader) */
		shadow_tree_remove_count(n->orphan_rest, 0, n->orphan_from - 1, NULL);
		n->orphan_from = 0;
	}
	struct sync_stats st = { 0 };
	int first_err = orphan_purge_tree(&n->sink, n->orphan_tree, region, &st);
	int rc = orphan_purge_tree(&n->sink, n->orphan_rest, region, &st);
	if (rc && !first_err)
		first_err = rc;
	if (st.errors[IOVT_ERR_SINK_UNMAP])
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_SINK_UNMAP], st.errors[IOVT_ERR_SINK_UNMAP]);
	return first_err;
}

static bool orphan_empty(const struct iovt_notifier *n)
{
	return (!n->orphan_tree || !shadow_tree_count(n->orphan_tree)) &&
	       (!n->orphan_rest || (!n->orphan_from && !shadow_tree_count(n->orphan_rest)));
}

int engine_orphans_purge(struct iovt_engine *e, uint32_t region)
{
	struct iovt_notifier *n, *tmp;
	int err = 0;
	cds_list_for_each_entry_safe(n, tmp, &e->orphans, link) {
		int rc = orphan_purge(e, n, region);
		if (rc && !err)
			err = rc;
		if (orphan_empty(n)) {
			cds_list_del(&n->link);
			orphan_free(n);
		}
	}
	return err;
}

void engine_orphans_free(struct iovt_engine *e)
{
	struct iovt_notifier *n, *tmp;
	cds_list_for_each_entry_safe(n, tmp, &e->orphans, link)
		orphan_free(n);
	CDS_INIT_LIST_HEAD(&e->orphans);
}

/* Tells the MAP sink to drop everything, then retires the tree (or keeps
 * what the sink refused, with the notifier: orphans above). Control and
 * sync locks: no grace-period wait here (shadow_tree_retire). */
static int retire_map_notifier(struct iovt_domain *d)
{
	struct sync_target t;
	struct sync_stats st = { 0 };
	int rc;

	domain_sync_target(d, &t);
	/* While the MAP notifier was attached, syncs left the IOTLB alone
	 * (domain_sync_locked_carry): what it cached before the attach, or
	 * what a fill that walked before it cached after, may be stale. Once
	 * the tree is unpublished translate reads the IOTLB again, so it is
	 * emptied first, while no reader uses it (a fill in flight stamped
	 * gen before this flush: it never publishes its entry). Flushed after the
	 * tree went, a translate in between answered from entries that a
	 * fenced invalidation had made stale (found by review; the
	 * lifecycle-detach-stale test). */
	domain_iotlb_flush(d);
	/* Unpublished, then the sink emptied from it: the record stays whole
	 * until it is freed (sync_unmap_everything), so a translate that
	 * still holds it finds what the guest maps — emptied as the sink was,
	 * it answered -ENOENT for mapped pages (lifecycle-attach-translate);
	 * one that comes later walks the guest. */
	iovt_rcu_assign(d->tree, NULL);
	/* The extents the sink refuses to drop are kept (orphan_keep). */
	struct shadow_tree *kept;
	bool stopped;
	uint64_t from;
	rc = sync_unmap_everything(&t, &st, &kept, &stopped, &from);
	domain_fold_stats(d, &st);
	orphan_keep(d, rc, t.tree, kept, stopped, from);
	d->map_notifier = NULL;
	range_set_clear(&d->retry);
	range_set_clear(&d->capped);
	return rc;
}

/*
 * Destroy waits for nothing but the two locks: the domain is marked dead and
 * emptied under sync_lock (a drainer that holds a reference and waits for
 * the lock then finds it dead), unlinked, and the creator's reference is
 * dropped; the memory goes after the last holder and a grace period.
 */
int iovt_domain_destroy(struct iovt_domain *d)
{
	struct iovt_engine *e = d->engine;
	int rc = 0;

	pthread_mutex_lock(&e->control_lock);
	domain_lock_control(d);
	if (atomic_load_explicit(&d->dead, memory_order_relaxed)) {
		sync_lock_release(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		return -ENODEV;
	}
	if (d->map_notifier)
		rc = retire_map_notifier(d);
	free_raw_notifiers(d);
	/* Closed before `dead`: a reader that sees `dead` finds no IOTLB
	 * entry and its fill returns -ENODEV (iovt_translate reads no `dead`). */
	DSTAT_ADD_OWNED(d, iotlb_invalidated, iotlb_close(&d->iotlb));
	atomic_store_explicit(&d->dead, true, memory_order_release);
	pthread_mutex_lock(&d->pending_lock);
	range_set_clear(&d->pending);
	atomic_store_explicit(&d->pending_any, false, memory_order_relaxed);
	pthread_mutex_unlock(&d->pending_lock);
	domain_fold_into_engine(d);
	sync_lock_release(&d->sync_lock);
	domain_table_del(e, d);
	atomic_fetch_add_explicit(&e->domain_gen, 1, memory_order_release);
	cds_list_del(&d->link);
	domain_unqueue(d);
	pthread_mutex_unlock(&e->control_lock);
	domain_put(d); /* the creator's handle */
	return rc;
}

int iovt_notifier_attach(struct iovt_domain *d, unsigned flags, const struct iovt_sink *sink,
			 struct iovt_notifier **out)
{
	struct iovt_engine *e = d->engine;
	bool wants_map = flags & IOVT_NOTIFY_MAP;

	/* A MAP sink's page sizes must include 4 KiB: the record maps any
	 * run of whole pages (page_sizes was read nowhere, and a sink of 2 MiB
	 * pages refused every MAP, retried forever; found by review). Flags
	 * the header does not define, and PARTIAL_UNCOUNTED without
	 * PARTIAL_UNMAP, are refused: an old build would ignore a later one. */
	const uint32_t cf = sink ? sink->caps.flags : 0;
	if (!sink || !sink->ops || !sink->ops->unmap || !flags ||
	    (flags & ~(IOVT_NOTIFY_IOTLB_EVENTS | IOVT_NOTIFY_DEVIOTLB_UNMAP)) ||
	    (wants_map && (!(flags & IOVT_NOTIFY_UNMAP) || !sink->ops->map ||
			   (flags & IOVT_NOTIFY_DEVIOTLB_UNMAP) ||
			   (sink->caps.page_sizes && !(sink->caps.page_sizes & IOVT_PAGE_SIZE)))) ||
	    (cf & ~IOVT_SINK_CAPS_KNOWN) ||
	    ((cf & IOVT_SINK_PARTIAL_UNCOUNTED) && !(cf & IOVT_SINK_PARTIAL_UNMAP))) {
		STAT_ADD(d, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	struct iovt_notifier *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->domain = d;
	n->flags = flags;
	n->sink = *sink;

	pthread_mutex_lock(&e->control_lock);
	domain_lock_control(d);
	if (atomic_load_explicit(&d->dead, memory_order_relaxed)) {
		sync_lock_release(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		free(n);
		return -ENODEV;
	}
	if (!wants_map) {
		cds_list_add_tail(&n->link, &d->notifiers);
		sync_lock_release(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		*out = n;
		return 0;
	}
	if (d->map_notifier) {
		sync_lock_release(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		free(n);
		STAT_ADD(d, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EBUSY;
	}
	struct shadow_tree *tree = shadow_tree_create(d->addr_width);
	if (!tree) {
		sync_lock_release(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		free(n);
		return -ENOMEM;
	}
	d->map_notifier = n;

	/* Replay: the new sink starts equal to the guest view. Into the tree
	 * before it is published: until then translate walks the guest (the
	 * IOTLB), not a record still filling (-ENOENT for pages the guest
	 * maps, found by review; lifecycle-attach-translate). No sync runs
	 * meanwhile: sync_lock is held. */
	struct sync_target t;
	struct sync_stats st = { 0 };
	struct range all = { 0, domain_top(d) };
	domain_sync_target(d, &t);
	t.tree = tree;
	int rc = sync_ranges(&t, &all, 1, &e->scratch, &st, &d->retry);
	iovt_rcu_assign(d->tree, tree);
	domain_fold_stats(d, &st);
	if (!range_set_empty(&d->retry) || !range_set_empty(&d->capped))
		domain_mark_dirty(d);
	sync_lock_release(&d->sync_lock);
	pthread_mutex_unlock(&e->control_lock);
	*out = n;
	return rc;
}

int iovt_notifier_detach(struct iovt_notifier *n)
{
	struct iovt_domain *d = n->domain;
	int rc = 0;

	pthread_mutex_lock(&d->engine->control_lock);
	domain_lock_control(d);
	if (n == d->map_notifier) {
		rc = retire_map_notifier(d);
	} else {
		cds_list_del(&n->link);
		free_notifier(n);
	}
	sync_lock_release(&d->sync_lock);
	pthread_mutex_unlock(&d->engine->control_lock);
	return rc;
}

/* The end of a translate that found nothing in the IOTLB or the shadow
 * (rc: -ENOENT, a walk's error, -ENODEV): counted. */
static int translate_failed(struct iovt_domain *d, int rc)
{
	if (rc == -ENOENT)
		STAT_ADD(d, translate_noent, 1);
	else if (rc != -ENODEV)
		STAT_ADD(d, translate_fault, 1);
	return rc;
}

/* An IOTLB miss: a walk, the answer cached (misses and evictions: counted
 * by the IOTLB, iotlb_counter). Read side. */
static int translate_fill(struct iovt_domain *d, uint64_t iova, struct iovt_extent *out)
{
	struct iotlb_fill_stats st = { 0 };
	enum vtd_error why = VTD_ERR_COUNT;
	return iotlb_fill(&d->iotlb, d->engine->ram, &d->fill_walk, &d->root_gpa, &d->dead,
			  domain_top(d), iova, out, &st, &why);
}

/*
 * iovt_translate whole, for a domain with a MAP notifier (the shadow: what
 * the sink holds; its IOTLB if the notifier went meanwhile). Its own way,
 * so that the IOTLB's hit (translate_iotlb) does not save the registers
 * the shadow's call needs, while the shadow's answer costs what it did.
 */
static __attribute__((noinline)) int translate_general(struct iovt_domain *d, uint64_t iova,
						       struct iovt_extent *out)
{
	int rc;
	iovt_rcu_read_lock();
	struct shadow_tree *t = iovt_rcu_dereference(d->tree);
	if (t)
		rc = shadow_tree_translate(t, iova, out, d->iotlb.entries) ? 0 : -ENOENT;
	else
		rc = iotlb_lookup(&d->iotlb, iova, out) ? translate_fill(d, iova, out) : 0;
	iovt_rcu_read_unlock();
	return rc ? translate_failed(d, rc) : 0;
}

/* iovt_translate past the IOTLB's 4 KiB set (tab: the table, or NULL):
 * its large-page sets, then a walk. Entered inside the read-side section,
 * which it ends. */
static __attribute__((noinline)) int translate_large_or_miss(struct iovt_domain *d,
							     struct iotlb_table *tab, uint64_t iova,
							     struct iovt_extent *out)
{
	int rc;
	if (tab && iotlb_find_large(tab, iova, out)) {
		iotlb_hit(tab);
		rc = 0;
	} else {
		rc = translate_fill(d, iova, out);
	}
	iovt_rcu_read_unlock();
	return rc ? translate_failed(d, rc) : 0;
}

/* iovt_translate for a domain without a MAP notifier: its IOTLB's 4 KiB
 * set inline, without a call on a hit; the large-page sets and a miss are
 * tail calls. */
static __attribute__((noinline)) int translate_iotlb(struct iovt_domain *d, uint64_t iova,
						     struct iovt_extent *out)
{
	iovt_rcu_read_lock();
	if (__builtin_expect(iovt_rcu_dereference(d->tree) != NULL, 0)) {
		iovt_rcu_read_unlock(); /* attached since iovt_translate looked */
		return translate_general(d, iova, out);
	}
	struct iotlb_table *tab;
	if (!iotlb_find_4k(&d->iotlb, iova, &tab, out))
		return translate_large_or_miss(d, tab, iova, out);
	iotlb_hit(tab);
	iovt_rcu_read_unlock();
	return 0;
}

int iovt_translate(struct iovt_domain *d, uint64_t iova, struct iovt_extent *out)
{
	/* A domain with a MAP notifier answers from the shadow (what the sink
	 * holds), the others from their IOTLB. This look only picks the way:
	 * each loads the tree again inside its read-side section, where a
	 * notifier attached or detached meanwhile is seen. Both ways are tail
	 * calls, so that neither pays for the other's registers. No `dead`
	 * check on either: destroy closes the IOTLB before it sets `dead`, so
	 * a reader that sees `dead` misses and its fill returns -ENODEV
	 * (iotlb_close, iotlb_fill); `dead` shares a line with the reference
	 * count that every drain moves. */
	if (__atomic_load_n(&d->tree, __ATOMIC_RELAXED))
		return translate_general(d, iova, out);
	return translate_iotlb(d, iova, out);
}

int iovt_translate_range(struct iovt_domain *d, uint64_t iova, uint64_t len, unsigned access,
			 struct iovt_extent *out)
{
	if (!len || !access || (access & ~IOVT_PERM_RW)) {
		STAT_ADD(d, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	int rc = iovt_translate(d, iova, out);
	if (rc)
		return rc;
	if ((out->perm & access) != access) {
		STAT_ADD(d, translate_eacces, 1);
		return -EACCES;
	}
	uint64_t avail = out->iova + out->size - iova;
	if (avail > len)
		avail = len;
	if (avail > INT32_MAX)
		avail = INT32_MAX;
	return (int)avail;
}
