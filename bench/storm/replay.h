/* SPDX-License-Identifier: MIT */
/*
 * Trace replay for iovt-storm (--replay FILE): a guest's recorded VT-d
 * activity (map/unmap of its page table, PSI/DSI/global invalidations,
 * waits) driven through a world like the scenarios. The format is in
 * README.md ("Trace replay"); scripts/record-trace.sh records one.
 */
#ifndef IOVT_BENCH_REPLAY_H
#define IOVT_BENCH_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "scenarios.h"

/* The replay's domains are this wide: map/unmap ranges and PSI addresses
 * must lie below 2^REPLAY_WIDTH. */
#define REPLAY_WIDTH 48u
/* Default bound on the 4 KiB pages a trace may edit, summed over all its
 * map and unmap lines (2^24 pages: 64 GiB). The simulated guest keeps its
 * truth per 4 KiB page and the judges compare every edited page, so this
 * bounds the replay's memory and time (one 64 GiB map: about 2 s and
 * 250 MiB peak RSS, both sides). */
#define REPLAY_MAX_PAGES_DEFAULT (1ull << 24)
/* Events (non-blank, non-comment lines) a trace may hold: 32 bytes each. */
#define REPLAY_MAX_EVENTS (1ul << 24)
/* Lines, blank and comment ones too. */
#define REPLAY_MAX_LINES (4ul * REPLAY_MAX_EVENTS)
/* Default bound on the run's work, estimated before it runs by a dry run of
 * the replay (replay_load): the pages each invalidation covers that its
 * domain may map, the held edits each one scans, the spans the judges read
 * at each wait. A step is ~70 ns of the baseline's run over a small
 * domain, ~500 ns over a large one (its GTree's compares: a random trace of
 * 20,000 events measured so): 2^27 steps is at most a minute or so a side. */
#define REPLAY_MAX_WORK_DEFAULT (1ull << 27)
/* Longest line, in bytes (a longer one is not a text trace). */
#define REPLAY_MAX_LINE 4096u

struct replay_options {
	/* Skip malformed lines (reported, counted) and replay the rest; off:
	 * any malformed line makes the trace unreplayable. */
	bool skip_malformed;
	uint64_t max_pages; /* 0: REPLAY_MAX_PAGES_DEFAULT */
	uint64_t max_work;  /* 0: REPLAY_MAX_WORK_DEFAULT */
};

/*
 * Reads and parses the trace (".gz" through `gzip -dc`) once, keeping its
 * events in memory for every run. Every line is checked against what the
 * replay and the engine accept (README "Trace replay"); problems are
 * reported on stderr as "replay: FILE:LINE: ..." before anything runs.
 * Returns 0, or a negative errno when the trace cannot be replayed: the
 * file cannot be read or decoded, it is not a text trace (control bytes,
 * a line over REPLAY_MAX_LINE), it exceeds max_pages, max_work,
 * REPLAY_MAX_EVENTS or REPLAY_MAX_LINES,
 * or (unless opt->skip_malformed) it has malformed lines. An empty trace
 * replays. opt may be NULL (defaults).
 */
int replay_load(const char *path, const struct replay_options *opt);

/* A one-entry scenario table (zero-terminated) that replays the loaded
 * trace, named "replay:NAME" (NAME: the file's base name without ".gz" and
 * ".trace"). Its runner ignores `scale`. NULL before replay_load. */
const struct scenario *replay_scenarios(void);

/* Malformed lines found (and skipped) by replay_load. */
unsigned long replay_malformed(void);

void replay_free(void);

#endif
