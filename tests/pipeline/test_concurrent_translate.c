/* SPDX-License-Identifier: MIT */
/*
 * concurrent translate: reader threads call iovt_translate while the main
 * thread edits the guest, invalidates and fences (the engine applies batches
 * and rewrites the shadow). Pinned mappings never change and must always hit;
 * churned mappings always target gpa = f(iova), so any hit must agree.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"
#include "guestsim.h"
#include "world.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define PIN_IOVA 0x100000000ull
#define CHURN_IOVA 0x200000000ull
#define CHURN_PAGES 1024

static struct world *w;
static uint64_t data_gpa;
static atomic_int stop;
static atomic_ulong hits, misses;

static uint64_t churn_gpa(uint64_t iova)
{
	return data_gpa + (iova - CHURN_IOVA);
}

static void *reader(void *arg)
{
	uint64_t s = (uint64_t)(uintptr_t)arg;
	struct iovt_domain *d = world_domain(w, 0);
	iovt_thread_register();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct iovt_extent e;
		uint64_t pin = PIN_IOVA + (gs_rand(&s) % 64) * K;
		CHECK(iovt_translate(d, pin, &e) == 0); /* present throughout: never a miss */
		CHECK_EQ(e.gpa + (pin - e.iova), data_gpa + 0x10000000ull + (pin - PIN_IOVA));
		uint64_t c = CHURN_IOVA + (gs_rand(&s) % CHURN_PAGES) * K;
		if (iovt_translate(d, c, &e) == 0) {
			CHECK_EQ(e.gpa + (c - e.iova), churn_gpa(c));
			CHECK(c >= e.iova && c - e.iova < e.size);
			atomic_fetch_add_explicit(&hits, 1, memory_order_relaxed);
		} else {
			atomic_fetch_add_explicit(&misses, 1, memory_order_relaxed);
		}
	}
	iovt_thread_unregister();
	return NULL;
}

int main(void)
{
	uint64_t s = check_pick_seed("concurrent-translate");
	struct world_config cfg = {
		.domains = 1, .addr_width = 48, .allow_2m = true, .allow_1g = true, .regions = 1,
		.region_size = 1ull << 30, .flavor = IOVT_MODEL_TYPE1, .multi_unmap = true,
		.max_mappings = 65535, .judge = true,
	};
	CHECK(world_create(&cfg, &w) == 0);
	uint64_t size;
	world_region(w, 0, &data_gpa, &size);
	data_gpa += 0x1000000;
	CHECK(world_map(w, 0, PIN_IOVA, data_gpa + 0x10000000ull, 64 * K, IOVT_PERM_RW, K) == 0);
	world_invalidate_range(w, 0, PIN_IOVA, 64 * K, 20, false);
	CHECK_EQ(world_fence(w), 0);

	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, reader, (void *)(uintptr_t)(s + i + 1));
	uint64_t rounds = (uint64_t)(20000 * check_scale());
	for (uint64_t r = 0; r < rounds; r++) {
		uint64_t page = gs_rand(&s) % CHURN_PAGES, n = 1 + gs_rand(&s) % 16;
		if (page + n > CHURN_PAGES)
			n = CHURN_PAGES - page;
		uint64_t iova = CHURN_IOVA + page * K;
		if (gs_rand(&s) % 2)
			CHECK(world_map(w, 0, iova, churn_gpa(iova), n * K, IOVT_PERM_RW, 0) == 0);
		else
			CHECK(world_unmap(w, 0, iova, n * K) == 0);
		world_invalidate_range(w, 0, iova, n * K, 20, gs_rand(&s) % 2);
		CHECK_EQ(world_fence(w), 0);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(world_full_check(w), 0);
	printf("concurrent-translate: %lu fences, %lu churn hits, %lu misses\n", rounds,
	       (unsigned long)hits, (unsigned long)misses);
	CHECK(hits > 0);
	world_destroy(w);
	return 0;
}
