/* SPDX-License-Identifier: MIT */
/*
 * Whether the calling thread is a liburcu-memb reader: registered by iovt
 * (iovt_thread_register) or by anyone else in the process (the host's own
 * rcu_register_thread, liburcu's call_rcu threads). Read from liburcu's
 * reader state, which only its static (LGPL) header names: this file alone
 * includes it, in every build (a read of one thread-local bit, nothing the
 * TSan build's uninlined read side needs to see).
 */
#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>

#include "common/rcu.h"

bool iovt_rcu_thread_is_reader(void)
{
	return URCU_TLS(urcu_memb_reader).registered;
}
