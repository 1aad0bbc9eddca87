/* log.c - timestamped logging to stderr (see log.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int kvt_log_level_parse(const char *s, enum kvt_log_level *out)
{
	for (int i = 0; i <= KVT_LOG_DEBUG; i++) {
		if (!strcmp(s, level_names[i])) {
			*out = (enum kvt_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void kvt_log(const struct kvt_log *log, enum kvt_log_level level,
	     const char *fmt, ...)
{
	enum kvt_log_level max = log ? log->level : KVT_LOG_WARN;
	if (level > max)
		return;
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char line[1024];
	int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ %-5s ",
		      ts.tv_nsec / 1000000, level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fprintf per line so lines of concurrent threads do not mix. */
	fprintf(stderr, "%s\n", line);
}
