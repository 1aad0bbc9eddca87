/* test_store_scored.c - kvt_cache_append_scored: a ZipCache cold codec gets
 * its salient tokens from the scores given at append time. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"
#include "kvtier/codec.h"
#include "kvtier/kvtier.h"

#define HEADS 2
#define DIM 64
#define BT 16
#define N 160
#define RECENT 32

static struct kvt_store *open_store_at(const char *dir)
{
	struct kvt_store_config cfg;
	struct kvt_store *st;
	kvt_store_config_init(&cfg);
	cfg.host_bytes = 64 << 20;
	cfg.data_dir = dir;
	int rc = kvt_store_open(&cfg, &st);
	cr_assert_eq(rc, 0, "open: %s", kvt_strerror(rc));
	return st;
}

static struct kvt_store *open_store(void)
{
	return open_store_at(NULL);
}

static struct kvt_cache *make_cache(struct kvt_store *st, const char *name,
				    enum kvt_codec_id id)
{
	struct kvt_cache_config cfg;
	struct kvt_cache *c;
	kvt_cache_config_init(&cfg);
	cfg.shape = (struct kvt_shape){1, HEADS, DIM, BT, KVT_DTYPE_F16};
	cfg.recent_tokens = RECENT;
	kvt_codec_params_init(&cfg.cold, id);
	if (id == KVT_CODEC_ZIPCACHE) {
		cfg.cold.high_bits = 8;
		cfg.cold.salient_ratio = 0.25f; /* 4 of 16 */
	}
	cr_assert_eq(kvt_cache_create(st, name, &cfg, &c), 0);
	return c;
}

/* K and V [HEADS][N][DIM] fp16, pseudo-random with an outlier channel. */
static void make_kv(uint16_t *k, uint16_t *v)
{
	unsigned s = 12345;
	for (size_t i = 0; i < (size_t)HEADS * N * DIM; i++) {
		s = s * 1103515245u + 12345u;
		float u = (float)(s >> 8) / (1u << 24) - 0.5f;
		k[i] = kvt_f32_to_f16(u * (i % DIM == 3 ? 16.0f : 4.0f));
		v[i] = kvt_f32_to_f16(u * 3.0f + 0.5f);
	}
}

static int marked(uint64_t t)
{
	uint64_t r = t % BT;
	return r == 2 || r == 5 || r == 9 || r == 14;
}

/* Appends tokens [first, first + n) in chunks of 10, with or without scores. */
static void append(struct kvt_cache *c, const uint16_t *k, const uint16_t *v,
		   uint32_t first, uint32_t n, int scored)
{
	uint16_t ck[HEADS * 10 * DIM], cv[HEADS * 10 * DIM];
	float sc[10];
	for (uint32_t t0 = first; t0 < first + n; t0 += 10) {
		uint32_t m = first + n - t0 < 10 ? first + n - t0 : 10;
		for (uint32_t h = 0; h < HEADS; h++) {
			memcpy(ck + h * m * DIM, k + ((size_t)h * N + t0) * DIM, m * DIM * 2);
			memcpy(cv + h * m * DIM, v + ((size_t)h * N + t0) * DIM, m * DIM * 2);
		}
		for (uint32_t i = 0; i < m; i++)
			sc[i] = marked(t0 + i) ? 10.0f + (float)i : 0.001f * (float)i;
		cr_assert_eq(kvt_cache_append_scored(c, 0, m, ck, cv,
						     scored ? sc : NULL), 0);
	}
}

/* Mean absolute error of token t, keys and values, over heads. */
static void token_errors(struct kvt_cache *c, const uint16_t *k,
			 const uint16_t *v, double *err)
{
	static uint16_t rk[HEADS * N * DIM], rv[HEADS * N * DIM];
	cr_assert_eq(kvt_cache_read(c, 0, 0, N, rk, rv), 0);
	for (uint32_t t = 0; t < N; t++) {
		double e = 0;
		for (uint32_t h = 0; h < HEADS; h++)
			for (uint32_t d = 0; d < DIM; d++) {
				size_t i = ((size_t)h * N + t) * DIM + d;
				e += fabsf(kvt_f16_to_f32(rk[i]) - kvt_f16_to_f32(k[i]));
				e += fabsf(kvt_f16_to_f32(rv[i]) - kvt_f16_to_f32(v[i]));
			}
		err[t] = e / (2.0 * HEADS * DIM);
	}
}

/* Mean error of the marked and of the other tokens of block b. */
static void block_split(const double *err, uint32_t b, double *hi, double *lo)
{
	*hi = *lo = 0;
	for (uint32_t t = b * BT; t < (b + 1) * BT; t++) {
		if (marked(t))
			*hi += err[t] / 4;
		else
			*lo += err[t] / (BT - 4);
	}
}

static uint64_t stored_bytes(struct kvt_cache *c)
{
	struct kvt_cache_info info;
	cr_assert_eq(kvt_cache_get_info(c, &info), 0);
	return info.stored_bytes;
}

static uint16_t K[HEADS * N * DIM], V[HEADS * N * DIM];

Test(store_scored, salient_tokens_keep_their_precision_in_cold_blocks)
{
	struct kvt_store *st = open_store();
	struct kvt_cache *sc = make_cache(st, "scored", KVT_CODEC_ZIPCACHE);
	struct kvt_cache *pl = make_cache(st, "plain", KVT_CODEC_ZIPCACHE);
	make_kv(K, V);
	append(sc, K, V, 0, N, 1);
	append(pl, K, V, 0, N, 0);
	double es[N], ep[N];
	token_errors(sc, K, V, es);
	token_errors(pl, K, V, ep);
	const uint32_t cold = (N - RECENT) / BT;
	for (uint32_t b = 0; b < cold; b++) {
		double hi, lo, phi, plo;
		block_split(es, b, &hi, &lo);
		block_split(ep, b, &phi, &plo);
		cr_assert(hi > 0 && hi * 8 < lo, "block %u: marked %g others %g", b, hi, lo);
		/* without scores every token is low-bit: no such gap */
		cr_assert(phi * 2 > plo, "plain block %u: %g vs %g", b, phi, plo);
	}
	for (uint32_t t = cold * BT; t < N; t++)
		cr_assert_eq(es[t], 0.0, "recent token %u is raw", t);
	cr_assert_gt(stored_bytes(sc), stored_bytes(pl));
	kvt_cache_close(sc);
	kvt_cache_close(pl);
	kvt_store_close(st);
}

Test(store_scored, scores_start_where_they_are_first_given)
{
	struct kvt_store *st = open_store();
	struct kvt_cache *c = make_cache(st, "mixed", KVT_CODEC_ZIPCACHE);
	make_kv(K, V);
	append(c, K, V, 0, 80, 0);
	append(c, K, V, 80, 80, 1);
	double e[N];
	token_errors(c, K, V, e);
	for (uint32_t b = 0; b < (N - RECENT) / BT; b++) {
		double hi, lo;
		block_split(e, b, &hi, &lo);
		if (b < 5)
			cr_assert(hi * 2 > lo, "block %u had no scores", b);
		else
			cr_assert(hi * 8 < lo, "block %u: %g vs %g", b, hi, lo);
	}
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(store_scored, other_codecs_ignore_scores)
{
	struct kvt_store *st = open_store();
	struct kvt_cache *a = make_cache(st, "kivi-a", KVT_CODEC_KIVI);
	struct kvt_cache *b = make_cache(st, "kivi-b", KVT_CODEC_KIVI);
	make_kv(K, V);
	append(a, K, V, 0, N, 1);
	append(b, K, V, 0, N, 0);
	double ea[N], eb[N];
	token_errors(a, K, V, ea);
	token_errors(b, K, V, eb);
	cr_assert_eq(memcmp(ea, eb, sizeof ea), 0);
	cr_assert_eq(stored_bytes(a), stored_bytes(b));
	float s = 1.0f;
	cr_assert_eq(kvt_cache_append_scored(a, 1, 1, K, V, &s), -EINVAL);
	cr_assert_eq(kvt_cache_append_scored(a, 0, 1, NULL, V, &s), -EINVAL);
	kvt_cache_close(a);
	kvt_cache_close(b);
	kvt_store_close(st);
}

/* Scores are not stored: blocks still raw at a restart go cold all low-bit;
 * blocks encoded before it keep their salient tokens. */
Test(store_scored, scores_of_the_raw_window_do_not_survive_a_restart)
{
	char dir[512];
	const char *t = getenv("KVT_TEST_TMP");
	mkdir(t ? t : "/tmp", 0755);
	snprintf(dir, sizeof dir, "%s/store-scored-%d", t ? t : "/tmp", getpid());
	struct kvt_store *st = open_store_at(dir);
	struct kvt_cache *c = make_cache(st, "restart", KVT_CODEC_ZIPCACHE);
	make_kv(K, V);
	append(c, K, V, 0, 64, 1); /* blocks 0, 1 cold; 2, 3 raw */
	kvt_cache_close(c);
	kvt_store_close(st);
	st = open_store_at(dir);
	cr_assert_eq(kvt_cache_open(st, "restart", &c), 0);
	append(c, K, V, 64, N - 64, 1); /* blocks 2 .. 7 go cold */
	double e[N];
	token_errors(c, K, V, e);
	for (uint32_t b = 0; b < (N - RECENT) / BT; b++) {
		double hi, lo;
		block_split(e, b, &hi, &lo);
		if (b == 2 || b == 3)
			cr_assert(hi * 2 > lo, "block %u lost its scores", b);
		else
			cr_assert(hi * 8 < lo, "block %u: %g vs %g", b, hi, lo);
	}
	kvt_cache_close(c);
	kvt_store_close(st);
}
