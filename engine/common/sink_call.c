/* SPDX-License-Identifier: MIT */
#include "common/sink_call.h"

/* Initial-exec, as every thread-local of the library (meson.build). */
__thread unsigned sink_depth;
