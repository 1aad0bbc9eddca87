/* clock.h - the monotonic clock the LLM tools time their steps with. */
#ifndef LLM_CLOCK_H
#define LLM_CLOCK_H

#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
static inline double llm_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
