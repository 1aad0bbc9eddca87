/* store_util.h - helpers for the store tests: deterministic K/V tokens,
 * stores on a data directory of their own. */
#ifndef KVTIER_TESTS_STORE_UTIL_H
#define KVTIER_TESTS_STORE_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"
#include "kvtier/kvtier.h"

/* The fp16 value of element (layer, head, token, dim, kv) - unique enough
 * that a misplaced token or head shows up. */
static inline uint16_t tv_value(uint32_t layer, uint32_t head, uint64_t tok,
				uint32_t d, int kv)
{
	float x = (float)((tok * 7 + d * 3 + head * 11 + layer * 5 + (uint64_t)kv * 13) % 97) / 16.0f -
		  3.0f;
	return kvt_f32_to_f16(x);
}

/* Fills k, v ([heads][n][dim] fp16) with tokens [first, first + n). */
static inline void tv_fill(const struct kvt_shape *s, uint32_t layer,
			   uint64_t first, uint32_t n, uint16_t *k, uint16_t *v)
{
	for (uint32_t h = 0; h < s->n_kv_heads; h++)
		for (uint32_t t = 0; t < n; t++)
			for (uint32_t d = 0; d < s->head_dim; d++) {
				size_t i = ((size_t)h * n + t) * s->head_dim + d;
				k[i] = tv_value(layer, h, first + t, d, 0);
				v[i] = tv_value(layer, h, first + t, d, 1);
			}
}

static inline uint16_t *tv_alloc(const struct kvt_shape *s, uint32_t n)
{
	return malloc((size_t)s->n_kv_heads * n * s->head_dim * 2 + 2);
}

/* Opens a store with a disk tier on dir (cap bytes): with fresh, first a
 * new directory KVT_TEST_TMP/tag-pid-seq (*seq counts them); else dir as
 * it is (reopening it). */
static inline struct kvt_store *su_open_disk(char *dir, size_t cap, const char *tag,
					     int *seq, uint64_t host_bytes, int fresh)
{
	if (fresh) {
		const char *t = getenv("KVT_TEST_TMP");
		mkdir(t ? t : "/tmp", 0755);
		snprintf(dir, cap, "%s/%s-%d-%d", t ? t : "/tmp", tag, getpid(), (*seq)++);
	}
	struct kvt_store_config cfg;
	struct kvt_store *st;
	kvt_store_config_init(&cfg);
	cfg.host_bytes = host_bytes;
	cfg.data_dir = dir;
	int rc = kvt_store_open(&cfg, &st);
	cr_assert_eq(rc, 0, "open: %s", kvt_strerror(rc));
	return st;
}

#endif
