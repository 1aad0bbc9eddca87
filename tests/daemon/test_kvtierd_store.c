/*
 * test_kvtierd_store.c - the real kvtierd (KVTIERD_PATH) over the real
 * store with a disk tier: what clients appended survives a SIGTERM
 * shutdown (the daemon flushes before exiting) and a restart, and blocks
 * come back identical through the shared-memory and staging paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "daemon_test.h"
#include "kvtierd_proc.h"

static const struct kvt_shape shape = {2, 2, 64, 16, KVT_DTYPE_F16};
#define TOKENS 150u /* 9 full blocks and a partial one per layer */

static char sock[108], dir[160];

static void check_all(struct kvt_client_cache *c)
{
	uint16_t blk[2 * 2 * 16 * 64];
	for (uint32_t l = 0; l < shape.n_layers; l++) {
		for (uint64_t b = 0; b * 16 < TOKENS; b++) {
			uint32_t n;
			cr_assert_eq(kvt_client_cache_read_block(c, l, b, blk, sizeof blk, &n), 0);
			cr_assert_eq(n, TOKENS - b * 16 < 16 ? TOKENS - b * 16 : 16);
			for (int kv = 0; kv < 2; kv++)
				for (uint32_t h = 0; h < 2; h++)
					for (uint32_t t = 0; t < n; t++)
						for (uint32_t e = 0; e < 64; e++) {
							size_t i = (((size_t)kv * 2 + h) * 16 + t) * 64 + e;
							cr_assert_eq(blk[i], test_value(l, h, b * 16 + t, e, kv),
								     "layer %u block %llu", l,
								     (unsigned long long)b);
						}
		}
		static uint16_t k[2 * TOKENS * 64], v[2 * TOKENS * 64];
		static uint16_t wk[2 * TOKENS * 64], wv[2 * TOKENS * 64];
		cr_assert_eq(kvt_client_cache_read(c, l, 0, TOKENS, k, v), 0);
		test_fill(&shape, l, 0, TOKENS, wk, wv);
		cr_assert_eq(memcmp(k, wk, sizeof k), 0);
		cr_assert_eq(memcmp(v, wv, sizeof v), 0);
	}
}

Test(kvtierd_store, sigterm_flushes_and_a_restart_serves_the_same_data,
     .timeout = 60)
{
	test_sock_path(sock, sizeof sock, "persist");
	snprintf(dir, sizeof dir, "%s.d", sock);
	unlink(sock);
	mkdir(dir, 0700);

	pid_t pid = kvtierd_start(sock, dir);
	struct kvt_client *cl = kvtierd_connect(sock);
	struct kvt_cache_config cfg;
	struct kvt_client_cache *c;
	kvt_cache_config_init(&cfg);
	cfg.shape = shape;
	cr_assert_eq(kvt_client_cache_create(cl, "persisted", &cfg, &c), 0);
	static uint16_t k[2 * TOKENS * 64], v[2 * TOKENS * 64];
	for (uint32_t l = 0; l < shape.n_layers; l++) {
		test_fill(&shape, l, 0, 100, k, v);
		cr_assert_eq(kvt_client_cache_append(c, l, 100, k, v), 0);
		test_fill(&shape, l, 100, TOKENS - 100, k, v);
		cr_assert_eq(kvt_client_cache_append(c, l, TOKENS - 100, k, v), 0);
	}
	check_all(c);
	kvt_client_cache_close(c);
	kvt_client_close(cl);
	kvtierd_stop(pid); /* no explicit flush: SIGTERM must do it */

	pid = kvtierd_start(sock, dir);
	cl = kvtierd_connect(sock);
	cr_assert_eq(kvt_client_cache_open(cl, "persisted", &c), 0);
	struct kvt_cache_info info;
	cr_assert_eq(kvt_client_cache_get_info(c, &info), 0);
	cr_assert_eq(info.n_tokens, TOKENS);
	check_all(c);
	kvt_client_cache_close(c);
	cr_assert_eq(kvt_client_cache_drop(cl, "persisted"), 0);
	kvt_client_close(cl);
	kvtierd_stop(pid);
}
