/* SPDX-License-Identifier: MIT */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "storm_build_info.h"
#include "world.h" /* world_clock_read_ns */
#ifdef IOVT_STORM_TRANSLATE
#include "translate_run.h"
#endif

/* Every per-run metric, by name: one table drives the JSON keys, the
 * aggregates and the medians, so a new field cannot be left out of one. */
enum kind { U64, DBL };
struct field {
	const char *key;
	size_t off;
	enum kind kind;
};
#define U(f) { #f, offsetof(struct side_result, f), U64 }
#define D(f) { #f, offsetof(struct side_result, f), DBL }
static const struct field side_fields[] = {
	U(invalidations), U(fences), U(ranges), U(ptes_walked), U(sink_calls), U(map_calls),
	U(unmap_calls), U(oracle_min_calls), U(rejected_calls), U(mismatches), U(errors),
	D(wall_s), D(cpu_s), D(engine_s), D(sink_s), D(own_s), D(deferred_s), D(est_sink_s),
	U(peak_rss_bytes), U(shadow_bytes), U(extents), U(bytes_per_extent),
	U(peak_shadow_bytes), U(peak_extents), U(node_pool_bytes), U(iotlb_pool_bytes),
	U(latency_p50_ns), U(latency_p99_ns), U(queue_items), U(queue_full_waits),
	U(fences_inline), U(fences_drained),
};
#undef U
#undef D

static double get(const void *rec, const struct field *f)
{
	const char *p = (const char *)rec + f->off;
	return f->kind == U64 ? (double)*(const uint64_t *)p : *(const double *)p;
}

static void set(void *rec, const struct field *f, double v)
{
	char *p = (char *)rec + f->off;
	if (f->kind == U64)
		*(uint64_t *)p = (uint64_t)v;
	else
		*(double *)p = v;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median as Google Benchmark computes it: the middle value, or the mean
 * of the two middle ones. v is sorted in place. */
static double median_sorted(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Field f of recs[0..n) (stride bytes apart) into v, sorted; returns the median. */
static double column(const void *recs, size_t stride, int n, const struct field *f, double *v)
{
	for (int i = 0; i < n; i++)
		v[i] = get((const char *)recs + i * stride, f);
	return median_sorted(v, n);
}

static json_t *num(enum kind k, double v)
{
	return k == U64 ? json_integer((json_int_t)v) : json_real(v);
}

/* One record over its repetitions: {key: median, ...} (the keys a single run
 * has always had, so older readers keep working) plus "aggregates": {key:
 * {"min", "median", "max", "values": [per repetition, in run order]}}. */
static json_t *json_record(const void *recs, size_t stride, int n, const struct field *fields,
			   size_t nfields)
{
	json_t *o = json_object(), *agg = json_object();
	double *v = calloc(n, sizeof(*v));
	if (!o || !agg || !v) {
		free(v);
		json_decref(o);
		json_decref(agg);
		return NULL;
	}
	for (size_t k = 0; k < nfields; k++) {
		const struct field *f = &fields[k];
		json_t *vals = json_array();
		for (int i = 0; i < n; i++)
			json_array_append_new(vals, num(f->kind, get((const char *)recs + i * stride, f)));
		double med = column(recs, stride, n, f, v);
		json_object_set_new(o, f->key, num(f->kind, med));
		json_object_set_new(agg, f->key,
				    json_pack("{s:o,s:o,s:o,s:o}", "min", num(f->kind, v[0]), "median",
					      num(f->kind, med), "max", num(f->kind, v[n - 1]),
					      "values", vals));
	}
	free(v);
	json_object_set_new(o, "aggregates", agg);
	return o;
}

void report_median(const struct side_result *runs, int n, struct side_result *out)
{
	double *v = calloc(n, sizeof(*v));
	memset(out, 0, sizeof(*out));
	if (!v)
		return;
	for (size_t k = 0; k < sizeof(side_fields) / sizeof(side_fields[0]); k++)
		set(out, &side_fields[k], column(runs, sizeof(*runs), n, &side_fields[k], v));
	free(v);
}

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

/* Google Benchmark's context block, with iovt's build in it. */
/* A JSON string of s: as it is when it is UTF-8, else with each byte of
 * 0x80 and above as the text \xNN (a replayed file's name may be any
 * bytes: jansson refuses such a string, and the scenario went missing from
 * the file without an error; found by review). NULL only without memory. */
static json_t *json_text(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	size_t n = strlen(s);
	char *e = malloc(4 * n + 1);
	if (!e)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80)
			e[o++] = (char)c;
		else
			o += (size_t)snprintf(e + o, 5, "\\x%02x", c);
	}
	e[o] = 0;
	j = json_string(e);
	free(e);
	return j;
}

static json_t *json_context(const struct report_context *ctx)
{
	char date[64], host[256] = "unknown", cpu[128];
	time_t now = time(NULL);
	struct tm tm;
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S%z", localtime_r(&now, &tm));
	/* ISO 8601 wants +hh:mm */
	size_t l = strlen(date);
	if (l > 4 && (date[l - 5] == '+' || date[l - 5] == '-')) {
		memmove(date + l - 1, date + l - 2, 3);
		date[l - 2] = ':';
	}
	gethostname(host, sizeof(host) - 1);
	cpu_model(cpu, sizeof(cpu));
	json_t *c = json_pack("{s:s,s:s,s:s,s:I,s:f,s:i,s:s,s:s,s:s,s:s,s:s}",
		"date", date, "host_name", host, "cpu_model", cpu,
		"num_cpus", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "scale", ctx->scale,
		"repetitions", ctx->repetitions, "build_type", IOVT_STORM_BUILD_TYPE,
		"compiler", IOVT_STORM_COMPILER, "iovt_version", IOVT_STORM_VERSION,
		"git_commit", IOVT_STORM_GIT_COMMIT, "executable", "iovt-storm");
	if (c && ctx->replay && json_object_set_new(c, "replay", json_text(ctx->replay))) {
		json_decref(c);
		return NULL;
	}
	/* added to every timed sink call's time (tests/harness/world.c) */
	if (c)
		json_object_set_new(c, "sink_timer_ns", json_integer((json_int_t)world_clock_read_ns()));
	return c;
}

#ifdef IOVT_STORM_TRANSLATE
#define T(f) { #f, offsetof(struct translate_figures, f), DBL }
static const struct field translate_fields[] = {
	T(lookups_per_s), T(hit_rate), T(p99_ns), T(miss_ns), T(inval_kops),
	T(inval_target_kops), T(inval_dry),
};
#undef T
#endif

int report_write_json(const char *path, const struct report_context *ctx,
		      const struct scenario_result *r, int n, const struct translate_point *t, int nt)
{
	struct utsname u;
	char cpu[128];
	json_t *scen = json_array(), *doc;
	uname(&u);
	cpu_model(cpu, sizeof(cpu));
	bool lost = !scen; /* a value that could not be made: the file is not written */
	for (int i = 0; i < n && !lost; i++) {
		size_t nf = sizeof(side_fields) / sizeof(side_fields[0]);
		lost = json_array_append_new(scen, json_pack("{s:o,s:o,s:i,s:o,s:o}", "name",
			json_text(r[i].name), "what", json_text(r[i].what), "repetitions", r[i].reps,
			"engine", json_record(r[i].engine, sizeof(*r[i].engine), r[i].reps,
					      side_fields, nf),
			"baseline", json_record(r[i].baseline, sizeof(*r[i].baseline), r[i].reps,
						side_fields, nf))) != 0;
	}
	if (lost) {
		json_decref(scen);
		return -ENOMEM;
	}
	doc = json_pack("{s:o,s:{s:I,s:s,s:s,s:s},s:o}", "context", json_context(ctx), "machine",
			"cpus", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "cpu_model", cpu,
			"kernel", u.release, "arch", u.machine, "scenarios", scen);
#ifdef IOVT_STORM_TRANSLATE
	if (doc && nt) {
		json_t *ta = json_array();
		for (int i = 0; i < nt; i++) {
			json_t *fig = json_record(t[i].runs, sizeof(*t[i].runs), t[i].reps,
				translate_fields, sizeof(translate_fields) / sizeof(translate_fields[0]));
			json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:b,s:i}", "workload",
				t[i].workload, "impl", t[i].impl, "pool", t[i].pool,
				"threads", t[i].threads, "invalidator", t[i].inval, "repetitions", t[i].reps);
			if (fig && o)
				json_object_update(o, fig);
			json_decref(fig);
			json_array_append_new(ta, o);
		}
		json_object_set_new(doc, "translate", ta);
	}
#else
	(void)t;
	(void)nt;
#endif
	if (!doc)
		return -ENOMEM;
	int rc = json_dump_file(doc, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
	int err = errno;
	json_decref(doc);
	return rc ? -(err ? err : EIO) : 0;
}

static void print_side_table(FILE *out, const char *title, const struct side_result *m,
			     const struct scenario_result *r, int n)
{
	fprintf(out, "%s\n", title);
	fprintf(out, "%-22s %10s %9s %11s %10s %9s %9s %8s %6s %8s %9s\n", "scenario", "invals",
		"ranges", "ptes", "calls", "maps", "unmaps", "oracle", "rej", "mismatch", "engine_ms");
	for (int i = 0; i < n; i++) {
		const struct side_result *s = &m[i];
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
	return s->invalidations ? (s->engine_s + s->est_sink_s) / s->invalidations * 1e6 : 0;
}

void report_print_table(FILE *out, const struct scenario_result *r, int n)
{
	struct side_result *me = calloc(n ? n : 1, sizeof(*me)), *mb = calloc(n ? n : 1, sizeof(*mb));
	if (!me || !mb) {
		free(me);
		free(mb);
		return;
	}
	for (int i = 0; i < n; i++) {
		report_median(r[i].engine, r[i].reps, &me[i]);
		report_median(r[i].baseline, r[i].reps, &mb[i]);
	}
	if (n && r[0].reps > 1)
		fprintf(out, "(medians over %d repetitions; the JSON has min/median/max and every "
			     "value)\n\n", r[0].reps);
	print_side_table(out, "engine (iovt)", me, r, n);
	fputc('\n', out);
	print_side_table(out, "baseline (QEMU-style: GTree, one call per leaf, no coalescing)", mb, r,
			 n);
	fputc('\n', out);
	fprintf(out, "side by side (x = baseline / engine; eng = time in the engine or baseline, sink "
		     "included; own = eng minus the model sink's time, its timer's %" PRIu64 " ns a call "
		     "taken out of both (each timed call's clock read); vmm = (eng + est. sink cost) / "
		     "invalidation; lat = first invalidation -> fence return)\n", world_clock_read_ns());
	fprintf(out, "%-22s %9s %9s %7s %9s %9s %7s %8s %8s %6s %9s %9s %7s %8s %8s %8s %8s %5s %5s\n",
		"scenario", "calls_E", "calls_B", "x", "eng_ms_E", "eng_ms_B", "x", "own_ms_E",
		"own_ms_B", "x", "vmm_us_E", "vmm_us_B", "x", "p50us_E", "p50us_B", "p99us_E", "p99us_B",
		"rej", "mism");
	for (int i = 0; i < n; i++) {
		const struct side_result *e = &me[i], *b = &mb[i];
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
		     "in order, so it only grows); shadow = the structure mirroring the sinks at the end "
		     "of the scenario and its peak after any fence (bytes), all domains: the engine's "
		     "shadows (iovt_stats: tables + extents), the baseline's GTree nodes + DMAMap chunks "
		     "(x = baseline / engine peak)\n");
	fprintf(out, "%-22s %9s %9s %11s %11s %11s %11s %6s %9s %9s %9s %9s\n", "scenario",
		"rss_E_MiB", "rss_B_MiB", "shadow_E", "shadow_B", "peak_E", "peak_B", "x", "extents_E",
		"extents_B", "peak_ext_E", "peak_ext_B");
	for (int i = 0; i < n; i++)
		fprintf(out, "%-22.22s %9.1f %9.1f %11lu %11lu %11lu %11lu %6.2f %9lu %9lu %9lu %9lu\n",
			r[i].name, me[i].peak_rss_bytes / 1048576.0, mb[i].peak_rss_bytes / 1048576.0,
			me[i].shadow_bytes, mb[i].shadow_bytes, me[i].peak_shadow_bytes,
			mb[i].peak_shadow_bytes, ratio(mb[i].peak_shadow_bytes, me[i].peak_shadow_bytes),
			me[i].extents, mb[i].extents, me[i].peak_extents, mb[i].peak_extents);
	fprintf(out, "\nengine intake: items drained from the queues, waits applied by the posting thread "
		     "(inline) or by a worker / poller / iovt_fence (drained), posts that found a full queue\n");
	fprintf(out, "%-22s %12s %14s %15s %12s\n", "scenario", "queue_items", "fences_inline",
		"fences_drained", "full_waits");
	for (int i = 0; i < n; i++)
		fprintf(out, "%-22s %12lu %14lu %15lu %12lu\n", r[i].name, me[i].queue_items,
			me[i].fences_inline, me[i].fences_drained, me[i].queue_full_waits);
	free(me);
	free(mb);
}

void report_print_translate(FILE *out, const struct translate_point *t, int nt)
{
#ifdef IOVT_STORM_TRANSLATE
	if (!nt)
		return;
	fprintf(out, "\ntranslate (bench/translate's vhost-like workload: 4 hot ring pages + a pool of "
		     "4 KiB buffers; invalidator = strict-mode unmap/map + PSI + wait, paced to "
		     "inval_target_kops pairs/ms on every side; medians; miss = every lookup a miss, "
		     "one thread)\n");
	for (int i = 0; i < nt; i++)
		if (t[i].reps && t[i].runs[0].inval_dry) {
			fprintf(out, "IOVT_TRANSLATE_INVAL_DRY: the invalidator kept its pace and sent "
				     "no invalidation (inval_kops counts its guest PTE stores)\n");
			break;
		}
	fprintf(out, "%-8s %-6s %6s %7s %5s %12s %8s %9s %10s %11s %11s\n", "workload", "impl",
		"pool", "threads", "inval", "Mlookups/s", "hit", "p99_ns", "miss_ns", "inval_kops",
		"target_kops");
	for (int i = 0; i < nt; i++) {
		struct translate_figures m;
		double *v = calloc(t[i].reps, sizeof(*v));
		if (!v)
			return;
		for (size_t k = 0; k < sizeof(translate_fields) / sizeof(translate_fields[0]); k++)
			set(&m, &translate_fields[k], column(t[i].runs, sizeof(*t[i].runs), t[i].reps,
							       &translate_fields[k], v));
		free(v);
		fprintf(out, "%-8s %-6s %6u %7u %5d %12.2f %8.3f %9.0f %10.0f %11.1f %11.1f\n",
			t[i].workload, t[i].impl, t[i].pool, t[i].threads, t[i].inval,
			m.lookups_per_s / 1e6, m.hit_rate, m.p99_ns, m.miss_ns, m.inval_kops,
			m.inval_target_kops);
	}
#else
	(void)out;
	(void)t;
	(void)nt;
#endif
}
