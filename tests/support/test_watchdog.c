/* SPDX-License-Identifier: MIT */
/*
 * Self-test of the watchdog. A watchdog that never fires proves nothing, so
 * the driver (no argument) runs this program twice as a child:
 *   pass   threads progress, and one slot sits idle for longer than the stall
 *          limit while unwatched: must exit 0;
 *   stall  one watched thread blocks forever: must exit 1 within the stall
 *          limit plus gdb's time, with the report and gdb's backtraces (the
 *          blocked function's name among them) on stderr.
 * The modes run in children (fork+exec of ourselves, from a driver that has no
 * threads) because the stall ends the process, and so that sanitizers never
 * see a fork of a multi-threaded process.
 */
#include "watchdog.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STALL_S 1.0

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static atomic_bool quit;

static void *worker(void *arg)
{
	unsigned slot = (unsigned)(uintptr_t)arg;
	watchdog_expect(slot, "worker");
	while (!atomic_load(&quit)) {
		watchdog_progress(slot);
		sleep_s(0.001);
	}
	watchdog_idle(slot);
	return NULL;
}

/* A slot that goes idle must not count its idle time as a stall. */
static void *pauser(void *arg)
{
	unsigned slot = (unsigned)(uintptr_t)arg;
	for (int round = 0; round < 2; round++) {
		watchdog_expect(slot, "pauser");
		for (int i = 0; i < 300; i++) {
			watchdog_progress(slot);
			sleep_s(0.001);
		}
		watchdog_idle(slot);
		sleep_s(2.5 * STALL_S);
	}
	return NULL;
}

static int run_pass(void)
{
	pthread_t t[5];
	watchdog_start("watchdog-selftest-pass", STALL_S);
	for (uintptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	pthread_create(&t[4], NULL, pauser, (void *)4);
	pthread_join(t[4], NULL);
	atomic_store(&quit, true);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	watchdog_stop();
	return 0;
}

/* External and noinline so that gdb's backtrace names it: the driver looks
 * for it to know the backtraces are of the threads, not just of gdb. */
__attribute__((noinline)) void watchdog_selftest_stuck_here(void)
{
	static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
	pthread_mutex_lock(&m);
	for (;;)
		pthread_cond_wait(&c, &m); /* never signalled: the stall */
}

static void *stuck(void *arg)
{
	unsigned slot = (unsigned)(uintptr_t)arg;
	watchdog_expect(slot, "stuck");
	for (int i = 0; i < 100; i++)
		watchdog_progress(slot);
	watchdog_selftest_stuck_here();
	return NULL;
}

static int run_stall(void)
{
	pthread_t t[2];
	watchdog_start("watchdog-selftest-stall", STALL_S);
	pthread_create(&t[0], NULL, worker, (void *)0);
	pthread_create(&t[1], NULL, stuck, (void *)1);
	sleep_s(60); /* the watchdog ends the process long before */
	fprintf(stderr, "stall mode: the watchdog did not fire\n");
	return 2;
}

/* Runs ourselves with mode; returns the wait status and the child's
 * stdout+stderr. Kills the child past limit_s so a dead watchdog fails the
 * test instead of hanging it. */
static int run_child(const char *self, const char *mode, double limit_s, char *out, size_t cap,
		     double *elapsed)
{
	int fd[2];
	if (pipe(fd) < 0) {
		perror("pipe");
		exit(1);
	}
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		dup2(fd[1], 1);
		dup2(fd[1], 2);
		close(fd[0]);
		close(fd[1]);
		execl(self, self, mode, (char *)NULL);
		perror("exec");
		_exit(127);
	}
	close(fd[1]);
	size_t len = 0;
	bool killed = false;
	for (;;) {
		int left_ms = (int)((t0 + limit_s - now()) * 1000);
		if (left_ms <= 0 && !killed) {
			kill(pid, SIGKILL);
			killed = true;
		}
		if (left_ms <= -5000)
			break; /* a grandchild (gdb) still holds the pipe open */
		struct pollfd p = {.fd = fd[0], .events = POLLIN};
		if (poll(&p, 1, left_ms > 0 ? left_ms : 1000) == 0)
			continue;
		char buf[4096];
		ssize_t n = read(fd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t k = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
		memcpy(out + len, buf, k);
		len += k;
	}
	out[len] = '\0';
	close(fd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	*elapsed = now() - t0;
	fprintf(stderr, "---- %s mode: status 0x%x after %.1f s%s ----\n%s---- end of %s mode ----\n",
		mode, st, *elapsed, killed ? " (killed: over the limit)" : "", out, mode);
	return st;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "pass") == 0)
		return run_pass();
	if (argc > 1 && strcmp(argv[1], "stall") == 0)
		return run_stall();

	static char out[1 << 20];
	double el;
	int fails = 0;
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	self[n] = '\0';

	int st = run_child(self, "pass", 60, out, sizeof(out), &el);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "FAIL: pass mode did not exit 0\n");
		fails++;
	}

	/* gdb gets 30 s (+5 to die) in the watchdog; the rest is slack for
	 * sanitizer builds on a loaded machine. */
	st = run_child(self, "stall", STALL_S + 35 + 20, out, sizeof(out), &el);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 1) {
		fprintf(stderr, "FAIL: stall mode did not exit 1\n");
		fails++;
	}
	if (el < STALL_S * 0.9) {
		fprintf(stderr, "FAIL: stall mode ended before the stall limit\n");
		fails++;
	}
	const char *want[] = {"STALLED", "stuck", "Thread ", "watchdog_selftest_stuck_here"};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (!strstr(out, want[i])) {
			fprintf(stderr, "FAIL: stall mode output lacks \"%s\"%s\n", want[i],
				strstr(out, "gdb not found") ? " (gdb is not installed)" : "");
			fails++;
		}
	}
	fprintf(stderr, "watchdog-selftest: %s\n", fails ? "FAILED" : "passed");
	return fails ? 1 : 0;
}
