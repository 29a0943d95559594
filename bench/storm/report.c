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

/* s as a JSON string (a trace's path may hold quotes, backslashes, control bytes). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_side(FILE *f, const char *key, const struct side_result *s)
{
	fprintf(f,
		"\"%s\": {\"invalidations\": %lu, \"fences\": %lu, \"ranges\": %lu, "
		"\"ptes_walked\": %lu, \"sink_calls\": %lu, \"map_calls\": %lu, "
		"\"unmap_calls\": %lu, \"oracle_min_calls\": %lu, \"rejected_calls\": %lu, "
		"\"mismatches\": %lu, \"errors\": %lu, \"wall_s\": %.6f, \"cpu_s\": %.6f, "
		"\"engine_s\": %.6f, \"sink_s\": %.6f, \"own_s\": %.6f, \"est_sink_s\": %.6f, "
		"\"peak_rss_bytes\": %lu, "
		"\"bytes_per_extent\": %lu, \"latency_p50_ns\": %lu, \"latency_p99_ns\": %lu, "
		"\"queue_items\": %lu, \"queue_full_waits\": %lu, \"fences_inline\": %lu, "
		"\"fences_drained\": %lu}",
		key, s->invalidations, s->fences, s->ranges, s->ptes_walked, s->sink_calls,
		s->map_calls, s->unmap_calls, s->oracle_min_calls, s->rejected_calls, s->mismatches,
		s->errors, s->wall_s, s->cpu_s, s->engine_s, s->sink_s, s->own_s, s->est_sink_ns / 1e9,
		s->peak_rss_bytes,
		s->bytes_per_extent, s->latency_p50_ns, s->latency_p99_ns, s->queue_items,
		s->queue_full_waits, s->fences_inline, s->fences_drained);
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
		fprintf(f, "  {\"name\": ");
		json_str(f, r[i].name);
		fprintf(f, ", \"what\": ");
		json_str(f, r[i].what);
		fprintf(f, ", ");
		json_side(f, "engine", &r[i].engine);
		fprintf(f, ", ");
		json_side(f, "baseline", &r[i].baseline);
		fprintf(f, "}%s\n", i + 1 < n ? "," : "");
	}
	fprintf(f, " ]}\n");
	return fclose(f) ? -errno : 0;
}

static void print_side_table(FILE *out, const char *title, const struct scenario_result *r, int n,
			     int baseline)
{
	fprintf(out, "%s\n", title);
	fprintf(out, "%-22s %10s %9s %11s %10s %9s %9s %8s %6s %8s %9s\n", "scenario", "invals",
		"ranges", "ptes", "calls", "maps", "unmaps", "oracle", "rej", "mismatch", "engine_ms");
	for (int i = 0; i < n; i++) {
		const struct side_result *s = baseline ? &r[i].baseline : &r[i].engine;
		fprintf(out, "%-22s %10lu %9lu %11lu %10lu %9lu %9lu %8lu %6lu %8lu %9.1f\n", r[i].name,
			s->invalidations, s->ranges, s->ptes_walked, s->sink_calls, s->map_calls,
			s->unmap_calls, s->oracle_min_calls, s->rejected_calls, s->mismatches,
			s->engine_s * 1e3);
	}
}

static double ratio(double b, double e)
{
	return e > 0 ? b / e : 0;
}

/* Estimated VMM time per invalidation: the side's own time plus the model
 * sink's charged per-call host cost, over the side's invalidations (us). */
static double vmm_us(const struct side_result *s)
{
	return s->invalidations ? (s->engine_s + s->est_sink_ns / 1e9) / s->invalidations * 1e6 : 0;
}

void report_print_table(FILE *out, const struct scenario_result *r, int n)
{
	print_side_table(out, "engine (iovt)", r, n, 0);
	fputc('\n', out);
	print_side_table(out, "baseline (QEMU-style: GTree, one call per leaf, no coalescing)", r, n, 1);
	fputc('\n', out);
	fprintf(out, "side by side (x = baseline / engine; eng = time in the engine or baseline, sink "
		     "included; own = eng minus the model sink's time; vmm = (eng + est. sink cost) / "
		     "invalidation; lat = first invalidation -> fence return)\n");
	fprintf(out, "%-22s %9s %9s %7s %9s %9s %7s %8s %8s %6s %9s %9s %7s %8s %8s %8s %8s %5s %5s\n",
		"scenario", "calls_E", "calls_B", "x", "eng_ms_E", "eng_ms_B", "x", "own_ms_E",
		"own_ms_B", "x", "vmm_us_E", "vmm_us_B", "x", "p50us_E", "p50us_B", "p99us_E", "p99us_B",
		"rej", "mism");
	for (int i = 0; i < n; i++) {
		const struct side_result *e = &r[i].engine, *b = &r[i].baseline;
		fprintf(out,
			"%-22.22s %9lu %9lu %7.1f %9.1f %9.1f %7.1f %8.1f %8.1f %6.1f %9.2f %9.2f %7.1f "
			"%8.1f %8.1f %8.1f %8.1f %5lu %5lu\n",
			r[i].name, e->sink_calls, b->sink_calls, ratio(b->sink_calls, e->sink_calls),
			e->engine_s * 1e3, b->engine_s * 1e3, ratio(b->engine_s, e->engine_s),
			e->own_s * 1e3, b->own_s * 1e3, ratio(b->own_s, e->own_s), vmm_us(e),
			vmm_us(b), ratio(vmm_us(b), vmm_us(e)), e->latency_p50_ns / 1e3,
			b->latency_p50_ns / 1e3, e->latency_p99_ns / 1e3, b->latency_p99_ns / 1e3,
			e->rejected_calls + b->rejected_calls, e->mismatches + b->mismatches);
	}
	fprintf(out, "\nmemory: peak RSS is the process high-water mark after each side's run (sides run "
		     "in order, so it only grows); bytes/extent at the end of the run: the baseline's GTree "
		     "node + DMAMap, the engine's shadow (radix tables + extents) / extents\n");
	fprintf(out, "%-22s %12s %12s %14s %14s\n", "scenario", "rss_E_MiB", "rss_B_MiB", "B/extent_E",
		"B/extent_B");
	for (int i = 0; i < n; i++)
		fprintf(out, "%-22s %12.1f %12.1f %14lu %14lu\n", r[i].name,
			r[i].engine.peak_rss_bytes / 1048576.0, r[i].baseline.peak_rss_bytes / 1048576.0,
			r[i].engine.bytes_per_extent, r[i].baseline.bytes_per_extent);
	fprintf(out, "\nengine intake: items drained from the queues, waits applied by the posting thread "
		     "(inline) or by a worker / poller / iovt_fence (drained), posts that found a full queue\n");
	fprintf(out, "%-22s %12s %14s %15s %12s\n", "scenario", "queue_items", "fences_inline",
		"fences_drained", "full_waits");
	for (int i = 0; i < n; i++)
		fprintf(out, "%-22s %12lu %14lu %15lu %12lu\n", r[i].name, r[i].engine.queue_items,
			r[i].engine.fences_inline, r[i].engine.fences_drained, r[i].engine.queue_full_waits);
}
