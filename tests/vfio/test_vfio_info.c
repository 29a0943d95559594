/* SPDX-License-Identifier: MIT */
/*
 * vfio-info-parse: iovt_vfio_type1_parse_info fed synthetic
 * VFIO_IOMMU_GET_INFO replies, laid out as the kernel lays them out
 * (struct vfio_iommu_type1_info, then capabilities at 8-byte aligned offsets,
 * chained by `next`): the reply a 6.12 kernel gave in the guest (two ranges
 * around the MSI window, dma_avail 65535, a migration capability to skip),
 * chains in other orders, an old kernel without a chain, and malformed
 * replies (loops, offsets out of the buffer, truncated capabilities,
 * overlapping ranges), which must be -EPROTO and never read out of bounds
 * (the buffers are exact-size heap blocks, so ASan would see it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/vfio.h>

#include "check.h"
#include "iovt_vfio.h"

CHECK_SEED_STORAGE;

struct buf {
	unsigned char b[4096];
	size_t len;
};

static struct vfio_iommu_type1_info *hdr(struct buf *b, uint64_t pgsizes, bool caps)
{
	memset(b, 0, sizeof(*b));
	struct vfio_iommu_type1_info *i = (void *)b->b;
	i->argsz = sizeof(*i);
	i->flags = VFIO_IOMMU_INFO_PGSIZES | (caps ? VFIO_IOMMU_INFO_CAPS : 0);
	i->iova_pgsizes = pgsizes;
	b->len = sizeof(*i);
	return i;
}

/* Appends a capability (8-byte aligned like the kernel), links it after
 * *prev_next (or the header's cap_offset), returns its offset. */
static size_t add_cap(struct buf *b, uint32_t *link, const void *cap, size_t len)
{
	size_t off = (b->len + 7) & ~(size_t)7;
	memcpy(b->b + off, cap, len);
	b->len = off + len;
	*link = (uint32_t)off;
	((struct vfio_iommu_type1_info *)b->b)->argsz = (uint32_t)b->len;
	return off;
}

static size_t add_ranges(struct buf *b, uint32_t *link, const struct vfio_iova_range *r,
			 uint32_t n)
{
	unsigned char tmp[1024];
	struct vfio_iommu_type1_info_cap_iova_range *c = (void *)tmp;
	memset(tmp, 0, sizeof(tmp));
	c->header.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
	c->header.version = 1;
	c->nr_iovas = n;
	memcpy(c->iova_ranges, r, n * sizeof(*r));
	return add_cap(b, link, tmp, sizeof(*c) + n * sizeof(*r));
}

static size_t add_avail(struct buf *b, uint32_t *link, uint32_t avail)
{
	struct vfio_iommu_type1_info_dma_avail c = { .header = { .id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
								   .version = 1 },
						     .avail = avail };
	return add_cap(b, link, &c, sizeof(c));
}

static size_t add_migration(struct buf *b, uint32_t *link)
{
	struct vfio_iommu_type1_info_cap_migration c = {
		.header = { .id = VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, .version = 1 },
		.pgsize_bitmap = 4096, .max_dirty_bitmap_size = 1 << 20 };
	return add_cap(b, link, &c, sizeof(c));
}

static uint32_t *next_of(struct buf *b, size_t off)
{
	return &((struct vfio_info_cap_header *)(b->b + off))->next;
}

/* Parses from an exact-size heap copy so any overread is an ASan error. */
static int parse(const struct buf *b, size_t len, struct iovt_vfio_sink_info *out)
{
	unsigned char *p = malloc(len ? len : 1);
	CHECK(p);
	memcpy(p, b->b, len);
	int rc = iovt_vfio_type1_parse_info(p, len, out);
	free(p);
	return rc;
}

static const struct vfio_iova_range guest_ranges[2] = {
	{ 0, 0xfedfffffull }, { 0xfef00000ull, 0x7fffffffffull } };

static void test_kernel_reply(void)
{
	struct buf b;
	struct iovt_vfio_sink_info in;
	struct vfio_iommu_type1_info *i = hdr(&b, 0x40201000ull, true);
	size_t r = add_ranges(&b, &i->cap_offset, guest_ranges, 2);
	size_t m = add_migration(&b, next_of(&b, r));
	add_avail(&b, next_of(&b, m), 65535);
	CHECK_EQ(parse(&b, b.len, &in), 0);
	CHECK_EQ(in.page_sizes, 0x40201000ull);
	CHECK_EQ(in.iova_alignment, 0x1000);
	CHECK_EQ(in.dma_avail, 65535);
	CHECK(in.ranges_reported && !in.ranges_truncated);
	CHECK_EQ(in.nr_ranges, 2);
	CHECK_EQ(in.ranges[0].first, 0);
	CHECK_EQ(in.ranges[0].last, 0xfedfffffull);
	CHECK_EQ(in.ranges[1].first, 0xfef00000ull);
	CHECK_EQ(in.ranges[1].last, 0x7fffffffffull);
	CHECK(!in.unmap_all);

	/* Every strict prefix of it is malformed (a capability cut short) or,
	 * shorter than the fixed part, -EINVAL; never a crash or overread. */
	for (size_t len = 0; len < b.len; len++) {
		int rc = parse(&b, len, &in);
		if (len < offsetof(struct vfio_iommu_type1_info, cap_offset))
			CHECK_EQ(rc, -EINVAL);
		else if (len < sizeof(struct vfio_iommu_type1_info))
			CHECK_EQ(rc, 0); /* an old kernel's reply: no chain */
		else
			CHECK_EQ(rc, -EPROTO);
	}
}

static void test_orders_and_defaults(void)
{
	struct buf b;
	struct iovt_vfio_sink_info in;
	/* dma_avail first, ranges last and given in descending order. */
	struct vfio_iova_range rev[3] = { { 0x100000000ull, 0x1ffffffffull },
					  { 0x10000ull, 0xfffffull },
					  { 0x0, 0xfff } };
	struct vfio_iommu_type1_info *i = hdr(&b, 0x1000, true);
	size_t a = add_avail(&b, &i->cap_offset, 17);
	add_ranges(&b, next_of(&b, a), rev, 3);
	CHECK_EQ(parse(&b, b.len, &in), 0);
	CHECK_EQ(in.dma_avail, 17);
	CHECK_EQ(in.nr_ranges, 3);
	CHECK_EQ(in.ranges[0].first, 0);
	CHECK_EQ(in.ranges[1].first, 0x10000ull);
	CHECK_EQ(in.ranges[2].last, 0x1ffffffffull);

	/* No capability chain: whole 64-bit space, no dma_avail. */
	hdr(&b, 0x201000, false);
	CHECK_EQ(parse(&b, b.len, &in), 0);
	CHECK(!in.ranges_reported);
	CHECK_EQ(in.nr_ranges, 1);
	CHECK_EQ(in.ranges[0].first, 0);
	CHECK_EQ(in.ranges[0].last, UINT64_MAX);
	CHECK_EQ(in.dma_avail, 0);

	/* CAPS flag but cap_offset 0 (the kernel's answer when argsz was too
	 * small): no chain, not an error. */
	hdr(&b, 0x1000, true);
	CHECK_EQ(parse(&b, b.len, &in), 0);
	CHECK(!in.ranges_reported);

	/* No PGSIZES flag: 4 KiB. */
	i = hdr(&b, 0, false);
	i->flags = 0;
	CHECK_EQ(parse(&b, b.len, &in), 0);
	CHECK_EQ(in.page_sizes, 0x1000);

	/* More ranges than the sink keeps: the first ones, flagged. */
	struct vfio_iova_range many[40];
	for (int k = 0; k < 40; k++)
		many[k] = (struct vfio_iova_range){ (uint64_t)k << 32, ((uint64_t)k << 32) + 0xfffff };
	i = hdr(&b, 0x1000, true);
	add_ranges(&b, &i->cap_offset, many, 40);
	CHECK_EQ(parse(&b, b.len, &in), 0);
	CHECK(in.ranges_truncated);
	CHECK_EQ(in.nr_ranges, IOVT_VFIO_MAX_RANGES);

	/* An unknown capability is skipped. */
	i = hdr(&b, 0x1000, true);
	struct { struct vfio_info_cap_header h; uint32_t x[5]; } unk = { { 77, 1, 0 }, { 0 } };
	size_t u = add_cap(&b, &i->cap_offset, &unk, sizeof(unk));
	add_avail(&b, next_of(&b, u), 9);
	CHECK_EQ(parse(&b, b.len, &in), 0);
	CHECK_EQ(in.dma_avail, 9);
}

static void test_malformed(void)
{
	struct buf b;
	struct iovt_vfio_sink_info in;

	/* A capability pointing at itself, and one pointing back. */
	struct vfio_iommu_type1_info *i = hdr(&b, 0x1000, true);
	size_t a = add_avail(&b, &i->cap_offset, 1);
	*next_of(&b, a) = (uint32_t)a;
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);
	i = hdr(&b, 0x1000, true);
	a = add_avail(&b, &i->cap_offset, 1);
	size_t c = add_avail(&b, next_of(&b, a), 2);
	*next_of(&b, c) = (uint32_t)a;
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);

	/* Offset beyond the buffer; offset inside the fixed header; misaligned. */
	i = hdr(&b, 0x1000, true);
	i->cap_offset = 4000;
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);
	i->cap_offset = 8;
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);
	i = hdr(&b, 0x1000, true);
	a = add_avail(&b, &i->cap_offset, 1);
	i->cap_offset = (uint32_t)a + 2;
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);

	/* nr_iovas larger than the bytes present (and one that would overflow). */
	i = hdr(&b, 0x1000, true);
	a = add_ranges(&b, &i->cap_offset, guest_ranges, 2);
	((struct vfio_iommu_type1_info_cap_iova_range *)(b.b + a))->nr_iovas = 3;
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);
	((struct vfio_iommu_type1_info_cap_iova_range *)(b.b + a))->nr_iovas = 0xffffffffu;
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);

	/* Overlapping ranges; a range with first > last. */
	struct vfio_iova_range ov[2] = { { 0, 0x2fff }, { 0x2000, 0x5fff } };
	i = hdr(&b, 0x1000, true);
	add_ranges(&b, &i->cap_offset, ov, 2);
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);
	struct vfio_iova_range bad[1] = { { 0x5000, 0x1000 } };
	i = hdr(&b, 0x1000, true);
	add_ranges(&b, &i->cap_offset, bad, 1);
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);

	/* PGSIZES flag with no sizes. */
	hdr(&b, 0, false);
	CHECK_EQ(parse(&b, b.len, &in), -EPROTO);

	/* NULL. */
	CHECK_EQ(iovt_vfio_type1_parse_info(NULL, 100, &in), -EINVAL);
	CHECK_EQ(iovt_vfio_type1_parse_info(b.b, b.len, NULL), -EINVAL);
}

/* Random corruption of a valid reply: any answer but a crash/overread. */
static void test_fuzz(void)
{
	uint64_t s = check_pick_seed("vfio-info-parse");
	struct iovt_vfio_sink_info in;
	for (int it = 0; it < 20000; it++) {
		struct buf b;
		struct vfio_iommu_type1_info *i = hdr(&b, 0x40201000ull, true);
		size_t r = add_ranges(&b, &i->cap_offset, guest_ranges, 2);
		size_t m = add_migration(&b, next_of(&b, r));
		add_avail(&b, next_of(&b, m), 65535);
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		int flips = 1 + (int)((s >> 40) % 4);
		for (int f = 0; f < flips; f++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			b.b[(s >> 33) % b.len] ^= (unsigned char)(1u << ((s >> 20) % 8));
		}
		int rc = parse(&b, b.len, &in);
		CHECK(rc == 0 || rc == -EPROTO);
		if (rc == 0) {
			CHECK(in.nr_ranges >= 1 && in.nr_ranges <= IOVT_VFIO_MAX_RANGES);
			for (uint32_t k = 1; k < in.nr_ranges; k++)
				CHECK(in.ranges[k].first > in.ranges[k - 1].last);
		}
	}
}

int main(void)
{
	test_kernel_reply();
	test_orders_and_defaults();
	test_malformed();
	test_fuzz();
	printf("vfio-info-parse: ok\n");
	return 0;
}
