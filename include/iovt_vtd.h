/* SPDX-License-Identifier: MIT */
/**
 * @file iovt_vtd.h
 * @brief The Intel VT-d table formats a caller writes or decodes for iovt.
 *
 * iovt reads the guest's VT-d **second-level page tables** from guest RAM
 * (iovt_guest_ram_add()), starting at iovt_domain_config::root_gpa. It never
 * reads root or context tables: the VMM decodes the context entry the guest
 * programmed (legacy mode below, or a scalable-mode PASID-table entry) and
 * passes its table pointer, address width and domain id to
 * iovt_domain_create() / iovt_domain_set_root(). Written from the VT-d
 * specification, chapter 9 ("Translation structure formats").
 *
 * @par Second-level tables
 * A table is one 4 KiB page of 512 little-endian 64-bit entries, 4 KiB
 * aligned in guest RAM. A domain of address width 39, 48 or 57 has 3, 4 or 5
 * levels; level 1 entries map 4 KiB pages, level 2 entries (PDE) may map a
 * 2 MiB page and level 3 entries (PDPE) a 1 GiB page when PS (bit 7) is set
 * and the domain allows that size (iovt_domain_config::allow_2m /
 * iovt_domain_config::allow_1g). The entry for IOVA `iova` in a table of
 * level `l` is IOVT_VTD_INDEX(iova, l).
 *
 * | bits            | meaning                                                        |
 * |-----------------|----------------------------------------------------------------|
 * | 0 (R)           | read allowed; the entry is present when R or W is set          |
 * | 1 (W)           | write allowed                                                  |
 * | 7 (PS)          | leaf at level 2 (2 MiB) or 3 (1 GiB); reserved at levels 4, 5  |
 * | 12 .. HAW-1     | address: next table, or the page (aligned to the page's size)  |
 * | HAW .. 51       | reserved: must be 0                                            |
 * | 2-6, 8-11, 52-63| ignored by iovt (X, EMT, IPAT, SNP, TM: no effect on a mapping)|
 *
 * HAW is iovt_config::host_addr_width (default 48). The permission of a
 * leaf is the AND of R and W over every entry on its path.
 *
 * @par What iovt treats as a fault
 * Each leaves the span under the entry unmapped (as the IOMMU would fault
 * on it), is counted in struct iovt_stats and is returned by the fence as
 * -EFAULT (or -ELOOP): a reserved bit set (IOVT_ERR_PT_RESERVED: address
 * bits at or above HAW, PS at level 4 or 5, or address bits below a large
 * page's alignment), PS where the domain does not allow that size
 * (IOVT_ERR_PT_LARGE_PAGE), a table pointer outside guest RAM
 * (IOVT_ERR_PT_OUTSIDE_RAM), a table that is its own ancestor
 * (IOVT_ERR_PT_LOOP), a leaf whose page is outside guest RAM
 * (IOVT_ERR_LEAF_OUTSIDE_RAM).
 *
 * @par Root and context entries (legacy mode, decoded by the VMM)
 * A root entry (128 bits, low quadword: bit 0 present, bits 12..63 the
 * context table) points at 256 context entries, one per device function.
 * A context entry is 128 bits: low quadword bit 0 present, bits 3:2
 * translation type, bits 12..63 the second-level table pointer; high
 * quadword bits 2:0 the address width code, bits 23:8 the domain id. The
 * IOVT_VTD_ROOT_* and IOVT_VTD_CTX_* macros decode them.
 */
#ifndef IOVT_VTD_H
#define IOVT_VTD_H

#include <stdint.h>

/** Second-level entry: read permission (bit 0). R or W set means present. */
#define IOVT_VTD_PTE_R (1ull << 0)
/** Second-level entry: write permission (bit 1). */
#define IOVT_VTD_PTE_W (1ull << 1)
/** Second-level entry: page size (bit 7): this level-2 or level-3 entry is a 2 MiB or 1 GiB leaf. */
#define IOVT_VTD_PTE_PS (1ull << 7)
/**
 * Second-level entry: the address field for host address width @p haw
 * (bits 12 .. haw-1). Bits haw..51 are reserved and must be 0.
 */
#define IOVT_VTD_PTE_ADDR_MASK(haw) ((((uint64_t)1 << (haw)) - 1) & ~(uint64_t)0xfff)

/** Entries in one table (one 4 KiB page of 64-bit entries). */
#define IOVT_VTD_ENTRIES 512u
/** Bytes of one table. */
#define IOVT_VTD_TABLE_SIZE 4096u
/** Levels of a domain of address width @p aw (39, 48, 57 give 3, 4, 5). */
#define IOVT_VTD_LEVELS(aw) (((aw) - 12u) / 9u)
/** IOVA bits below the entries of a level-@p level table (1: 12, 2: 21, 3: 30, ...). */
#define IOVT_VTD_LEVEL_SHIFT(level) (12u + 9u * ((level) - 1u))
/** Bytes one entry of a level-@p level table maps (1: 4 KiB, 2: 2 MiB, 3: 1 GiB). */
#define IOVT_VTD_LEVEL_SIZE(level) ((uint64_t)1 << IOVT_VTD_LEVEL_SHIFT(level))
/** Index of the entry for @p iova in a level-@p level table. */
#define IOVT_VTD_INDEX(iova, level) ((unsigned)(((uint64_t)(iova) >> IOVT_VTD_LEVEL_SHIFT(level)) & 511u))

/** Root entry, low quadword: present (bit 0). */
#define IOVT_VTD_ROOT_P (1ull << 0)
/** Root entry, low quadword: context-table pointer (bits 12..63). */
#define IOVT_VTD_ROOT_CTP_MASK (~(uint64_t)0xfff)

/** Context entry, low quadword: present (bit 0). */
#define IOVT_VTD_CTX_P (1ull << 0)
/** Context entry, low quadword: translation type (bits 3:2; 0 untranslated only, 1 all, 2 pass-through). */
#define IOVT_VTD_CTX_TT(lo) ((unsigned)(((lo) >> 2) & 3u))
/** Context entry, low quadword: second-level page-table pointer, for iovt_domain_config::root_gpa. */
#define IOVT_VTD_CTX_SLPTPTR(lo) ((uint64_t)(lo) & ~(uint64_t)0xfff)
/** Context entry, high quadword: address-width code (bits 2:0; 1: 39-bit, 2: 48-bit, 3: 57-bit). */
#define IOVT_VTD_CTX_AW(hi) ((unsigned)((hi) & 7u))
/** Address width in bits for a context entry's AW code, for iovt_domain_config::addr_width. */
#define IOVT_VTD_AW_BITS(aw_code) (30u + 9u * (aw_code))
/** Context entry, high quadword: domain id (bits 23:8), for iovt_domain_config::did. */
#define IOVT_VTD_CTX_DID(hi) ((uint16_t)(((hi) >> 8) & 0xffffu))

#endif
