/* daemon_test.h - helpers of the daemon tests: a server in a thread on a
 * temporary socket, deterministic K/V data, descriptor counting. */
#ifndef KVTIER_TESTS_DAEMON_TEST_H
#define KVTIER_TESTS_DAEMON_TEST_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvtier/client.h"
#include "server.h"

struct test_daemon {
	struct kvt_store *store;
	struct kvt_server *srv;
	pthread_t thread;
	char path[108];
};

static inline void test_sock_path(char *buf, size_t cap, const char *tag)
{
	const char *dir = getenv("KVT_TEST_TMP");
	if (!dir)
		dir = "/tmp";
	mkdir(dir, 0700);
	snprintf(buf, cap, "%s/%s-%d.sock", dir, tag, (int)getpid());
}

static void *test_daemon_main(void *arg)
{
	struct test_daemon *d = arg;
	kvt_server_run(d->srv);
	return NULL;
}

static inline void test_daemon_start(struct test_daemon *d,
				     struct kvt_server_config *cfg,
				     const char *tag)
{
	struct kvt_store_config sc;
	kvt_store_config_init(&sc);
	cr_assert_eq(kvt_store_open(&sc, &d->store), 0);
	test_sock_path(d->path, sizeof d->path, tag);
	unlink(d->path);
	cfg->socket_path = d->path;
	cr_assert_eq(kvt_server_create(d->store, cfg, &d->srv), 0);
	cr_assert_eq(pthread_create(&d->thread, NULL, test_daemon_main, d), 0);
}

static inline void test_daemon_stop(struct test_daemon *d)
{
	kvt_server_stop(d->srv);
	pthread_join(d->thread, NULL);
	kvt_server_destroy(d->srv);
	kvt_store_close(d->store);
}

static inline int test_fd_count(void)
{
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;
	while (dir && readdir(dir))
		n++;
	if (dir)
		closedir(dir);
	return n;
}

/* Waits (bounded) until the server has n clients. */
static inline void test_wait_clients(struct kvt_server *srv, uint32_t n)
{
	for (int i = 0; i < 2000 && kvt_server_clients(srv) != n; i++)
		usleep(1000);
	cr_assert_eq(kvt_server_clients(srv), n);
}

/* Value of element e of token t, head h, layer l, K (kv 0) or V (kv 1). */
static inline uint16_t test_value(uint32_t l, uint32_t h, uint64_t t,
				  uint32_t e, int kv)
{
	return (uint16_t)(l * 7919u + h * 104729u + t * 31u + e * 3u + (unsigned)kv * 17u);
}

/* Fills [heads][n][dim] k and v (fp16 bits) for tokens [first, first + n). */
static inline void test_fill(const struct kvt_shape *s, uint32_t l,
			     uint64_t first, uint32_t n, uint16_t *k, uint16_t *v)
{
	for (uint32_t h = 0; h < s->n_kv_heads; h++)
		for (uint32_t t = 0; t < n; t++)
			for (uint32_t e = 0; e < s->head_dim; e++) {
				size_t i = ((size_t)h * n + t) * s->head_dim + e;
				k[i] = test_value(l, h, first + t, e, 0);
				v[i] = test_value(l, h, first + t, e, 1);
			}
}

#endif
