/* SPDX-License-Identifier: MIT */
/* The dpdk tests' EAL: its arguments (no hugepages, no devices, four lcores
 * on the first two CPUs the test may use) and its cleanup (EAL leaves a
 * runtime directory per --file-prefix under /var/run/dpdk,
 * $XDG_RUNTIME_DIR/dpdk or /tmp/dpdk; each test removes its own at exit,
 * also after a failed CHECK). */
#ifndef IOVT_TESTS_EAL_TEST_H
#define IOVT_TESTS_EAL_TEST_H

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <sched.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Removes the runtime directory EAL made for this prefix (files, then itself). */
static inline void remove_runtime_dir(const char *prefix)
{
	const char *bases[3] = { "/var/run/dpdk", NULL, "/tmp/dpdk" };
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char xbase[PATH_MAX];
	if (xdg) {
		snprintf(xbase, sizeof(xbase), "%s/dpdk", xdg);
		bases[1] = xbase;
	}
	for (unsigned b = 0; b < 3; b++) {
		if (!bases[b])
			continue;
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s/%s", bases[b], prefix);
		DIR *dp = opendir(dir);
		if (!dp)
			continue;
		struct dirent *de;
		while ((de = readdir(dp))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char f[PATH_MAX + 256];
			snprintf(f, sizeof(f), "%s/%s", dir, de->d_name);
			unlink(f);
		}
		closedir(dp);
		rmdir(dir);
	}
}

static char eal_prefix[64];

static void eal_cleanup_at_exit(void)
{
	remove_runtime_dir(eal_prefix);
}

/* EAL's arguments for a test named `name` into eal[9] (argv0 first, NULL
 * last): lcores 0 and 2 on the first CPU, 1 and 3 on the second (all on one
 * where there is only one), a file prefix of the name and the pid, removed
 * at exit. Returns the count. */
static inline int eal_test_args(const char *name, char *argv0, char *eal[9])
{
	static char fp[96], lcores[96];
	snprintf(eal_prefix, sizeof(eal_prefix), "iovt-test-%s-%d", name, (int)getpid());
	atexit(eal_cleanup_at_exit);
	snprintf(fp, sizeof(fp), "--file-prefix=%s", eal_prefix);
	cpu_set_t cs;
	int cpu[2] = { 0, 0 }, ncpu = 0;
	CHECK(sched_getaffinity(0, sizeof(cs), &cs) == 0);
	for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
		if (CPU_ISSET(c, &cs))
			cpu[ncpu++] = c;
	CHECK(ncpu >= 1);
	if (ncpu == 1)
		cpu[1] = cpu[0];
	snprintf(lcores, sizeof(lcores), "--lcores=0@%d,1@%d,2@%d,3@%d", cpu[0], cpu[1], cpu[0],
		 cpu[1]);
	char *args[9] = { argv0, "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
			  "--log-level=error", lcores, fp, NULL };
	for (int i = 0; i < 9; i++)
		eal[i] = args[i];
	return 8;
}

#define EAL_TEST_LCORES 4 /* what eal_test_args asks for: lcore 0 (main) and 1..3 */

/* rte_eal_init on eal_test_args' arguments, which must give lcore 0 as
 * the main one and EAL_TEST_LCORES lcores in all. */
static inline void eal_test_init(const char *name, int argc, char **eal)
{
	int rc = rte_eal_init(argc, eal);
	if (rc < 0)
		fprintf(stderr, "%s: rte_eal_init: %s\n", name, strerror(rte_errno));
	CHECK(rc >= 0);
	CHECK_EQ(rte_get_main_lcore(), 0);
	CHECK_EQ(rte_lcore_count(), EAL_TEST_LCORES);
}

#endif
