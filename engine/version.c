/* SPDX-License-Identifier: MIT */
#include "iovt_version.h"

const char *iovt_version(void)
{
	return IOVT_VERSION_STRING;
}

unsigned iovt_version_number(void)
{
	return IOVT_VERSION;
}
