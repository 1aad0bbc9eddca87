/*
 * pool.h - a fixed pool of worker threads running parallel-for loops.
 *
 * llm_pool_run() hands tasks 0..n_tasks-1 to the workers and the calling
 * thread, and returns when all are done. fn gets the worker index
 * (0 .. llm_pool_size()-1) so it can use per-worker scratch memory.
 * One llm_pool_run() at a time per pool.
 */
#ifndef LLM_POOL_H
#define LLM_POOL_H

#include <stdint.h>

struct llm_pool;

typedef void (*llm_task_fn)(void *arg, uint32_t task, uint32_t worker);

/* n_threads counts the caller; 0 means the number of online CPUs.
 * Errors: -ENOMEM, -errno from pthread_create. */
int llm_pool_create(uint32_t n_threads, struct llm_pool **out);

/* Stops and joins the workers. NULL is a no-op. */
void llm_pool_free(struct llm_pool *pool);

uint32_t llm_pool_size(const struct llm_pool *pool);

void llm_pool_run(struct llm_pool *pool, llm_task_fn fn, void *arg,
		  uint32_t n_tasks);

#endif /* LLM_POOL_H */
