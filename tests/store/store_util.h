/* store_util.h - helpers for the store tests: deterministic K/V tokens. */
#ifndef KVTIER_TESTS_STORE_UTIL_H
#define KVTIER_TESTS_STORE_UTIL_H

#include <stdint.h>
#include <stdlib.h>

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

#endif
