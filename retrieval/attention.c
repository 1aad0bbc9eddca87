/*
 * attention.c - CPU reference attention, over all tokens or a selection,
 * and the quality figures of a selection (attention mass it keeps, error
 * of the attention output). Straightforward and exact in float32 with
 * double-precision normalisers; written to be checked, not to be fast.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "kvtier/retrieval.h"
#include "vec.h"

#define TILE 256 /* tokens converted to float32 at once */

/* One kv head's keys and values: n rows of d elements of dtype. */
struct head_kv {
	enum kvt_dtype dt;
	size_t d;
	uint64_t n;
	const void *k, *v;
	const uint8_t *mask; /* per token: selected (NULL: none) */
};

struct head_out {
	float *full;  /* [m][d] attention over all tokens */
	float *sel;   /* [m][d] over the masked tokens, or NULL */
	double *mass; /* [m] probability of the masked tokens, or NULL */
};

static const void *row(const struct head_kv *kv, const void *base, uint64_t t)
{
	return (const char *)base + t * kv->d * kvt_dtype_size(kv->dt);
}

static void logits(const struct head_kv *kv, const float *q, uint32_t m,
		   float *lg, float *tile)
{
	float scale = 1.0f / sqrtf((float)kv->d);
	for (uint64_t t0 = 0; t0 < kv->n; t0 += TILE) {
		uint64_t nt = kv->n - t0 < TILE ? kv->n - t0 : TILE;
		kvt_to_f32(kv->dt, row(kv, kv->k, t0), tile, nt * kv->d);
		for (uint32_t j = 0; j < m; j++)
			for (uint64_t t = 0; t < nt; t++)
				lg[j * kv->n + t0 + t] =
					kvt_dot(q + j * kv->d, tile + t * kv->d, kv->d) * scale;
	}
}

/* Turns logits into unnormalised probabilities; z[j] gets their sum. */
static void softmax_rows(const struct head_kv *kv, uint32_t m, float *lg,
			 double *z)
{
	for (uint32_t j = 0; j < m; j++) {
		float *r = lg + j * kv->n, mx = -INFINITY;
		for (uint64_t t = 0; t < kv->n; t++)
			mx = r[t] > mx ? r[t] : mx;
		double s = 0;
		for (uint64_t t = 0; t < kv->n; t++)
			s += r[t] = expf(r[t] - mx);
		z[j] = s;
	}
}

static void weigh_values(const struct head_kv *kv, uint32_t m, const float *p,
			 const double *z, float *tile, const struct head_out *o,
			 double *zs)
{
	size_t d = kv->d;
	for (uint64_t t0 = 0; t0 < kv->n; t0 += TILE) {
		uint64_t nt = kv->n - t0 < TILE ? kv->n - t0 : TILE;
		kvt_to_f32(kv->dt, row(kv, kv->v, t0), tile, nt * d);
		for (uint32_t j = 0; j < m; j++)
			for (uint64_t t = 0; t < nt; t++) {
				float pj = p[j * kv->n + t0 + t];
				kvt_axpy(o->full + j * d, (float)(pj / z[j]),
					 tile + t * d, d);
				if (!kv->mask || !kv->mask[t0 + t])
					continue;
				kvt_axpy(o->sel + j * d, pj, tile + t * d, d);
				zs[j] += pj;
			}
	}
}

static int head_attn(const struct head_kv *kv, const float *q, uint32_t m,
		     const struct head_out *o)
{
	size_t d = kv->d;
	float *lg = malloc((size_t)m * kv->n * sizeof *lg);
	float *tile = malloc(TILE * d * sizeof *tile);
	double *z = calloc(2 * (size_t)m, sizeof *z), *zs = z + m;
	int rc = lg && tile && z ? 0 : -ENOMEM;
	if (rc == 0) {
		memset(o->full, 0, (size_t)m * d * sizeof(float));
		if (o->sel)
			memset(o->sel, 0, (size_t)m * d * sizeof(float));
		logits(kv, q, m, lg, tile);
		softmax_rows(kv, m, lg, z);
		weigh_values(kv, m, lg, z, tile, o, zs);
	}
	for (uint32_t j = 0; rc == 0 && o->sel && j < m; j++) {
		float s = zs[j] > 0 ? (float)(1.0 / zs[j]) : 0.0f;
		for (size_t e = 0; e < d; e++)
			o->sel[j * d + e] *= s;
		o->mass[j] = zs[j] / z[j];
	}
	free(lg);
	free(tile);
	free(z);
	return rc;
}

static int args_ok(const struct kvt_shape *s, uint32_t nqh, uint32_t nq,
		   const float *q, const float *out)
{
	return s && q && out && !kvt_shape_check(s) && nqh && nq &&
	       nqh % s->n_kv_heads == 0;
}

/* Attention of every kv head over kv[h] (n tokens at k + h * kstride). */
static int all_heads(const struct kvt_shape *s, uint32_t nqh, uint32_t nq,
		     const float *q, struct head_kv kv, size_t stride,
		     float *full, float *sel, double *mass)
{
	uint32_t m = nqh / s->n_kv_heads * nq;
	size_t d = s->head_dim, es = kvt_dtype_size(s->dtype);
	const char *k0 = kv.k, *v0 = kv.v;
	int rc = 0;
	for (size_t h = 0; rc == 0 && h < s->n_kv_heads; h++) {
		kv.k = k0 + h * stride * d * es;
		kv.v = v0 + h * stride * d * es;
		struct head_out o = {full + h * m * d, sel ? sel + h * m * d : NULL,
				     mass ? mass + h * m : NULL};
		rc = head_attn(&kv, q + h * m * d, m, &o);
	}
	return rc;
}

int kvt_attn_full(const struct kvt_shape *shape, uint32_t n_q_heads,
		  uint32_t n_queries, const float *q, const void *k,
		  const void *v, uint64_t n_tokens, float *out)
{
	if (!args_ok(shape, n_q_heads, n_queries, q, out) || !k || !v ||
	    !n_tokens)
		return -EINVAL;
	struct head_kv kv = {shape->dtype, shape->head_dim, n_tokens, k, v, NULL};
	return all_heads(shape, n_q_heads, n_queries, q, kv, n_tokens, out,
			 NULL, NULL);
}

static int head_mass(const struct head_kv *kv, const float *q, uint32_t m,
		     double w, double *mass)
{
	float *lg = malloc((size_t)m * kv->n * sizeof *lg);
	float *tile = malloc(TILE * kv->d * sizeof *tile);
	double *z = malloc(((size_t)m + 1) * sizeof *z);
	int rc = lg && tile && z ? 0 : -ENOMEM;
	if (rc == 0) {
		logits(kv, q, m, lg, tile);
		softmax_rows(kv, m, lg, z);
		for (uint32_t j = 0; j < m; j++)
			for (uint64_t t = 0; t < kv->n; t++)
				mass[t] += w * lg[j * kv->n + t] / z[j];
	}
	free(lg);
	free(tile);
	free(z);
	return rc;
}

int kvt_attn_token_mass(const struct kvt_shape *shape, uint32_t n_q_heads,
			uint32_t n_queries, const float *q, const void *k,
			uint64_t n_tokens, double *mass)
{
	if (!shape || kvt_shape_check(shape) || !n_q_heads || !n_queries ||
	    n_q_heads % shape->n_kv_heads || !q || !k || !mass || !n_tokens)
		return -EINVAL;
	uint32_t m = n_q_heads / shape->n_kv_heads * n_queries;
	size_t d = shape->head_dim, es = kvt_dtype_size(shape->dtype);
	double w = 1.0 / ((double)n_q_heads * n_queries);
	memset(mass, 0, n_tokens * sizeof *mass);
	int rc = 0;
	for (size_t h = 0; rc == 0 && h < shape->n_kv_heads; h++) {
		struct head_kv kv = {shape->dtype, d, n_tokens,
				     (const char *)k + h * n_tokens * d * es, NULL, NULL};
		rc = head_mass(&kv, q + h * m * d, m, w, mass);
	}
	return rc;
}

/* ---------------------------------------------------------------- blocks */

/* Copies the valid tokens of every block of head h into k and v
 * ([total][d] of the dtype, all heads: [H][total][d]). */
static void gather(const struct kvt_shape *s, const void *pool,
		   const struct kvt_block_table *t, uint64_t total, char *k,
		   char *v)
{
	size_t rowb = (size_t)s->head_dim * kvt_dtype_size(s->dtype);
	size_t half = t->slot_bytes / 2, bt = s->block_tokens;
	for (size_t h = 0; h < s->n_kv_heads; h++) {
		uint64_t at = h * total;
		for (uint32_t i = 0; i < t->n_blocks; i++) {
			const char *b = (const char *)pool + t->slot[i] * t->slot_bytes;
			size_t off = h * bt * rowb, len = t->n_valid[i] * rowb;
			memcpy(k + at * rowb, b + off, len);
			memcpy(v + at * rowb, b + half + off, len);
			at += t->n_valid[i];
		}
	}
}

int kvt_attn_blocks(const struct kvt_shape *shape, uint32_t n_q_heads,
		    uint32_t n_queries, const float *q, const void *pool,
		    const struct kvt_block_table *table, float *out)
{
	if (!args_ok(shape, n_q_heads, n_queries, q, out) || !pool || !table ||
	    !table->n_blocks || table->slot_bytes != kvt_block_bytes(shape))
		return -EINVAL;
	uint64_t total = 0;
	for (uint32_t i = 0; i < table->n_blocks; i++) {
		if (table->n_valid[i] > shape->block_tokens)
			return -EINVAL;
		total += table->n_valid[i];
	}
	if (!total)
		return -EINVAL;
	size_t bytes = shape->n_kv_heads * total * shape->head_dim *
		       kvt_dtype_size(shape->dtype);
	char *k = malloc(bytes), *v = malloc(bytes);
	int rc = k && v ? 0 : -ENOMEM;
	if (rc == 0) {
		gather(shape, pool, table, total, k, v);
		rc = kvt_attn_full(shape, n_q_heads, n_queries, q, k, v, total, out);
	}
	free(k);
	free(v);
	return rc;
}

/* ---------------------------------------------------------------- quality */

static int mask_of(const struct kvt_selection *sel, uint64_t n, uint32_t bt,
		   uint8_t *mask)
{
	for (uint32_t i = 0; i < sel->n_blocks; i++) {
		uint64_t first = (uint64_t)sel->blocks[i] * bt;
		if (first >= n)
			return -EINVAL;
		uint64_t end = first + bt < n ? first + bt : n;
		memset(mask + first, 1, end - first);
	}
	return 0;
}

static void summarise(size_t nvec, size_t d, const float *full,
		      const float *sel, const double *mass,
		      struct kvt_attn_quality *out)
{
	double err = 0, ref = 0, sum = 0, mn = 1.0;
	for (size_t i = 0; i < nvec * d; i++) {
		double e = (double)sel[i] - full[i];
		err += e * e;
		ref += (double)full[i] * full[i];
	}
	for (size_t j = 0; j < nvec; j++) {
		sum += mass[j];
		mn = mass[j] < mn ? mass[j] : mn;
	}
	*out = (struct kvt_attn_quality){sum / (double)nvec, mn,
					 ref > 0 ? sqrt(err / ref) : sqrt(err)};
}

int kvt_attn_quality(const struct kvt_shape *shape, uint32_t n_q_heads,
		     uint32_t n_queries, const float *q, const void *k,
		     const void *v, uint64_t n_tokens,
		     const struct kvt_selection *sel,
		     struct kvt_attn_quality *out)
{
	if (!shape || !q || !k || !v || !n_tokens || !sel || !out ||
	    kvt_shape_check(shape) || !n_q_heads || !n_queries ||
	    n_q_heads % shape->n_kv_heads || (sel->n_blocks && !sel->blocks))
		return -EINVAL;
	size_t nvec = (size_t)n_q_heads * n_queries, d = shape->head_dim;
	uint8_t *mask = calloc(n_tokens, 1);
	float *full = malloc(2 * nvec * d * sizeof *full);
	double *mass = malloc(nvec * sizeof *mass);
	int rc = mask && full && mass ? 0 : -ENOMEM;
	if (rc == 0)
		rc = mask_of(sel, n_tokens, shape->block_tokens, mask);
	struct head_kv kv = {shape->dtype, d, n_tokens, k, v, mask};
	if (rc == 0)
		rc = all_heads(shape, n_q_heads, n_queries, q, kv, n_tokens, full,
			       full + nvec * d, mass);
	if (rc == 0)
		summarise(nvec, d, full, full + nvec * d, mass, out);
	free(mask);
	free(full);
	free(mass);
	return rc;
}
