/* SPDX-License-Identifier: MIT */
/*
 * iovt-storm: the invalidation-storm driver. Each scenario drives a world
 * (simulated guest + engine + strict model sink + oracle, tests/support/
 * world.h) the way a real guest does, then reports what the engine did and
 * what the judges found.
 *
 *   iovt-storm [--json FILE] [--scenario NAME] [--scale F] [--list] [--replay TRACE]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report.h"
#include "replay.h"
#include "scenarios.h"

static double now_s(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: iovt-storm [--json FILE] [--scenario NAME] [--scale F] [--list]\n"
			"                  [--replay TRACE]  (replay a recorded trace, README \"Trace replay\")\n");
}

int main(int argc, char **argv)
{
	const char *json = NULL, *only = NULL, *replay = NULL;
	double scale = 1.0;
	static const struct option opts[] = {
		{ "json", required_argument, 0, 'j' },
		{ "scenario", required_argument, 0, 's' },
		{ "scale", required_argument, 0, 'x' },
		{ "list", no_argument, 0, 'l' },
		{ "replay", required_argument, 0, 'r' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "j:s:x:lhr:", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = optarg; break;
		case 's': only = optarg; break;
		case 'x': scale = atof(optarg); break;
		case 'r': replay = optarg; break;
		case 'l':
			for (const struct scenario *sc = scenarios; sc->name; sc++)
				printf("%-22s %s\n", sc->name, sc->what);
			return 0;
		default: usage(); return c == 'h' ? 0 : 2;
		}
	}
	if (scale <= 0)
		scale = 1.0;
	const struct scenario *table = scenarios;
	if (replay) { /* one scenario: the trace */
		if (replay_load(replay))
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
	if (json && report_write_json(json, results, n)) {
		perror(json);
		return 1;
	}
	return failed ? 1 : 0;
}
