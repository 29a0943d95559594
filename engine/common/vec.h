/* SPDX-License-Identifier: MIT */
/* A growable array of one element type; scratch buffers reused across fences. */
#ifndef IOVT_COMMON_VEC_H
#define IOVT_COMMON_VEC_H

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

/* Fault injection for the engine's own tests (never set in production), as
 * iovt_alloc_fault (alloc.h) for the allocator: when non-NULL, every growth
 * asks it first and fails with -ENOMEM when it says so. Asked on the growth
 * branch only: a reserve that fits costs nothing more. */
extern bool (*iovt_vec_fault)(size_t bytes);

#define VEC(type)            \
	struct {             \
		type *v;     \
		size_t n;    \
		size_t cap;  \
	}

/* Makes room for k elements in all (not k more); 0 or -ENOMEM. */
#define vec_reserve(vec, k)                                                            \
	((vec)->cap >= (k) ? 0 : vec_grow_to_((void **)&(vec)->v, &(vec)->cap, sizeof(*(vec)->v), (k)))

/* Makes room for one more element; 0 or -ENOMEM. */
#define vec_reserve1(vec) vec_reserve(vec, (vec)->n + 1)

#define vec_push(vec, val) (vec_reserve1(vec) ? -ENOMEM : ((vec)->v[(vec)->n++] = (val), 0))
#define vec_clear(vec) ((vec)->n = 0)
#define vec_free(vec) (free((vec)->v), (vec)->v = NULL, (vec)->n = (vec)->cap = 0)

/* Doubles the capacity (64 at first) until it holds `want`. */
static inline int vec_grow_to_(void **v, size_t *cap, size_t elem, size_t want)
{
	size_t ncap = *cap ? *cap : 64;
	while (ncap < want)
		ncap *= 2;
	if (__builtin_expect(iovt_vec_fault != NULL, 0) && iovt_vec_fault(ncap * elem))
		return -ENOMEM;
	void *p = realloc(*v, ncap * elem);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

#endif
