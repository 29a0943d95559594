/* SPDX-License-Identifier: MIT */
/* Stall detector: see watchdog.h for why and how to use it. */
#include "watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GDB_TIMEOUT "30" /* seconds; a gdb stuck on a wedged process must not hang the test */

extern char **environ;

struct watchdog_counter watchdog_counters[WATCHDOG_SLOTS];

static struct {
	_Atomic(const char *) name;
	atomic_bool watched;
} slots[WATCHDOG_SLOTS];

static pthread_t monitor;
static bool running;
static bool stopping;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static const char *test;
static double stall_s;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The report is written with write(2), not stdio: a stalled thread may be
 * holding the stderr lock, and the report must still come out. */
static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	for (int off = 0; off < n;) {
		ssize_t w = write(2, buf + off, (size_t)(n - off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (int)w;
	}
}

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");
		char file[PATH_MAX];
		if (len > 0 && len + strlen(prog) + 2 <= sizeof(file)) {
			snprintf(file, sizeof(file), "%.*s/%s", (int)len, path, prog);
			if (access(file, X_OK) == 0)
				return true;
		}
		path += len;
		if (*path == ':')
			path++;
	}
	return false;
}

/* posix_spawn rather than fork: glibc's fork runs the atfork handlers, which
 * take every malloc (and jemalloc) lock, and a stalled thread may hold one;
 * sanitizers also hook fork in a multi-threaded process. posix_spawn is a
 * vfork+exec with no handlers. gdb stops every thread, this one included, so
 * the 30 s limit is enforced by timeout(1), a separate process. */
static void dump_backtraces(void)
{
	if (!in_path("gdb")) {
		say("watchdog: gdb not found in PATH: no backtraces (scripts/install-deps.sh installs it)\n");
		return;
	}
	char pid[24];
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	char *argv[] = {"timeout", "-k", "5", GDB_TIMEOUT, "gdb", "-p", pid, "-batch", "-nx",
			"-iex", "set debuginfod enabled off", "-ex", "set pagination off",
			"-ex", "thread apply all bt", NULL};
	char **args = in_path("timeout") ? argv : argv + 4;

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, 2, 1);
	say("watchdog: backtraces of every thread (gdb -p %s):\n", pid);
	pid_t child;
	int err = posix_spawnp(&child, args[0], &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err) {
		say("watchdog: cannot run gdb: %s\n", strerror(err));
		return;
	}
	int st;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && (WEXITSTATUS(st) == 124 || WEXITSTATUS(st) == 137))
		say("watchdog: gdb timed out after %s s\n", GDB_TIMEOUT);
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		say("watchdog: gdb ended with status 0x%x\n", st);
}

static _Noreturn void report(const double since[], const bool stalled[], double t)
{
	/* Keep what the test already printed, unless a stalled thread is inside
	 * stdio (then waiting for its lock would hang the report too). */
	if (ftrylockfile(stdout) == 0) {
		fflush_unlocked(stdout);
		funlockfile(stdout);
	}
	say("watchdog: %s: STALL: a watched slot made no progress for %.1f s\n", test, stall_s);
	for (unsigned i = 0; i < WATCHDOG_SLOTS; i++) {
		const char *name = atomic_load(&slots[i].name);
		if (!name)
			continue;
		bool w = atomic_load(&slots[i].watched);
		say("watchdog:   slot %2u %-20s count %lu, %s%s\n", i, name,
		    atomic_load_explicit(&watchdog_counters[i].n, memory_order_relaxed),
		    w ? "watched" : "idle", stalled[i] ? ", STALLED" : "");
		if (stalled[i])
			say("watchdog:           last progress %.1f s ago\n", t - since[i]);
	}
	dump_backtraces();
	say("watchdog: %s: failing on the stall (exit 1)\n", test);
	_exit(1);
}

static void *monitor_main(void *arg)
{
	(void)arg;
	unsigned long seen[WATCHDOG_SLOTS] = {0};
	double since[WATCHDOG_SLOTS] = {0};
	bool was_watched[WATCHDOG_SLOTS] = {0};
	double poll = stall_s / 10;
	if (poll < 0.01)
		poll = 0.01;
	if (poll > 0.5)
		poll = 0.5;

	pthread_mutex_lock(&mu);
	while (!stopping) {
		double t = now();
		bool stalled[WATCHDOG_SLOTS] = {0}, any = false;
		for (unsigned i = 0; i < WATCHDOG_SLOTS; i++) {
			bool w = atomic_load(&slots[i].watched);
			unsigned long n =
				atomic_load_explicit(&watchdog_counters[i].n, memory_order_relaxed);
			/* The clock of a slot starts when it becomes watched: the time it
			 * spent idle is not a stall. */
			if (n != seen[i] || (w && !was_watched[i])) {
				seen[i] = n;
				since[i] = t;
			}
			was_watched[i] = w;
			if (w && t - since[i] >= stall_s)
				stalled[i] = any = true;
		}
		if (any)
			report(since, stalled, t);

		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		long ns = until.tv_nsec + (long)(poll * 1e9);
		until.tv_sec += ns / 1000000000L;
		until.tv_nsec = ns % 1000000000L;
		pthread_cond_timedwait(&cv, &mu, &until);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

void watchdog_start(const char *test_name, double stall_seconds)
{
	if (running) {
		fprintf(stderr, "watchdog: %s: already started\n", test_name);
		abort();
	}
	const char *env = getenv("IOVT_WATCHDOG_SECONDS");
	if (env && *env)
		stall_seconds = strtod(env, NULL);
	if (!(stall_seconds > 0)) {
		fprintf(stderr, "watchdog: %s: stall_seconds must be > 0\n", test_name);
		abort();
	}
	/* Under Yama ptrace_scope=1 only an ancestor may attach; gdb is our
	 * child. Fails harmlessly (EINVAL) where Yama is absent. */
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);

	for (unsigned i = 0; i < WATCHDOG_SLOTS; i++) {
		atomic_store(&slots[i].watched, false);
		atomic_store(&slots[i].name, NULL);
		atomic_store(&watchdog_counters[i].n, 0);
	}
	test = test_name;
	stall_s = stall_seconds;
	stopping = false;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);
	pthread_condattr_destroy(&ca);
	int err = pthread_create(&monitor, NULL, monitor_main, NULL);
	if (err) {
		fprintf(stderr, "watchdog: %s: pthread_create: %s\n", test_name, strerror(err));
		exit(1);
	}
	running = true;
}

void watchdog_expect(unsigned slot, const char *name)
{
	if (slot >= WATCHDOG_SLOTS) {
		fprintf(stderr, "watchdog: slot %u out of range (0..%d)\n", slot, WATCHDOG_SLOTS - 1);
		abort();
	}
	atomic_store(&slots[slot].name, name ? name : "?");
	/* A count change restarts the slot's clock even when the monitor missed
	 * the idle in between (idle, then expect again within one poll). */
	watchdog_progress(slot);
	atomic_store(&slots[slot].watched, true);
}

void watchdog_idle(unsigned slot)
{
	if (slot < WATCHDOG_SLOTS)
		atomic_store(&slots[slot].watched, false);
}

void watchdog_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&mu);
	stopping = true;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(monitor, NULL);
	pthread_cond_destroy(&cv);
	for (unsigned i = 0; i < WATCHDOG_SLOTS; i++)
		atomic_store(&slots[i].watched, false);
	running = false;
}
