/* SPDX-License-Identifier: MIT */
#include "rcu.h"

#ifdef IOVT_TSAN
char iovt_tsan_grace_token;
#endif
