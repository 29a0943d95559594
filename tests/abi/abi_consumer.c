/* SPDX-License-Identifier: MIT */
/*
 * A program that uses libiovt as a VMM would, built twice: against
 * libiovt.so and against the installed-form libiovt.a. It checks what
 * linking iovt must not do to its host and the versioning contract:
 *  - the process's malloc is still the C library's (no jemalloc took it
 *    over), and no jemalloc name (mallocx, mallctl) is visible to it;
 *  - iovt_version() / iovt_version_number() agree with iovt_version.h;
 *  - struct iovt_config's reserved fields are refused when not 0, and
 *    iovt_stats_get writes its reserved and unused error slots as 0.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iovt.h"

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || \
	__has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static int failures;
#define EXPECT(cond, ...)                                                   \
	do {                                                                \
		if (!(cond)) {                                              \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			printf(__VA_ARGS__);                                \
			printf("\n");                                       \
			failures++;                                         \
		}                                                           \
	} while (0)

static const char *owner(void *fn)
{
	Dl_info di;
	if (!dladdr(fn, &di) || !di.dli_fname)
		return "?";
	return di.dli_fname;
}

int main(int argc, char **argv)
{
	const char *kind = argc > 1 ? argv[1] : "?";
	iovt_thread_register();

	/* An engine with a domain: the engine's allocator is up and running. */
	struct iovt_engine *e = NULL;
	EXPECT(iovt_engine_create(NULL, &e) == 0, "engine create");
	struct iovt_domain_config dc = { .did = 1, .root_gpa = 0, .addr_width = 48 };
	struct iovt_domain *d = NULL;
	EXPECT(iovt_domain_create(e, &dc, &d) == 0, "domain create");
	void *p = malloc(4096);
	free(p);

	/* Whose malloc does this program call? */
	void *(*volatile m)(size_t) = malloc;
	const char *who = owner((void *)m);
	printf("abi-consumer (%s): malloc is from %s\n", kind, who);
	EXPECT(!strstr(who, "jemalloc") && !strstr(who, "libiovt"), "malloc from %s", who);
#if !SANITIZED /* else the sanitizer's runtime, in the program, owns malloc */
	EXPECT(strstr(who, "libc.so") != NULL, "malloc from %s, not the C library", who);
#endif
	EXPECT(dlsym(RTLD_DEFAULT, "mallocx") == NULL, "a mallocx is visible (from %s)",
	       owner(dlsym(RTLD_DEFAULT, "mallocx")));
	EXPECT(dlsym(RTLD_DEFAULT, "mallctl") == NULL, "a mallctl is visible");
	EXPECT(dlsym(RTLD_DEFAULT, "iovt_je_mallocx") == NULL, "the private jemalloc is visible");
	EXPECT(dlsym(RTLD_DEFAULT, "apply_plan") == NULL, "an internal name is visible");

	/* Versions: the header's and the library's agree (same build). */
	printf("abi-consumer (%s): iovt_version() = %s, header %s\n", kind, iovt_version(),
	       IOVT_VERSION_STRING);
	EXPECT(strcmp(iovt_version(), IOVT_VERSION_STRING) == 0, "version string");
	EXPECT(iovt_version_number() == IOVT_VERSION, "version number %#x", iovt_version_number());
	EXPECT(IOVT_VERSION == IOVT_VERSION_NUM(IOVT_VERSION_MAJOR, IOVT_VERSION_MINOR,
						IOVT_VERSION_PATCH), "IOVT_VERSION");

	/* Growth room: a reserved config field set is refused... */
	struct iovt_config c0;
	for (size_t i = 0; i < sizeof(c0.reserved) / sizeof(c0.reserved[0]); i++) {
		struct iovt_config c = { 0 };
		c.reserved[i] = 1;
		struct iovt_engine *x = NULL;
		int rc = iovt_engine_create(&c, &x);
		EXPECT(rc == -EINVAL, "reserved[%zu] set: %d", i, rc);
		if (!rc)
			iovt_engine_destroy(x);
	}
	/* ... and stats write theirs as 0 over whatever the caller had. */
	struct iovt_stats st;
	memset(&st, 0xa5, sizeof(st));
	iovt_stats_get(e, &st);
	for (size_t i = 0; i < sizeof(st.reserved) / sizeof(st.reserved[0]); i++)
		EXPECT(st.reserved[i] == 0, "stats reserved[%zu] = %#llx", i,
		       (unsigned long long)st.reserved[i]);
	for (size_t k = IOVT_ERR_KIND_COUNT; k < IOVT_ERR_KIND_SLOTS; k++)
		EXPECT(st.errors[k] == 0, "stats errors[%zu] (no such kind) = %#llx", k,
		       (unsigned long long)st.errors[k]);
	EXPECT(st.reserved[0] == 0 && st.queues <= 1, "stats");

	EXPECT(iovt_domain_destroy(d) == 0, "domain destroy");
	iovt_engine_destroy(e);
	iovt_thread_unregister();
	printf("abi-consumer (%s): %s\n", kind, failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
