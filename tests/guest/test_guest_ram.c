/* SPDX-License-Identifier: MIT */
/* guest_ram: add/remove/overlap/holes/find/read_u64, and RCU readers racing a writer. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/rcu.h"
#include "guest/guest_ram.h"
#include "guestsim.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M 0x100000ull

static uint64_t buf[4][1024] __attribute__((aligned(4096))); /* 4 x 8 KiB of "RAM" */

static void test_add_remove(void)
{
	struct guest_ram *ram = guest_ram_create();
	struct guest_ram_region r;
	uint32_t id1, id2, id3;
	CHECK(ram);
	CHECK(!guest_ram_find(ram, 0, &r));

	/* Bad arguments. */
	CHECK_EQ(guest_ram_add(ram, 0x1001, K, buf[0], NULL), -EINVAL);
	CHECK_EQ(guest_ram_add(ram, 0x1000, 0x800, buf[0], NULL), -EINVAL);
	CHECK_EQ(guest_ram_add(ram, 0x1000, 0, buf[0], NULL), -EINVAL);
	CHECK_EQ(guest_ram_add(ram, ~0ull - K + 1, 2 * K, buf[0], NULL), -EINVAL); /* wraps */
	/* The host address: NULL, off a page boundary, or wrapping past the top. */
	CHECK_EQ(guest_ram_add(ram, 0x1000, K, NULL, NULL), -EINVAL);
	CHECK_EQ(guest_ram_add(ram, 0x1000, K, (char *)buf[0] + 8, NULL), -EINVAL);
	CHECK_EQ(guest_ram_add(ram, 0x1000, 2 * K, (void *)(uintptr_t)(~0ull - K + 1), NULL), -EINVAL);

	CHECK_EQ(guest_ram_add(ram, 0x100000, 2 * K, buf[0], &id1), 0);
	CHECK_EQ(guest_ram_add(ram, 0x300000, 2 * K, buf[2], &id3), 0);
	CHECK_EQ(guest_ram_add(ram, 0x200000, 2 * K, buf[1], &id2), 0); /* lands in the middle */
	CHECK(id1 != id2 && id2 != id3 && id1 != id3);

	/* Overlaps: same start, inside, straddling either end, covering. */
	CHECK_EQ(guest_ram_add(ram, 0x100000, K, buf[3], NULL), -EEXIST);
	CHECK_EQ(guest_ram_add(ram, 0x101000, K, buf[3], NULL), -EEXIST);
	CHECK_EQ(guest_ram_add(ram, 0x0ff000, 2 * K, buf[3], NULL), -EEXIST);
	CHECK_EQ(guest_ram_add(ram, 0x201000, 2 * K, buf[3], NULL), -EEXIST);
	CHECK_EQ(guest_ram_add(ram, 0x0f0000, 0x300000, buf[3], NULL), -EEXIST);
	/* Touching exactly is not overlapping. */
	CHECK_EQ(guest_ram_add(ram, 0x102000, K, buf[3], NULL), 0);
	CHECK_EQ(guest_ram_remove(ram, 0x102000), 0);
	/* A region ending exactly at 2^64 is representable. */
	CHECK_EQ(guest_ram_add(ram, ~0ull - K + 1, K, buf[3], NULL), 0);
	CHECK(guest_ram_find(ram, ~0ull, &r));
	CHECK_EQ(r.gpa, ~0ull - K + 1);
	CHECK_EQ(guest_ram_remove(ram, ~0ull - K + 1), 0);

	/* find: inside, edges, holes between/below/above. */
	CHECK(guest_ram_find(ram, 0x200000, &r));
	CHECK_EQ(r.gpa, 0x200000);
	CHECK_EQ(r.size, 2 * K);
	CHECK_EQ(r.hva, (uintptr_t)buf[1]);
	CHECK_EQ(r.id, id2);
	CHECK(guest_ram_find(ram, 0x301fff, &r));
	CHECK_EQ(r.id, id3);
	CHECK(!guest_ram_find(ram, 0x302000, &r));
	CHECK(!guest_ram_find(ram, 0x0fffff, &r));
	CHECK(!guest_ram_find(ram, 0x250000, &r));
	CHECK(!guest_ram_find(ram, 0, &r));
	CHECK(!guest_ram_find(ram, ~0ull, &r));

	/* remove: exact start only. */
	CHECK_EQ(guest_ram_remove(ram, 0x201000), -ENOENT);
	CHECK_EQ(guest_ram_remove(ram, 0x400000), -ENOENT);
	CHECK_EQ(guest_ram_remove(ram, 0x200000), 0);
	CHECK(!guest_ram_find(ram, 0x200000, &r));
	CHECK(guest_ram_find(ram, 0x100000, &r) && r.id == id1);
	CHECK(guest_ram_find(ram, 0x300000, &r) && r.id == id3);
	CHECK_EQ(guest_ram_remove(ram, 0x200000), -ENOENT);
	/* Ids are never reused. */
	uint32_t id4;
	CHECK_EQ(guest_ram_add(ram, 0x200000, 2 * K, buf[1], &id4), 0);
	CHECK(id4 != id1 && id4 != id2 && id4 != id3);
	guest_ram_destroy(ram);
}

/*
 * The per-thread cache of the last two regions found (guest_ram.c): both
 * cached, then one removed, re-added elsewhere in host memory, and a
 * second map with a region at the same GPA: every answer is the map's
 * current one, never a cached copy of an older set or of the other map.
 */
static void test_find_cache(void)
{
	struct guest_ram *ram = guest_ram_create(), *other = guest_ram_create();
	struct guest_ram_region r;
	CHECK(ram && other);
	CHECK_EQ(guest_ram_add(ram, 0x100000, 2 * K, buf[0], NULL), 0);
	CHECK_EQ(guest_ram_add(ram, 0x200000, 2 * K, buf[1], NULL), 0);
	CHECK_EQ(guest_ram_add(other, 0x200000, 2 * K, buf[2], NULL), 0);
	for (int round = 0; round < 2; round++) { /* the second round from the cache */
		CHECK(guest_ram_find(ram, 0x100000, &r) && r.hva == (uintptr_t)buf[0]);
		CHECK(guest_ram_find(ram, 0x201000, &r) && r.hva == (uintptr_t)buf[1]);
	}
	CHECK(guest_ram_find(other, 0x200000, &r) && r.hva == (uintptr_t)buf[2]);
	CHECK(guest_ram_find(ram, 0x200000, &r) && r.hva == (uintptr_t)buf[1]);
	CHECK_EQ(guest_ram_remove(ram, 0x200000), 0);
	CHECK(!guest_ram_find(ram, 0x200000, &r));
	CHECK(guest_ram_find(ram, 0x100000, &r) && r.hva == (uintptr_t)buf[0]);
	CHECK(!guest_ram_find(ram, 0x201000, &r));
	CHECK_EQ(guest_ram_add(ram, 0x200000, 2 * K, buf[3], NULL), 0);
	CHECK(guest_ram_find(ram, 0x200000, &r) && r.hva == (uintptr_t)buf[3]);
	CHECK(guest_ram_find(other, 0x201000, &r) && r.hva == (uintptr_t)buf[2]);
	guest_ram_destroy(other);
	guest_ram_destroy(ram);
}

static void test_capacity(void)
{
	struct guest_ram *ram = guest_ram_create();
	struct guest_ram_region r;
	/* Added in descending order to exercise insertion at the front. */
	for (unsigned i = 0; i < GUEST_RAM_MAX_REGIONS; i++)
		CHECK_EQ(guest_ram_add(ram, (uint64_t)(GUEST_RAM_MAX_REGIONS - i) * 2 * M, M, buf[0], NULL), 0);
	CHECK_EQ(guest_ram_add(ram, 0, M, buf[0], NULL), -ENOSPC);
	for (unsigned i = 1; i <= GUEST_RAM_MAX_REGIONS; i++) {
		CHECK(guest_ram_find(ram, i * 2 * M + M - 1, &r));
		CHECK_EQ(r.gpa, i * 2 * M);
		CHECK(!guest_ram_find(ram, i * 2 * M + M, &r));
	}
	CHECK_EQ(guest_ram_remove(ram, 2 * M), 0);
	CHECK_EQ(guest_ram_add(ram, 0, M, buf[0], NULL), 0);
	guest_ram_destroy(ram);
}

static void test_read_u64(void)
{
	struct guest_ram *ram = guest_ram_create();
	uint64_t v = 0;
	for (unsigned i = 0; i < 1024; i++) {
		buf[0][i] = 0x1111000000000000ull + i;
		buf[1][i] = 0x2222000000000000ull + i;
	}
	CHECK_EQ(guest_ram_add(ram, 0x10000, 2 * K, buf[0], NULL), 0);
	CHECK_EQ(guest_ram_add(ram, 0x20000, 2 * K, buf[1], NULL), 0);
	CHECK_EQ(guest_ram_read_u64(ram, 0x10000, &v), 0);
	CHECK_EQ(v, 0x1111000000000000ull);
	CHECK_EQ(guest_ram_read_u64(ram, 0x11ff8, &v), 0);
	CHECK_EQ(v, 0x1111000000000000ull + 1023);
	CHECK_EQ(guest_ram_read_u64(ram, 0x20008, &v), 0);
	CHECK_EQ(v, 0x2222000000000001ull);
	v = 42;
	CHECK_EQ(guest_ram_read_u64(ram, 0x12000, &v), -EFAULT); /* hole just past region 0 */
	CHECK_EQ(guest_ram_read_u64(ram, 0x0fff8, &v), -EFAULT); /* hole just below */
	CHECK_EQ(guest_ram_read_u64(ram, 0x18000, &v), -EFAULT);
	CHECK_EQ(guest_ram_read_u64(ram, 1ull << 50, &v), -EFAULT);
	CHECK_EQ(guest_ram_read_u64(ram, 0x10004, &v), -EINVAL); /* not naturally aligned */
	CHECK_EQ(v, 42);
	/* The value is read at call time, not cached. */
	buf[1][5] = 77;
	CHECK_EQ(guest_ram_read_u64(ram, 0x20028, &v), 0);
	CHECK_EQ(v, 77);
	CHECK_EQ(guest_ram_remove(ram, 0x20000), 0);
	CHECK_EQ(guest_ram_read_u64(ram, 0x20028, &v), -EFAULT);
	guest_ram_destroy(ram);
}

/* Readers look up a stable region while a writer adds/removes others: every
 * lookup sees either a consistent old or new array (ASan catches a premature free). */
struct race {
	struct guest_ram *ram;
	int stop;
	uint64_t lookups, bad;
};

static void *reader(void *arg)
{
	struct race *rc = arg;
	urcu_memb_register_thread();
	while (!__atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE)) {
		struct guest_ram_region r;
		uint64_t v;
		iovt_rcu_read_lock();
		if (!guest_ram_find(rc->ram, 0x10008, &r) || r.gpa != 0x10000 ||
		    r.hva != (uintptr_t)buf[0])
			rc->bad++;
		if (guest_ram_read_u64(rc->ram, 0x10008, &v) || v != 0xabcdull)
			rc->bad++;
		if (guest_ram_find(rc->ram, 0x80000, &r) && (r.gpa != 0x80000 || r.size != K))
			rc->bad++;
		iovt_rcu_read_unlock();
		rc->lookups++;
	}
	urcu_memb_unregister_thread();
	return NULL;
}

static void test_rcu_race(void)
{
	struct race rc = { .ram = guest_ram_create() };
	pthread_t t;
	buf[0][1] = 0xabcd;
	CHECK_EQ(guest_ram_add(rc.ram, 0x10000, 2 * K, buf[0], NULL), 0);
	CHECK_EQ(pthread_create(&t, NULL, reader, &rc), 0);
	for (unsigned i = 0; i < 20000; i++) {
		CHECK_EQ(guest_ram_add(rc.ram, 0x80000, K, buf[2], NULL), 0);
		CHECK_EQ(guest_ram_add(rc.ram, 0x40000 + (i % 8) * 2 * K, K, buf[3], NULL), 0);
		CHECK_EQ(guest_ram_remove(rc.ram, 0x80000), 0);
		CHECK_EQ(guest_ram_remove(rc.ram, 0x40000 + (i % 8) * 2 * K), 0);
	}
	__atomic_store_n(&rc.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	CHECK_EQ(rc.bad, 0);
	CHECK(rc.lookups > 0);
	urcu_memb_barrier(); /* let the retired arrays go before destroy (leak checkers) */
	guest_ram_destroy(rc.ram);
}

/* gs_ram mirrors the simulation's regions; holes read as -EFAULT. */
static void test_guestsim_ram(void)
{
	struct guestsim *gs = gs_create(3, 4 * M, M);
	CHECK(gs);
	struct guest_ram *ram = gs_ram(gs);
	CHECK(ram);
	CHECK(gs_ram(gs) == ram);
	CHECK_EQ(gs_region_count(gs), 3);
	for (unsigned i = 0; i < 3; i++) {
		const struct gs_region *g = gs_region(gs, i);
		struct guest_ram_region r;
		uint64_t v;
		CHECK_EQ((uintptr_t)g->hva & (2 * M - 1), 0);
		CHECK(guest_ram_find(ram, g->gpa + g->size - 1, &r));
		CHECK_EQ(r.hva, (uintptr_t)g->hva);
		*(uint64_t *)((char *)g->hva + 8 * i) = 100 + i;
		CHECK_EQ(guest_ram_read_u64(ram, g->gpa + 8 * i, &v), 0);
		CHECK_EQ(v, 100 + i);
		CHECK_EQ(guest_ram_read_u64(ram, g->gpa - 8, &v), -EFAULT);
		CHECK_EQ(guest_ram_read_u64(ram, g->gpa + g->size, &v), -EFAULT);
		CHECK_EQ(gs_region_data_size(gs, i), i ? 4 * M : 3 * M);
	}
	CHECK(gs_region(gs, 3) == NULL);
	gs_destroy(gs);
}

/* Region ids stay below GUEST_RAM_ID_LIMIT (what the shadow tree records)
 * and never name a region still in the map: they wrap, skipping live ones.
 * They only grew before, and after 2^24 adds the tree refused every mapping
 * into new RAM (found by review). */
static void test_id_wrap(void)
{
	static char buf[4][4 * K] __attribute__((aligned(4096)));
	struct guest_ram *ram = guest_ram_create();
	CHECK(ram);
	uint32_t a, b, c, id;
	CHECK_EQ(guest_ram_add(ram, 0x100000, K, buf[0], &a), 0); /* id 1 */
	guest_ram_test_next_id(ram, GUEST_RAM_ID_LIMIT - 2);
	CHECK_EQ(guest_ram_add(ram, 0x200000, K, buf[1], &b), 0);
	CHECK_EQ(b, GUEST_RAM_ID_LIMIT - 2);
	CHECK_EQ(guest_ram_add(ram, 0x300000, K, buf[2], &c), 0);
	CHECK_EQ(c, GUEST_RAM_ID_LIMIT - 1);
	/* past the limit: 1 is a's (still in the map), so 2 */
	CHECK_EQ(guest_ram_add(ram, 0x400000, K, buf[3], &id), 0);
	CHECK_EQ(id, 2);
	/* churn: every id below the limit, none a live region's */
	for (unsigned i = 0; i < 1000; i++) {
		CHECK_EQ(guest_ram_remove(ram, 0x400000), 0);
		CHECK_EQ(guest_ram_add(ram, 0x400000, K, buf[3], &id), 0);
		CHECK(id > 0 && id < GUEST_RAM_ID_LIMIT);
		CHECK(id != a && id != b && id != c);
	}
	guest_ram_destroy(ram);
}

int main(void)
{
	urcu_memb_register_thread();
	test_add_remove();
	test_find_cache();
	test_capacity();
	test_read_u64();
	test_rcu_race();
	test_guestsim_ram();
	test_id_wrap();
	urcu_memb_unregister_thread();
	printf("guest-ram: ok\n");
	return 0;
}
