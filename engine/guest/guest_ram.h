/* SPDX-License-Identifier: MIT */
/*
 * The guest-physical memory map: RAM regions (GPA range -> host address),
 * with holes between them. Knows nothing of the tree or sinks.
 *
 * Readers (the walker, GPA->HVA translation) look regions up lock-free under
 * RCU: the region array is immutable once published; add/remove copy it,
 * publish the copy and free the old one after a grace period. Writers
 * serialise on a mutex (RAM hot-plug is rare).
 */
#ifndef IOVT_GUEST_RAM_H
#define IOVT_GUEST_RAM_H

#include <stdbool.h>
#include <stdint.h>

#define GUEST_RAM_MAX_REGIONS 256u
/* Region ids are below this (the shadow tree records 24 bits of them); they
 * wrap, never naming a region still in the map (guest_ram.c, new_id). */
#define GUEST_RAM_ID_LIMIT (1u << 24)

struct guest_ram_region {
	uint64_t gpa;    /* first byte, 4 KiB aligned */
	uint64_t size;   /* bytes, 4 KiB multiple, > 0 */
	uint64_t hva;    /* host address of gpa */
	uint32_t id;     /* stable id, unique for the life of the map */
};

struct guest_ram;

struct guest_ram *guest_ram_create(void);
void guest_ram_destroy(struct guest_ram *ram); /* no concurrent users */

/* Adds a region. -EINVAL (unaligned, zero size, wraps), -EEXIST (overlaps a
 * region), -ENOSPC (GUEST_RAM_MAX_REGIONS), -ENOMEM. *id_out may be NULL. */
int guest_ram_add(struct guest_ram *ram, uint64_t gpa, uint64_t size, void *hva, uint32_t *id_out);

/* Removes the region starting exactly at gpa. -ENOENT if none, -ENOMEM.
 * Readers inside a read-side section may still see it: the caller waits a
 * grace period before the host memory may go. */
int guest_ram_remove(struct guest_ram *ram, uint64_t gpa);
/* The same, copying the removed region to *removed (may be NULL). */
int guest_ram_take(struct guest_ram *ram, uint64_t gpa, struct guest_ram_region *removed);
/* Puts back a region taken by guest_ram_take, with its id. -EEXIST, -ENOMEM. */
int guest_ram_restore(struct guest_ram *ram, const struct guest_ram_region *r);

/* Copies the region containing gpa into *out. Returns false in a hole.
 * Caller inside an RCU read-side section, or not racing writers. */
bool guest_ram_find(const struct guest_ram *ram, uint64_t gpa, struct guest_ram_region *out);

/* Copies the first region that ends after gpa (the one containing it, else
 * the next one above) into *out; false when no RAM lies at or above gpa.
 * Lets a caller skip a hole in one step instead of page by page.
 * Caller inside an RCU read-side section, or not racing writers. */
bool guest_ram_find_next(const struct guest_ram *ram, uint64_t gpa, struct guest_ram_region *out);

/* Tests only: sets the next id to try (1..GUEST_RAM_ID_LIMIT-1); returns
 * the one it replaces. Writer-side (no concurrent add). */
uint32_t guest_ram_test_next_id(struct guest_ram *ram, uint32_t next);

/* Reads the naturally aligned 8-byte word at gpa (the guest may be writing
 * it concurrently: a relaxed atomic load). -EFAULT when gpa is in a hole.
 * Caller inside an RCU read-side section. */
int guest_ram_read_u64(const struct guest_ram *ram, uint64_t gpa, uint64_t *val);

#endif
