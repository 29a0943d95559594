/* SPDX-License-Identifier: MIT */
/*
 * iovt-storm: the invalidation-storm driver. Each scenario drives a world
 * (simulated guest + engine + strict model sink + oracle, tests/support/
 * world.h) the way a real guest does, then reports what the engine did and
 * what the judges found.
 *
 *   iovt-storm [--json FILE] [--scenario NAME] [--scale F] [--list]
 *              [--replay TRACE [--replay-skip-malformed] [--replay-max-pages N]]
 *
 * The command line is checked before anything runs: a bad option, value or
 * argument, or a --json FILE that cannot be written, exits 2 at once.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "report.h"
#include "replay.h"
#include "scenarios.h"

#define MAX_SCALE 1000.0

static double now_s(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: iovt-storm [--json FILE] [--scenario NAME] [--scale F] [--list]\n"
		"                  [--replay TRACE [--replay-skip-malformed] [--replay-max-pages N]]\n"
		"  --scale F                 scenario size, 0 < F <= %g (default 1)\n"
		"  --replay TRACE            replay a recorded trace (README \"Trace replay\")\n"
		"  --replay-skip-malformed   skip the trace's malformed lines (default: refuse it)\n"
		"  --replay-max-pages N      pages of 4 KiB the trace may map+unmap in all\n"
		"                            (default %llu)\n",
		MAX_SCALE, (unsigned long long)REPLAY_MAX_PAGES_DEFAULT);
}

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "iovt-storm: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return 2;
}

/* The JSON file can be written (checked up front, so that a bad path fails
 * before the run, not after it): an existing regular file opens for writing
 * (not truncated), a new one can be created (and is removed again); pipes
 * and devices are left to the end. 0 or -errno. */
static int json_writable(const char *path)
{
	struct stat st;
	int fd;
	if (!stat(path, &st)) {
		if (S_ISDIR(st.st_mode))
			return -EISDIR;
		if (!S_ISREG(st.st_mode))
			return 0;
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		close(fd);
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0)
		return -errno;
	close(fd);
	unlink(path);
	return 0;
}

int main(int argc, char **argv)
{
	const char *json = NULL, *only = NULL, *replay = NULL;
	double scale = 1.0;
	struct replay_options ropt = { 0 };
	bool ropt_given = false;
	static const struct option opts[] = {
		{ "json", required_argument, 0, 'j' },
		{ "scenario", required_argument, 0, 's' },
		{ "scale", required_argument, 0, 'x' },
		{ "list", no_argument, 0, 'l' },
		{ "replay", required_argument, 0, 'r' },
		{ "replay-skip-malformed", no_argument, 0, 'S' },
		{ "replay-max-pages", required_argument, 0, 'P' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c;
	bool list = false;
	while ((c = getopt_long(argc, argv, "j:s:x:lhr:", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'j': json = optarg; break;
		case 's': only = optarg; break;
		case 'x':
			errno = 0;
			scale = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(scale) || scale <= 0 ||
			    scale > MAX_SCALE)
				return bad_usage("--scale %s: not a number above 0 and at most %g", optarg,
						 MAX_SCALE);
			break;
		case 'r': replay = optarg; break;
		case 'S': ropt.skip_malformed = ropt_given = true; break;
		case 'P': {
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || !v || optarg[0] == '-')
				return bad_usage("--replay-max-pages %s: not a page count above 0", optarg);
			ropt.max_pages = v;
			ropt_given = true;
			break;
		}
		case 'l': list = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	if (ropt_given && !replay)
		return bad_usage("--replay-skip-malformed and --replay-max-pages go with --replay");
	if (list) {
		for (const struct scenario *sc = scenarios; sc->name; sc++)
			printf("%-22s %s\n", sc->name, sc->what);
		return 0;
	}
	if (only && !replay) {
		const struct scenario *sc = scenarios;
		while (sc->name && strcmp(sc->name, only))
			sc++;
		if (!sc->name) {
			fprintf(stderr, "iovt-storm: no scenario named %s (try --list)\n", only);
			return 2;
		}
	}
	if (json) {
		int rc = json_writable(json);
		if (rc) {
			fprintf(stderr, "iovt-storm: --json %s: %s\n", json, strerror(-rc));
			return 2;
		}
	}
	const struct scenario *table = scenarios;
	if (replay) { /* one scenario: the trace (checked whole before anything runs) */
		if (replay_load(replay, &ropt))
			return 2;
		table = replay_scenarios();
	}

	struct scenario_result results[64];
	int n = 0, failed = 0;
	for (const struct scenario *sc = table; sc->name && n < 64; sc++) {
		if (only && strcmp(only, sc->name))
			continue;
		struct scenario_result *r = &results[n++];
		memset(r, 0, sizeof(*r));
		r->name = sc->name;
		r->what = sc->what;
		for (int side = 0; side < 2; side++) { /* the engine, then the QEMU-style baseline */
			struct side_result *o = side ? &r->baseline : &r->engine;
			double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
			int rc = sc->run(scale, side == 1, o);
			o->wall_s = now_s(CLOCK_MONOTONIC) - w0;
			o->cpu_s = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
			if (rc) {
				fprintf(stderr, "scenario %s (%s): failed (%d)\n", sc->name,
					side ? "baseline" : "engine", rc);
				failed++;
			}
		}
	}
	if (!n) {
		fprintf(stderr, "no scenario named %s (try --list)\n", only);
		return 2;
	}
	report_print_table(stdout, results, n);
	if (json) {
		int rc = report_write_json(json, results, n);
		if (rc) {
			fprintf(stderr, "iovt-storm: --json %s: %s\n", json, strerror(-rc));
			return 1;
		}
	}
	return failed ? 1 : 0;
}
