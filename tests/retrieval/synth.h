/*
 * synth.h - synthetic clustered keys and structured queries for the
 * retrieval tests and bench (until real model tensors are available).
 *
 * The sequence is a run of segments of seg_min..seg_max tokens, each about
 * one of n_topics topics (shared by all heads, as a passage of text is);
 * every kv head has its own random unit direction per topic, and a
 * segment's keys are key_scale * that direction plus Gaussian noise of
 * `noise` per dimension. Values are Gaussian. A query set asks about
 * q_topics topics drawn from those present in the sequence; each q head
 * mixes their directions (of its kv head) with weights 1, 1/2, 1/3, ...
 * times its own random factor in [0.5, 1.5), scaled to q_scale, plus
 * noise. With
 * rope set, keys and queries are rotated RoPE-style (pairs of dimensions
 * by position * theta_i) so clusters drift with position as post-RoPE
 * keys do.
 */
#ifndef KVTIER_TESTS_SYNTH_H
#define KVTIER_TESTS_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "kvtier/kvtier.h"

struct synth {
	uint32_t n_kv_heads, n_q_heads, head_dim;
	uint64_t n_tokens;
	uint32_t n_topics, seg_min, seg_max;
	uint32_t q_topics;  /* topics mixed into each query */
	float key_scale, noise, q_scale;
	int rope;
	uint64_t seed;
};

static inline void synth_defaults(struct synth *s)
{
	*s = (struct synth){.n_kv_heads = 8, .n_q_heads = 32, .head_dim = 128,
			    .n_tokens = 32768, .n_topics = 256, .seg_min = 16,
			    .seg_max = 256, .q_topics = 4, .key_scale = 8.0f,
			    .noise = 0.5f, .q_scale = 12.0f, .rope = 0,
			    .seed = 42};
}

static inline uint64_t synth_next(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline float synth_unif(uint64_t *st)
{
	return (float)((synth_next(st) >> 40) + 0.5) / 16777216.0f;
}

static inline float synth_normal(uint64_t *st)
{
	float u = synth_unif(st), v = synth_unif(st);
	return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* dirs: [H][n_topics][d] unit vectors. */
static inline float *synth_topics(const struct synth *s, uint64_t *st)
{
	size_t d = s->head_dim, n = (size_t)s->n_kv_heads * s->n_topics;
	float *t = malloc(n * d * sizeof *t);
	for (size_t i = 0; t && i < n; i++) {
		float nrm = 0;
		for (size_t e = 0; e < d; e++) {
			t[i * d + e] = synth_normal(st);
			nrm += t[i * d + e] * t[i * d + e];
		}
		for (size_t e = 0; e < d; e++)
			t[i * d + e] /= sqrtf(nrm);
	}
	return t;
}

static inline void synth_rope(float *x, size_t d, uint64_t pos)
{
	for (size_t i = 0; i + 1 < d; i += 2) {
		double th = (double)pos * pow(10000.0, -(double)i / (double)d);
		float c = (float)cos(th), sn = (float)sin(th);
		float a = x[i], b = x[i + 1];
		x[i] = a * c - b * sn;
		x[i + 1] = a * sn + b * c;
	}
}

/* Fills k and v ([H][n][d] of dtype) and topic_of ([n] topic per token). */
static inline void synth_kv(const struct synth *s, const float *dirs,
			    enum kvt_dtype dt, void *k, void *v,
			    uint32_t *topic_of, uint64_t *st)
{
	size_t d = s->head_dim, es = kvt_dtype_size(dt);
	float *row = malloc(d * sizeof *row);
	uint64_t seg_seed = synth_next(st);
	for (size_t h = 0; h < s->n_kv_heads; h++) {
		uint64_t t = 0, seg = seg_seed; /* the same segments every head */
		while (t < s->n_tokens) {
			uint32_t len = s->seg_min + (uint32_t)(synth_next(&seg) %
				       (s->seg_max - s->seg_min + 1));
			uint32_t topic = (uint32_t)(synth_next(&seg) % s->n_topics);
			const float *dir = dirs + (h * s->n_topics + topic) * d;
			for (uint32_t i = 0; i < len && t < s->n_tokens; i++, t++) {
				size_t at = (h * s->n_tokens + t) * d;
				for (size_t e = 0; e < d; e++)
					row[e] = s->key_scale * dir[e] +
						 s->noise * synth_normal(st);
				if (s->rope)
					synth_rope(row, d, t);
				kvt_from_f32(dt, row, (char *)k + at * es, d);
				for (size_t e = 0; e < d; e++)
					row[e] = synth_normal(st);
				kvt_from_f32(dt, row, (char *)v + at * es, d);
				topic_of[t] = topic;
			}
		}
	}
	free(row);
}

/* q: float [n_q_heads][n_queries][d]; queries at position pos (RoPE);
 * topic_of as filled by synth_kv. */
static inline void synth_queries(const struct synth *s, const float *dirs,
				 const uint32_t *topic_of, uint32_t n_queries,
				 uint64_t pos, float *q, uint64_t *st)
{
	size_t d = s->head_dim, g = s->n_q_heads / s->n_kv_heads;
	uint32_t topics[16], nt = s->q_topics < 16 ? s->q_topics : 16;
	for (uint32_t i = 0; i < nt; i++)
		topics[i] = topic_of[synth_next(st) % s->n_tokens];
	for (size_t j = 0; j < s->n_q_heads; j++) {
		size_t h = j / g;
		for (uint32_t r = 0; r < n_queries; r++) {
			float *x = q + (j * n_queries + r) * d;
			for (size_t e = 0; e < d; e++)
				x[e] = s->noise * synth_normal(st);
			for (uint32_t i = 0; i < nt; i++) {
				const float *dir = dirs + (h * s->n_topics + topics[i]) * d;
				float w = s->q_scale / (float)(i + 1) *
					  (0.5f + synth_unif(st));
				for (size_t e = 0; e < d; e++)
					x[e] += w * dir[e];
			}
			if (s->rope)
				synth_rope(x, d, pos);
		}
	}
}

#endif
