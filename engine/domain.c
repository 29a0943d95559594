/* SPDX-License-Identifier: MIT */
/* Domains, notifiers and translation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/rcu.h"
#include "engine_internal.h"
#include "tree/shadow_tree.h"


static int match_did(struct cds_lfht_node *node, const void *key)
{
	return caa_container_of(node, struct iovt_domain, hnode)->did == *(const uint16_t *)key;
}

static unsigned long hash_did(uint16_t did)
{
	/* Fibonacci hashing spreads dense DIDs over the buckets. */
	return (unsigned long)(did * 0x9E3779B97F4A7C15ull);
}

struct iovt_domain *iovt_domain_lookup(struct iovt_engine *e, uint16_t did)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;

	iovt_rcu_read_lock();
	cds_lfht_lookup(e->domains, hash_did(did), match_did, &did, &it);
	node = cds_lfht_iter_get_node(&it);
	iovt_rcu_read_unlock();
	return node ? caa_container_of(node, struct iovt_domain, hnode) : NULL;
}

static bool width_ok(unsigned aw)
{
	return aw == 39 || aw == 48 || aw == 57;
}

uint64_t domain_top(const struct iovt_domain *d)
{
	return (1ull << d->addr_width) - 1;
}

int iovt_domain_create(struct iovt_engine *e, const struct iovt_domain_config *cfg,
		       struct iovt_domain **out)
{
	if (!cfg || !width_ok(cfg->addr_width) || (cfg->root_gpa & (IOVT_PAGE_SIZE - 1)))
		return -EINVAL;
	struct iovt_domain *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->engine = e;
	d->did = cfg->did;
	d->addr_width = cfg->addr_width;
	d->allow_2m = cfg->allow_2m;
	d->allow_1g = cfg->allow_1g;
	d->root_gpa = cfg->root_gpa;
	CDS_INIT_LIST_HEAD(&d->notifiers);
	cds_wfcq_node_init(&d->dirty);
	cds_lfht_node_init(&d->hnode);
	pthread_mutex_init(&d->sync_lock, NULL);
	pthread_mutex_init(&d->pending_lock, NULL);
	range_set_init(&d->pending, 0);
	range_set_init(&d->retry, 0);

	pthread_mutex_lock(&e->control_lock);
	iovt_rcu_read_lock();
	struct cds_lfht_node *got =
		cds_lfht_add_unique(e->domains, hash_did(d->did), match_did, &d->did, &d->hnode);
	iovt_rcu_read_unlock();
	if (got != &d->hnode) {
		pthread_mutex_unlock(&e->control_lock);
		range_set_free(&d->pending);
		range_set_free(&d->retry);
		pthread_mutex_destroy(&d->sync_lock);
		pthread_mutex_destroy(&d->pending_lock);
		free(d);
		return -EEXIST;
	}
	cds_list_add_tail(&d->link, &e->domain_list);
	pthread_mutex_unlock(&e->control_lock);
	*out = d;
	return 0;
}

int iovt_domain_set_root(struct iovt_domain *d, uint64_t root_gpa)
{
	if (root_gpa & (IOVT_PAGE_SIZE - 1))
		return -EINVAL;
	pthread_mutex_lock(&d->engine->control_lock);
	pthread_mutex_lock(&d->sync_lock);
	d->root_gpa = root_gpa;
	pthread_mutex_unlock(&d->sync_lock);
	domain_add_pending(d, 0, 0, true);
	pthread_mutex_unlock(&d->engine->control_lock);
	return 0;
}

static void free_notifier(struct iovt_notifier *n)
{
	if (n->sink.ops && n->sink.ops->destroy)
		n->sink.ops->destroy(n->sink.ctx);
	free(n);
}

/* Frees a domain already unlinked from the engine (no sink is called). */
void engine_free_domain(struct iovt_domain *d)
{
	struct iovt_notifier *n, *tmp;

	cds_list_for_each_entry_safe(n, tmp, &d->notifiers, link)
		free_notifier(n);
	if (d->map_notifier)
		free_notifier(d->map_notifier);
	if (d->tree) {
		struct shadow_tree *t = d->tree;
		iovt_rcu_assign(d->tree, NULL);
		shadow_tree_destroy(t); /* waits for readers */
	}
	range_set_free(&d->pending);
	range_set_free(&d->retry);
	pthread_mutex_destroy(&d->pending_lock);
	pthread_mutex_destroy(&d->sync_lock);
	free(d);
}

/* Tells the MAP sink to drop everything, then retires the tree. Control and sync locks. */
static int retire_map_notifier(struct iovt_domain *d)
{
	struct sync_target t;
	struct sync_stats st = { 0 };
	int rc;

	domain_sync_target(d, &t);
	rc = sync_unmap_everything(&t, &st);
	domain_fold_stats(d, &st);
	struct shadow_tree *tree = d->tree;
	iovt_rcu_assign(d->tree, NULL);
	shadow_tree_destroy(tree);
	free_notifier(d->map_notifier);
	d->map_notifier = NULL;
	return rc;
}

int iovt_domain_destroy(struct iovt_domain *d)
{
	struct iovt_engine *e = d->engine;
	int rc = 0;

	pthread_mutex_lock(&e->control_lock);
	pthread_mutex_lock(&d->sync_lock);
	if (d->map_notifier)
		rc = retire_map_notifier(d);
	d->dead = true; /* a drainer that still finds it syncs nothing */
	pthread_mutex_unlock(&d->sync_lock);
	iovt_rcu_read_lock();
	cds_lfht_del(e->domains, &d->hnode);
	iovt_rcu_read_unlock();
	atomic_fetch_add_explicit(&e->domain_gen, 1, memory_order_release);
	cds_list_del(&d->link);
	pthread_mutex_unlock(&e->control_lock);

	/* A drainer that found the domain before it left the table may still
	 * queue it; after the grace period nobody can, so unqueue then. */
	iovt_synchronize_rcu();
	/* A drainer leaves its read-side section once it holds sync_lock
	 * (domain_sync_lock): one that got the lock in time finds `dead` and
	 * lets go; pass through the lock so it has before d is freed. */
	pthread_mutex_lock(&d->sync_lock);
	pthread_mutex_unlock(&d->sync_lock);
	pthread_mutex_lock(&e->control_lock);
	domain_unqueue(d);
	pthread_mutex_unlock(&e->control_lock);
	engine_free_domain(d);
	return rc;
}

int iovt_notifier_attach(struct iovt_domain *d, unsigned flags, const struct iovt_sink *sink,
			 struct iovt_notifier **out)
{
	struct iovt_engine *e = d->engine;
	bool wants_map = flags & IOVT_NOTIFY_MAP;

	if (!sink || !sink->ops || !sink->ops->unmap || !flags ||
	    (flags & ~(IOVT_NOTIFY_IOTLB_EVENTS | IOVT_NOTIFY_DEVIOTLB_UNMAP)) ||
	    (wants_map && (!(flags & IOVT_NOTIFY_UNMAP) || !sink->ops->map)))
		return -EINVAL;
	struct iovt_notifier *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->domain = d;
	n->flags = flags;
	n->sink = *sink;

	pthread_mutex_lock(&e->control_lock);
	pthread_mutex_lock(&d->sync_lock);
	if (!wants_map) {
		cds_list_add_tail(&n->link, &d->notifiers);
		pthread_mutex_unlock(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		*out = n;
		return 0;
	}
	if (d->map_notifier) {
		pthread_mutex_unlock(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		free(n);
		return -EBUSY;
	}
	struct shadow_tree *tree = shadow_tree_create(d->addr_width);
	if (!tree) {
		pthread_mutex_unlock(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		free(n);
		return -ENOMEM;
	}
	d->map_notifier = n;
	iovt_rcu_assign(d->tree, tree);

	/* Replay: the new sink starts equal to the guest view. */
	struct sync_target t;
	struct sync_stats st = { 0 };
	struct range all = { 0, domain_top(d) };
	domain_sync_target(d, &t);
	int rc = sync_ranges(&t, &all, 1, &e->scratch, &st, &d->retry);
	domain_fold_stats(d, &st);
	if (!range_set_empty(&d->retry))
		domain_mark_dirty(d);
	pthread_mutex_unlock(&d->sync_lock);
	pthread_mutex_unlock(&e->control_lock);
	*out = n;
	return rc;
}

int iovt_notifier_detach(struct iovt_notifier *n)
{
	struct iovt_domain *d = n->domain;
	int rc = 0;

	pthread_mutex_lock(&d->engine->control_lock);
	pthread_mutex_lock(&d->sync_lock);
	if (n == d->map_notifier) {
		rc = retire_map_notifier(d);
		range_set_clear(&d->retry);
	} else {
		cds_list_del(&n->link);
		free_notifier(n);
	}
	pthread_mutex_unlock(&d->sync_lock);
	pthread_mutex_unlock(&d->engine->control_lock);
	return rc;
}

int iovt_translate(struct iovt_domain *d, uint64_t iova, struct iovt_extent *out)
{
	int rc;

	iovt_rcu_read_lock();
	struct shadow_tree *t = iovt_rcu_dereference(d->tree);
	if (!t)
		rc = -ENODEV;
	else
		rc = shadow_tree_lookup(t, iova, out) ? 0 : -ENOENT;
	iovt_rcu_read_unlock();
	return rc;
}
