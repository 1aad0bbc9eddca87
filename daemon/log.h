/* log.h - timestamped logging to stderr for kvtierd (internal). */
#ifndef KVTIER_DAEMON_LOG_H
#define KVTIER_DAEMON_LOG_H

enum kvt_log_level {
	KVT_LOG_ERROR = 0,
	KVT_LOG_WARN = 1,
	KVT_LOG_INFO = 2,
	KVT_LOG_DEBUG = 3,
};

/* Logging settings live on a context, not in a global. */
struct kvt_log {
	enum kvt_log_level level;
};

/* Parses "error", "warn", "info", "debug". Returns 0 or -EINVAL. */
int kvt_log_level_parse(const char *s, enum kvt_log_level *out);

/* Writes "2026-01-31T12:00:00.123Z LEVEL message\n" to stderr when level is
 * enabled; log may be NULL (warnings and errors only). */
void kvt_log(const struct kvt_log *log, enum kvt_log_level level,
	     const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
