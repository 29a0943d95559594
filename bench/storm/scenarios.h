/* SPDX-License-Identifier: MIT */
/* The storm scenarios: each models what a real guest does to its vIOMMU. */
#ifndef IOVT_BENCH_SCENARIOS_H
#define IOVT_BENCH_SCENARIOS_H

#include <stdbool.h>

#include "report.h"

struct scenario {
	const char *name;
	const char *what;
	/* Runs at `scale` (1.0: the default size, seconds); fills *out except
	 * wall/cpu time. Returns 0, or nonzero when a judge failed. */
	int (*run)(double scale, bool baseline, struct side_result *out);
};

extern const struct scenario scenarios[]; /* ends with a zeroed entry */

struct world;
/* Fills *out from the world's counters and judges' verdicts, then destroys
 * the world. Returns nonzero when a judge failed. */
int scenario_finish(struct world *w, struct side_result *out);

#endif
