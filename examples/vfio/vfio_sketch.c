/* SPDX-License-Identifier: MIT */
/*
 * examples/vfio — keeping a real host IOVA map equal to the guest's VT-d view.
 *
 * A VMM that passes a device through to a guest with a vIOMMU gives iovt a
 * sink on the device's host IOMMU context (<iovt_vfio.h>):
 *   type1    a VFIO container (/dev/vfio/vfio) with the device's group in it:
 *            iovt_vfio_type1_sink_init -> VFIO_IOMMU_MAP_DMA / UNMAP_DMA
 *   iommufd  an IOAS on /dev/iommu: iovt_iommufd_sink_init -> IOMMU_IOAS_MAP /
 *            IOMMU_IOAS_UNMAP (devices are bound to the IOAS by the VMM)
 * Then every guest invalidation + wait turns into the exact kernel calls.
 *
 * Usage:
 *   vfio_sketch                      prints this usage, exits 0
 *   vfio_sketch type1 /dev/vfio/N    group N (bound to vfio-pci, viable)
 *   vfio_sketch iommufd              a fresh IOAS on /dev/iommu (no device needed)
 * With arguments it opens the container/iommufd, attaches the sink to a domain
 * whose guest table maps 16 pages, prints what the kernel reported and the
 * sink's counters, and detaches (the sink unmaps everything). It needs root
 * and the kernel's VFIO/iommufd; CI only builds it and runs it without
 * arguments.
 *
 * Build against an installed iovt:
 *   cc -o vfio_sketch vfio_sketch.c $(pkg-config --cflags --libs iovt)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/vfio.h>
#if defined(__has_include)
#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#define HAVE_IOMMUFD_H 1
#endif
#endif

#include <iovt.h>
#include <iovt_vfio.h>
#include <iovt_vtd.h>

#define RAM_SIZE (4ull << 20)
#define HAW 48
#define PML4_GPA 0x1000ull
#define PDPT_GPA 0x2000ull
#define PD_GPA 0x3000ull
#define PT_GPA 0x4000ull
#define DATA_GPA 0x100000ull
#define IOVA 0x100000ull /* below the MSI window, inside every type1/iommufd range */
#define NPAGES 16u

static int usage(const char *argv0)
{
	printf("usage: %s                    (this text)\n"
	       "       %s type1 /dev/vfio/N  VFIO type1v2 container with group N\n"
	       "       %s iommufd            an IOAS on /dev/iommu\n"
	       "Attaches an iovt sink to the host IOMMU context, maps a 16-page guest\n"
	       "table through it, prints the kernel's answers, and detaches.\n",
	       argv0, argv0, argv0);
	return 0;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "vfio_sketch: %s: %s\n", what, strerror(err < 0 ? -err : err));
	return 1;
}

/* Runs the engine side over an initialised sink; the sink is consumed. */
static int run(struct iovt_sink *sink)
{
	struct iovt_vfio_sink_info info;
	int rc = iovt_vfio_sink_info(sink, &info);
	if (rc) {
		iovt_vfio_sink_free(sink);
		return fail("iovt_vfio_sink_info", rc);
	}
	printf("kernel: page sizes 0x%" PRIx64 ", %u usable IOVA range(s)%s, unmap-all %s\n", info.page_sizes,
	       info.nr_ranges, info.ranges_reported ? "" : " (assumed)", info.unmap_all ? "yes" : "no");
	for (unsigned i = 0; i < info.nr_ranges; i++)
		printf("  [0x%" PRIx64 ", 0x%" PRIx64 "]\n", info.ranges[i].first, info.ranges[i].last);

	iovt_thread_register();
	struct iovt_engine *e;
	if ((rc = iovt_engine_create(NULL, &e))) {
		iovt_vfio_sink_free(sink);
		return fail("iovt_engine_create", rc);
	}
	/* Guest RAM must be memory the kernel can pin: anonymous, shared or not. */
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED || (rc = iovt_guest_ram_add(e, 0, RAM_SIZE, ram, NULL))) {
		iovt_vfio_sink_free(sink);
		return fail("guest RAM", ram == MAP_FAILED ? errno : rc);
	}
	const uint64_t tbl = IOVT_VTD_PTE_R | IOVT_VTD_PTE_W;
	((uint64_t *)(ram + PML4_GPA))[IOVT_VTD_INDEX(IOVA, 4)] = PDPT_GPA | tbl;
	((uint64_t *)(ram + PDPT_GPA))[IOVT_VTD_INDEX(IOVA, 3)] = PD_GPA | tbl;
	((uint64_t *)(ram + PD_GPA))[IOVT_VTD_INDEX(IOVA, 2)] = PT_GPA | tbl;
	for (unsigned i = 0; i < NPAGES; i++)
		((uint64_t *)(ram + PT_GPA))[IOVT_VTD_INDEX(IOVA, 1) + i] =
			((DATA_GPA + i * 4096ull) & IOVT_VTD_PTE_ADDR_MASK(HAW)) | tbl;

	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = 1, .root_gpa = PML4_GPA, .addr_width = 48 };
	if ((rc = iovt_domain_create(e, &dc, &d))) {
		iovt_vfio_sink_free(sink);
		return fail("iovt_domain_create", rc);
	}
	struct iovt_notifier *n = NULL;
	rc = iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, sink, &n); /* replay: MAP_DMA */
	if (!n) {
		iovt_vfio_sink_free(sink); /* refused: still ours */
		return fail("iovt_notifier_attach", rc);
	}
	int status = 0;
	if (rc)
		status = fail("replay into the kernel", rc); /* attached; retried at later fences */
	struct iovt_vfio_sink_counters c;
	if ((rc = iovt_vfio_sink_counters(sink, &c)) == 0) /* our copy of the sink, valid until detach */
		printf("after attach: %" PRIu64 " MAP call(s), %" PRIu64 " bytes mapped, %" PRIu64 " error(s)\n",
		       c.map_calls, c.bytes_mapped, c.map_errors);

	/* The guest unmaps page 5, invalidates it, waits: one UNMAP + two MAPs. */
	((uint64_t *)(ram + PT_GPA))[IOVT_VTD_INDEX(IOVA, 1) + 5] = 0;
	if ((rc = iovt_invalidate_psi(e, 1, IOVA + 5 * 4096, 0, false)) || (rc = iovt_fence(e)))
		status = fail("PSI + fence", rc);
	if (iovt_vfio_sink_counters(sink, &c) == 0)
		printf("after PSI:    %" PRIu64 " MAP, %" PRIu64 " UNMAP call(s), %" PRIu64 " kernel ns\n", c.map_calls,
		       c.unmap_calls, c.map_ns + c.unmap_ns);

	if ((rc = iovt_notifier_detach(n))) /* the kernel unmaps everything; the sink is freed */
		status = fail("iovt_notifier_detach", rc);
	if ((rc = iovt_domain_destroy(d)))
		status = fail("iovt_domain_destroy", rc);
	iovt_engine_destroy(e);
	iovt_thread_unregister();
	munmap(ram, RAM_SIZE);
	if (!status)
		printf("vfio_sketch: ok\n");
	return status;
}

static int type1(const char *group_path)
{
	int container = open("/dev/vfio/vfio", O_RDWR);
	if (container < 0)
		return fail("/dev/vfio/vfio", errno);
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		return fail("VFIO API version", EINVAL);
	int group = open(group_path, O_RDWR);
	if (group < 0)
		return fail(group_path, errno);
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &gs) || !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		return fail("group not viable (bind every device of it to vfio-pci)", EBUSY);
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		return fail("VFIO_GROUP_SET_CONTAINER", errno);
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return fail("VFIO_SET_IOMMU(TYPE1v2)", errno);

	struct iovt_sink sink;
	int rc = iovt_vfio_type1_sink_init(&sink, container, NULL); /* asks the kernel */
	if (rc)
		return fail("iovt_vfio_type1_sink_init", rc);
	int status = run(&sink);
	close(group); /* the sink never closes the host's fds */
	close(container);
	return status;
}

static int iommufd(void)
{
#ifdef HAVE_IOMMUFD_H
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		return fail("/dev/iommu", errno);
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc))
		return fail("IOMMU_IOAS_ALLOC", errno);
	/* A VMM binds its devices here (VFIO_DEVICE_BIND_IOMMUFD, then
	 * VFIO_DEVICE_ATTACH_IOMMUFD_PT with this ioas_id). */
	struct iovt_sink sink;
	int rc = iovt_iommufd_sink_init(&sink, fd, alloc.out_ioas_id, NULL);
	if (rc)
		return fail("iovt_iommufd_sink_init", rc);
	int status = run(&sink);
	close(fd);
	return status;
#else
	return fail("built without <linux/iommufd.h> (kernel headers older than 6.2)", ENOTSUP);
#endif
}

int main(int argc, char **argv)
{
	if (argc == 1 || (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))))
		return usage(argv[0]);
	if (argc == 3 && !strcmp(argv[1], "type1"))
		return type1(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "iommufd"))
		return iommufd();
	usage(argv[0]);
	return 2;
}
