/* SPDX-License-Identifier: MIT */
/*
 * iovt-storm: the invalidation-storm driver. Each scenario drives a world
 * (simulated guest + engine + strict model sink + oracle, tests/support/
 * world.h) the way a real guest does, then reports what the engine did and
 * what the judges found.
 *
 *   iovt-storm [--json FILE] [--scenario NAME] [--scale F] [--repetitions N]
 *              [--no-translate] [--list]
 *              [--replay TRACE [--replay-skip-malformed] [--replay-max-pages N]
 *                              [--replay-max-work N]]
 *
 * The command line is checked before anything runs: a bad option, value or
 * argument, or a --json FILE that cannot be written, exits 2 at once.
 * Each scenario runs N times per side (--repetitions); the tables show the
 * medians, the JSON min/median/max and every value. After the scenarios, the
 * `translate` section runs bench/translate's vhost-like workload (engine
 * IOTLB, QEMU-style and DPDK-vhost-style baselines) unless a single
 * scenario, a replay or --no-translate was asked for. Progress goes to
 * stderr when it is a terminal.
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
#ifdef IOVT_STORM_TRANSLATE
#include "translate_run.h"
#endif

#define MAX_SCALE 1000.0
#define MAX_REPETITIONS 1000

static double now_s(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: iovt-storm [--json FILE] [--scenario NAME] [--scale F] [--repetitions N]\n"
		"                  [--no-translate] [--list]\n"
		"                  [--replay TRACE [--replay-skip-malformed] [--replay-max-pages N]\n"
		"                                  [--replay-max-work N]]\n"
		"  --scale F                 scenario size, 0 < F <= %g (default 1)\n"
		"  --repetitions N           runs of each scenario and side, 1..%d (default 1);\n"
		"                            tables show medians, the JSON min/median/max\n"
		"  --no-translate            leave out the translate section\n"
		"  --replay TRACE            replay a recorded trace (README \"Trace replay\")\n"
		"  --replay-skip-malformed   skip the trace's malformed lines (default: refuse it)\n"
		"  --replay-max-pages N      pages of 4 KiB the trace may map+unmap in all\n"
		"                            (default %llu)\n"
		"  --replay-max-work N       steps the replay may cost (invalidations times the\n"
		"                            pages they cover, ...; estimated before it runs;\n"
		"                            default %llu)\n",
		MAX_SCALE, MAX_REPETITIONS, (unsigned long long)REPLAY_MAX_PAGES_DEFAULT,
		(unsigned long long)REPLAY_MAX_WORK_DEFAULT);
}

/* A decimal count above 0: digits only (strtoull took " -1" as 2^64 - 1, and
 * "010" as 8; found by review). */
static bool count_arg(const char *s, uint64_t *out)
{
	if (!*s)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || !v)
		return false;
	*out = v;
	return true;
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

/* Progress on stderr, only when it is a terminal (CI logs stay clean):
 * one line rewritten in place, cleared at the end. */
static bool progress_on;
static double progress_t0;

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
	va_list ap;
	if (!progress_on)
		return;
	fprintf(stderr, "\r\033[K[%6.1f s] ", now_s(CLOCK_MONOTONIC) - progress_t0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static void progress_done(void)
{
	if (progress_on)
		fprintf(stderr, "\r\033[K");
}

#ifdef IOVT_STORM_TRANSLATE
/* The translate section: pools 256 and 4096, 1 and 2 reader threads, all
 * with the invalidator, then the miss cost; each point `seconds` long. */
enum { TR_POOLS = 2, TR_THREADS = 2, TR_POINTS = TRANSLATE_IMPLS * (TR_POOLS * TR_THREADS + 1) };

static int run_translate(double scale, int reps, struct translate_point *pt, int *np)
{
	static const unsigned pools[TR_POOLS] = { 256, 4096 };
	double secs = 0.4 * scale;
	int n = 0, failed = 0, total = TR_POINTS * reps;
	secs = secs < 0.05 ? 0.05 : secs > 2 ? 2 : secs;
	for (int impl = 0; impl < TRANSLATE_IMPLS; impl++) {
		for (int p = 0; p <= TR_POOLS; p++)
			for (unsigned th = 1; th <= (p < TR_POOLS ? TR_THREADS : 1); th++) {
				struct translate_point *t = &pt[n++];
				t->workload = p < TR_POOLS ? "vhost" : "miss";
				t->impl = translate_impl_name(impl);
				t->pool = p < TR_POOLS ? pools[p] : 65536;
				t->threads = th;
				t->inval = p < TR_POOLS;
				t->reps = reps;
				t->runs = calloc(reps, sizeof(*t->runs));
				if (!t->runs)
					return -1;
			}
	}
	*np = n;
	/* repetition-major, like the scenarios: a slow phase of the machine
	 * spreads over every point instead of hitting one */
	for (int r = 0, k = 0; r < reps; r++)
		for (int i = 0; i < n; i++, k++) {
			struct translate_point *t = &pt[i];
			enum translate_impl impl = TRANSLATE_ENGINE;
			while (strcmp(translate_impl_name(impl), t->impl))
				impl++;
			progress("translate %d of %d: %s %s pool %u, %u thread%s (rep %d of %d)", k + 1,
				 total, t->workload, t->impl, t->pool, t->threads,
				 t->threads > 1 ? "s" : "", r + 1, reps);
			int rc = strcmp(t->workload, "miss") ?
				translate_vhost_run(impl, t->pool, t->threads, t->inval, secs, &t->runs[r]) :
				translate_miss_run(impl, secs / 2, &t->runs[r]);
			if (rc) {
				fprintf(stderr, "translate %s %s: failed\n", t->workload, t->impl);
				failed++;
			}
		}
	return failed;
}
#endif

int main(int argc, char **argv)
{
	const char *json = NULL, *only = NULL, *replay = NULL;
	double scale = 1.0;
	int reps = 1;
	bool no_translate = false;
	struct replay_options ropt = { 0 };
	bool ropt_given = false;
	static const struct option opts[] = {
		{ "json", required_argument, 0, 'j' },
		{ "scenario", required_argument, 0, 's' },
		{ "scale", required_argument, 0, 'x' },
		{ "list", no_argument, 0, 'l' },
		{ "repetitions", required_argument, 0, 'n' },
		{ "no-translate", no_argument, 0, 'T' },
		{ "replay", required_argument, 0, 'r' },
		{ "replay-skip-malformed", no_argument, 0, 'S' },
		{ "replay-max-pages", required_argument, 0, 'P' },
		{ "replay-max-work", required_argument, 0, 'W' },
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
		case 'n': {
			errno = 0;
			long v = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 1 || v > MAX_REPETITIONS)
				return bad_usage("--repetitions %s: not a whole number from 1 to %d", optarg,
						 MAX_REPETITIONS);
			reps = (int)v;
			break;
		}
		case 'T': no_translate = true; break;
		case 'r': replay = optarg; break;
		case 'S': ropt.skip_malformed = ropt_given = true; break;
		case 'P':
			if (!count_arg(optarg, &ropt.max_pages))
				return bad_usage("--replay-max-pages %s: not a page count above 0", optarg);
			ropt_given = true;
			break;
		case 'W':
			if (!count_arg(optarg, &ropt.max_work))
				return bad_usage("--replay-max-work %s: not a step count above 0", optarg);
			ropt_given = true;
			break;
		case 'l': list = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	if (ropt_given && !replay)
		return bad_usage("--replay-skip-malformed, --replay-max-pages and --replay-max-work go "
				 "with --replay");
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
	int n = 0, failed = 0, total = 0;
	for (const struct scenario *sc = table; sc->name && total < 64; sc++)
		total += !only || !strcmp(only, sc->name);
	if (!total) {
		fprintf(stderr, "no scenario named %s (try --list)\n", only);
		return 2;
	}
	progress_on = isatty(STDERR_FILENO);
	progress_t0 = now_s(CLOCK_MONOTONIC);
	for (const struct scenario *sc = table; sc->name && n < 64; sc++) {
		if (only && strcmp(only, sc->name))
			continue;
		struct scenario_result *r = &results[n++];
		memset(r, 0, sizeof(*r));
		r->name = sc->name;
		r->what = sc->what;
		r->reps = reps;
		r->engine = calloc(reps, sizeof(*r->engine));
		r->baseline = calloc(reps, sizeof(*r->baseline));
		if (!r->engine || !r->baseline) {
			fprintf(stderr, "iovt-storm: out of memory\n");
			return 1;
		}
		for (int rep = 0; rep < reps; rep++)
			for (int side = 0; side < 2; side++) { /* the engine, then the QEMU-style baseline */
				struct side_result *o = side ? &r->baseline[rep] : &r->engine[rep];
				progress("scenario %d of %d: %s, %s (rep %d of %d)", n, total, sc->name,
					 side ? "baseline" : "engine", rep + 1, reps);
				double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
				int rc = sc->run(scale, side == 1, o);
				o->wall_s = now_s(CLOCK_MONOTONIC) - w0;
				o->cpu_s = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
				if (rc) {
					progress_done();
					fprintf(stderr, "scenario %s (%s, rep %d): failed (%d)\n", sc->name,
						side ? "baseline" : "engine", rep + 1, rc);
					failed++;
				}
			}
	}
	struct translate_point tpoints[64];
	int nt = 0;
#ifdef IOVT_STORM_TRANSLATE
	/* The whole default run only: a single scenario or a replay is a
	 * question about that scenario. */
	if (!no_translate && !only && !replay)
		failed += run_translate(scale, reps, tpoints, &nt) != 0;
#else
	(void)no_translate;
#endif
	progress_done();
	report_print_table(stdout, results, n);
	report_print_translate(stdout, tpoints, nt);
	if (json) {
		struct report_context ctx = { .scale = scale, .repetitions = reps, .replay = replay };
		int rc = report_write_json(json, &ctx, results, n, tpoints, nt);
		if (rc) {
			fprintf(stderr, "iovt-storm: --json %s: %s\n", json, strerror(-rc));
			failed++;
		}
	}
	for (int i = 0; i < n; i++) { /* the per-repetition results (LeakSanitizer reads the exit) */
		free(results[i].engine);
		free(results[i].baseline);
	}
	return failed ? 1 : 0;
}
