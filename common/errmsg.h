/* errmsg.h - error messages for callers that pass a message buffer. */
#ifndef KVTIER_COMMON_ERRMSG_H
#define KVTIER_COMMON_ERRMSG_H

#include <stddef.h>

/* Formats fmt into msg (cap bytes; nothing when msg is NULL or cap 0) and
 * returns rc, so a failure reads `return kvt_errmsg(rc, msg, cap, ...)`. */
int kvt_errmsg(int rc, char *msg, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
