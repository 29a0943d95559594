/* SPDX-License-Identifier: MIT */
/*
 * Trace replay for iovt-storm (--replay FILE): a guest's recorded VT-d
 * activity (map/unmap of its page table, PSI/DSI/global invalidations,
 * waits) driven through a world like the scenarios. The format is in
 * README.md ("Trace replay"); scripts/record-trace.sh records one.
 */
#ifndef IOVT_BENCH_REPLAY_H
#define IOVT_BENCH_REPLAY_H

#include "scenarios.h"

/* Reads and parses the trace (".gz" through `gzip -dc`) once, keeping its
 * events in memory for every run. Malformed lines are counted, reported on
 * stderr with their line numbers and skipped. 0, or -errno when the file
 * cannot be read (nothing usable is not an error: an empty trace replays). */
int replay_load(const char *path);

/* A one-entry scenario table (zero-terminated) that replays the loaded
 * trace, named "replay:NAME" (NAME: the file's base name without ".gz" and
 * ".trace"). Its runner ignores `scale`. NULL before replay_load. */
const struct scenario *replay_scenarios(void);

/* Malformed lines found by replay_load. */
unsigned long replay_malformed(void);

void replay_free(void);

#endif
