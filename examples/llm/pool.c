/* pool.c - worker threads for parallel-for loops (see pool.h). */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct llm_pool {
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	pthread_t *threads;
	uint32_t n; /* threads including the caller */
	uint64_t generation;
	uint32_t running; /* workers still inside the current job */
	int stop;
	llm_task_fn fn;
	void *arg;
	uint32_t n_tasks;
	atomic_uint next;
};

struct worker_arg {
	struct llm_pool *pool;
	uint32_t id;
};

static void drain(struct llm_pool *p, uint32_t id)
{
	for (;;) {
		uint32_t t = atomic_fetch_add(&p->next, 1);
		if (t >= p->n_tasks)
			return;
		p->fn(p->arg, t, id);
	}
}

static void *worker(void *a)
{
	struct worker_arg wa = *(struct worker_arg *)a;
	struct llm_pool *p = wa.pool;
	free(a);
	uint64_t seen = 0;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->generation == seen)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->stop)
			break;
		seen = p->generation;
		pthread_mutex_unlock(&p->mu);
		drain(p, wa.id);
		pthread_mutex_lock(&p->mu);
		if (--p->running == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int start_workers(struct llm_pool *p)
{
	for (uint32_t i = 1; i < p->n; i++) {
		struct worker_arg *a = malloc(sizeof(*a));
		if (!a)
			return -ENOMEM;
		*a = (struct worker_arg){p, i};
		int rc = pthread_create(&p->threads[i], NULL, worker, a);
		if (rc) {
			free(a);
			p->n = i;
			return -rc;
		}
	}
	return 0;
}

int llm_pool_create(uint32_t n_threads, struct llm_pool **out)
{
	if (n_threads == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = c > 0 ? (uint32_t)c : 1;
	}
	struct llm_pool *p = calloc(1, sizeof(*p));
	if (!p || !(p->threads = calloc(n_threads, sizeof(pthread_t)))) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	p->n = n_threads;
	int rc = start_workers(p);
	if (rc) {
		llm_pool_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void llm_pool_free(struct llm_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	for (uint32_t i = 1; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	free(p->threads);
	free(p);
}

uint32_t llm_pool_size(const struct llm_pool *p) { return p->n; }

void llm_pool_run(struct llm_pool *p, llm_task_fn fn, void *arg, uint32_t n_tasks)
{
	if (p->n == 1 || n_tasks <= 1) {
		for (uint32_t t = 0; t < n_tasks; t++)
			fn(arg, t, 0);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->n_tasks = n_tasks;
	atomic_store(&p->next, 0);
	p->running = p->n - 1;
	p->generation++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	drain(p, 0);
	pthread_mutex_lock(&p->mu);
	while (p->running)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}
