/* SPDX-License-Identifier: MIT */
/*
 * Who drains queues besides their producers: engine worker threads, and
 * the host's own loop through iovt_poll (DPDK lcores: engine/dpdk/lcores.c).
 *
 * A worker sleeps on its own futex word when its queues are quiet. Producers
 * wake it only when there is something a fence-less drain would not do on
 * its own: an asynchronous or hand-off fence, or a ring past half full.
 * The wake is an eventcount: the producer bumps `seq` after its push and
 * reads `sleeping`; the worker sets `sleeping` and re-reads `seq` before it
 * sleeps on it (both sequentially consistent, so one of them sees the other).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "common/futex.h"
#include "common/rcu.h"
#include "domain/domain.h"

#define WORKER_BUDGET 1024u
#define IDLE_SLEEP_NS (50 * 1000 * 1000L)

/* Tests only: the idle sleep in ns when nonzero. intake-locked-fence-kick
 * makes it a minute, so that a fence left to the worker's timeout instead of
 * a kick hangs (and fails) rather than completing 50 ms late. */
long workers_test_idle_ns;
void (*workers_test_before_publish)(struct iovt_engine *e);
#define IDLE_POLLS 32u

void queue_kick(struct iovt_queue *q)
{
	struct iovt_engine *e = q->engine;
	unsigned n = atomic_load_explicit(&e->nworkers, memory_order_acquire);
	if (!n)
		return;
	struct worker *w = &e->workers[q->group % n];
	atomic_fetch_add_explicit(&w->seq, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&w->sleeping, memory_order_seq_cst))
		futex_wake_all(&w->seq);
}

/* Where the calling thread's next pass starts in the queue table: one
 * further each pass. Every pass started at the first queue before, so a
 * queue that always held a budget's worth starved the later ones of its
 * group (their hand-off fences waited as long as it streamed; found by
 * review). Initial-exec, as every thread-local of the library. */
static __thread unsigned poll_start;

unsigned iovt_poll(struct iovt_engine *e, unsigned poller, unsigned npollers, unsigned budget)
{
	unsigned total = 0;

	if (!npollers || poller >= npollers || !budget)
		return 0;
	const unsigned start = poll_start++;
	/* The table is read in a read-side section, a queue is drained outside
	 * it: holding its drain flag keeps it alive (iovt_queue_destroy waits
	 * for the flag after its grace period). The table may change between
	 * two reads; a queue skipped or seen twice is harmless here. */
	for (unsigned qi = 0; total < budget; qi++) {
		iovt_rcu_read_lock();
		struct queue_table *qt = iovt_rcu_dereference(e->queues);
		if (!qt || qi >= qt->n) {
			iovt_rcu_read_unlock();
			break;
		}
		struct iovt_queue *q = qt->q[(start + qi) % qt->n];
		bool mine = q->group % npollers == poller && q->ring->ops->count(q->ring) &&
			    queue_try_drain_begin(q); /* else its producer (or iovt_fence) is on it */
		iovt_rcu_read_unlock();
		if (!mine)
			continue;
		total += queue_drain(q, budget - total);
		queue_drain_end(q);
	}
	return total;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct iovt_engine *e = w->engine;
	unsigned n = w->count;

	iovt_thread_register();
	unsigned idle = 0;
	while (!atomic_load_explicit(&e->workers_stop, memory_order_acquire)) {
		uint32_t seq = atomic_load_explicit(&w->seq, memory_order_seq_cst);
		if (iovt_poll(e, w->idx, n, WORKER_BUDGET)) {
			idle = 0;
			continue;
		}
		/* Right after work, look again a few times before sleeping: the
		 * next fence often comes within microseconds, and catching it
		 * here saves its poster a futex wake and this thread a wake-up. */
		if (idle++ < IDLE_POLLS) {
			sched_yield();
			continue;
		}
		idle = 0;
		atomic_store_explicit(&w->sleeping, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&w->seq, memory_order_seq_cst) == seq &&
		    !atomic_load_explicit(&e->workers_stop, memory_order_acquire))
			futex_wait_for(&w->seq, seq, workers_test_idle_ns ? workers_test_idle_ns : IDLE_SLEEP_NS);
		atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->naps, 1, memory_order_relaxed); /* off the data path */
	}
	iovt_thread_unregister();
	return NULL;
}

static void join_workers(struct iovt_engine *e, unsigned n)
{
	atomic_store_explicit(&e->workers_stop, true, memory_order_release);
	for (unsigned i = 0; i < n; i++) {
		atomic_fetch_add_explicit(&e->workers[i].seq, 1, memory_order_seq_cst);
		futex_wake_all(&e->workers[i].seq);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(e->workers[i].thread, NULL);
}

int iovt_workers_start(struct iovt_engine *e, unsigned n)
{
	if (!n || n > IOVT_MAX_WORKERS) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	pthread_mutex_lock(&e->workers_lock);
	if (atomic_load(&e->nworkers) || e->ext_pollers) {
		pthread_mutex_unlock(&e->workers_lock);
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EBUSY;
	}
	atomic_store(&e->workers_stop, false);
	for (unsigned i = 0; i < n; i++) {
		struct worker *w = &e->workers[i];
		atomic_store(&w->seq, 0);
		atomic_store(&w->sleeping, 0);
		w->engine = e;
		w->idx = i;
		w->count = n;
		if (pthread_create(&w->thread, NULL, worker_main, w)) {
			join_workers(e, i);
			pthread_mutex_unlock(&e->workers_lock);
			return -EAGAIN;
		}
	}
	if (__builtin_expect(workers_test_before_publish != NULL, 0))
		workers_test_before_publish(e);
	atomic_store_explicit(&e->nworkers, n, memory_order_release);
	/* Each worker kicked once now that kicks reach it: a hand-off fence
	 * posted before this store kicked no one (queue_kick saw no worker),
	 * and a worker that had already polled and gone to sleep would leave
	 * it to its idle timeout (found by review: intake-workers-start-kick). */
	for (unsigned i = 0; i < n; i++) {
		atomic_fetch_add_explicit(&e->workers[i].seq, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&e->workers[i].sleeping, memory_order_seq_cst))
			futex_wake_all(&e->workers[i].seq);
	}
	pthread_mutex_unlock(&e->workers_lock);
	return 0;
}

void iovt_workers_stop(struct iovt_engine *e)
{
	pthread_mutex_lock(&e->workers_lock);
	unsigned n = atomic_load(&e->nworkers);
	if (n) {
		join_workers(e, n);
		atomic_store_explicit(&e->nworkers, 0, memory_order_release);
	}
	pthread_mutex_unlock(&e->workers_lock);
}
