/* SPDX-License-Identifier: MIT */
/*
 * The one place iovt touches liburcu's read side and publication primitives.
 *
 * Flavor: urcu-memb (see ARCHITECTURE.md, "Why urcu-memb"). Readers are
 * threads we do not own (vCPU threads, emulated devices, DPDK lcores), so
 * QSBR's "report a quiescent state" contract cannot be imposed on them, and
 * the signal flavor would steal a signal from the host process.
 *
 * TSan: liburcu is not instrumented, so TSan cannot see the happens-before
 * edge that a grace period creates. Under TSan every RCU pointer is read with
 * an acquire load and published with a release store, read-unlock releases a
 * per-thread token and call_rcu callbacks acquire it. (../shared/notes.)
 */
#ifndef IOVT_COMMON_RCU_H
#define IOVT_COMMON_RCU_H

#if defined(__SANITIZE_THREAD__)
#define IOVT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IOVT_TSAN 1
#endif
#endif

/* Inline read-side fast paths, except under TSan: inlined, liburcu's own
 * stores (the grace-period futex) would be instrumented in our objects,
 * where the called_from_lib suppressions cannot reach them. */
#if !defined(_LGPL_SOURCE) && !defined(IOVT_TSAN)
#define _LGPL_SOURCE
#endif
#include <stdbool.h>
#include <urcu/urcu-memb.h>
#include <urcu/pointer.h>
#include <urcu/compiler.h>

/* Whether the calling thread is registered with liburcu-memb, by iovt or by
 * anyone else (engine/common/rcu_reader.c). */
bool iovt_rcu_thread_is_reader(void);

#ifdef IOVT_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char iovt_tsan_grace_token;
#define iovt_rcu_dereference(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define iovt_rcu_assign(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
static inline void iovt_rcu_read_lock(void) { urcu_memb_read_lock(); }
static inline void iovt_rcu_read_unlock(void)
{
	__tsan_release(&iovt_tsan_grace_token);
	urcu_memb_read_unlock();
}
static inline void iovt_synchronize_rcu(void)
{
	__tsan_release(&iovt_tsan_grace_token);
	urcu_memb_synchronize_rcu();
	__tsan_acquire(&iovt_tsan_grace_token);
}
/* Call first thing in every call_rcu callback. */
#define iovt_rcu_callback_enter() __tsan_acquire(&iovt_tsan_grace_token)
static inline void iovt_call_rcu(struct rcu_head *h, void (*fn)(struct rcu_head *))
{
	__tsan_release(&iovt_tsan_grace_token);
	urcu_memb_call_rcu(h, fn);
}
/* Objects published through liburcu's own structures (rculfhash nodes): the
 * publisher releases the object, each finder acquires it before reading. */
#define iovt_tsan_publish(p) __tsan_release((void *)(p))
#define iovt_tsan_consume(p) __tsan_acquire((void *)(p))
#else
#define iovt_tsan_publish(p) ((void)(p))
#define iovt_tsan_consume(p) ((void)(p))
#define iovt_rcu_dereference(p) rcu_dereference(p)
#define iovt_rcu_assign(p, v) rcu_assign_pointer(p, v)
#define iovt_rcu_read_lock() urcu_memb_read_lock()
#define iovt_rcu_read_unlock() urcu_memb_read_unlock()
#define iovt_synchronize_rcu() urcu_memb_synchronize_rcu()
#define iovt_rcu_callback_enter() do { } while (0)
#define iovt_call_rcu(h, fn) urcu_memb_call_rcu((h), (fn))
#endif

#endif
