/* SPDX-License-Identifier: MIT */
#include "report.h"

#include <errno.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static void cpu_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];
	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "model name", 10)) {
			char *c = strchr(line, ':');
			if (c) {
				c += 2;
				c[strcspn(c, "\n")] = 0;
				snprintf(buf, len, "%s", c);
			}
			break;
		}
	}
	fclose(f);
}

static void json_side(FILE *f, const char *key, const struct side_result *s)
{
	fprintf(f,
		"\"%s\": {\"invalidations\": %lu, \"fences\": %lu, \"ranges\": %lu, "
		"\"ptes_walked\": %lu, \"sink_calls\": %lu, \"map_calls\": %lu, "
		"\"unmap_calls\": %lu, \"oracle_min_calls\": %lu, \"rejected_calls\": %lu, "
		"\"mismatches\": %lu, \"errors\": %lu, \"wall_s\": %.6f, \"cpu_s\": %.6f, "
		"\"engine_s\": %.6f, \"est_sink_s\": %.6f}",
		key, s->invalidations, s->fences, s->ranges, s->ptes_walked, s->sink_calls,
		s->map_calls, s->unmap_calls, s->oracle_min_calls, s->rejected_calls, s->mismatches,
		s->errors, s->wall_s, s->cpu_s, s->engine_s, s->est_sink_ns / 1e9);
}

int report_write_json(const char *path, const struct scenario_result *r, int n)
{
	FILE *f = fopen(path, "w");
	struct utsname u;
	char cpu[128];
	if (!f)
		return -errno;
	uname(&u);
	cpu_model(cpu, sizeof(cpu));
	fprintf(f, "{\"machine\": {\"cpus\": %ld, \"cpu_model\": \"%s\", \"kernel\": \"%s\", "
		   "\"arch\": \"%s\"},\n \"scenarios\": [\n",
		sysconf(_SC_NPROCESSORS_ONLN), cpu, u.release, u.machine);
	for (int i = 0; i < n; i++) {
		fprintf(f, "  {\"name\": \"%s\", \"what\": \"%s\", ", r[i].name, r[i].what);
		json_side(f, "engine", &r[i].engine);
		fprintf(f, "}%s\n", i + 1 < n ? "," : "");
	}
	fprintf(f, " ]}\n");
	return fclose(f) ? -errno : 0;
}

void report_print_table(FILE *out, const struct scenario_result *r, int n)
{
	fprintf(out, "%-22s %10s %9s %11s %10s %9s %9s %8s %6s %8s %9s\n", "scenario", "invals",
		"ranges", "ptes", "calls", "maps", "unmaps", "oracle", "rej", "mismatch", "engine_ms");
	for (int i = 0; i < n; i++) {
		const struct side_result *s = &r[i].engine;
		fprintf(out, "%-22s %10lu %9lu %11lu %10lu %9lu %9lu %8lu %6lu %8lu %9.1f\n", r[i].name,
			s->invalidations, s->ranges, s->ptes_walked, s->sink_calls, s->map_calls,
			s->unmap_calls, s->oracle_min_calls, s->rejected_calls, s->mismatches,
			s->engine_s * 1e3);
	}
}
