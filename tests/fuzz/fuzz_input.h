/* SPDX-License-Identifier: MIT */
/* The fuzz targets' input reader: big-endian fields taken from the front of
 * the input; past its end every byte reads as 0, so any input is a program. */
#ifndef IOVT_FUZZ_INPUT_H
#define IOVT_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct reader {
	const uint8_t *p;
	size_t n;
};

/* The next `bytes` bytes (at most 8) as one number. */
static inline uint64_t take(struct reader *r, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++)
		v = (v << 8) | (r->n ? (r->n--, *r->p++) : 0);
	return v;
}

/* The low `bits` bits (1..32) of the next whole bytes that hold them. */
static inline unsigned take_bits(struct reader *r, unsigned bits)
{
	return (unsigned)(take(r, (bits + 7) / 8) & ((1ull << bits) - 1));
}

#endif
