/*
 * kmeans.c - spherical k-means over the chunk being filled, per kv head.
 *
 * Clustering works on unit keys (cosine); each cluster also keeps the sum
 * of its raw keys (its mean key, once the chunk closes, is what queries
 * score against). A new token joins
 * the nearest centroid of its chunk; when the chunk needs one more cluster
 * the worst-fitting token of the chunk seeds it (farthest-point seeding),
 * so clusters follow the keys rather than token positions. Refinement is
 * plain Lloyd: reassign every pending token, rebuild the sums, reseed
 * empty clusters with the worst-fitting token of a larger cluster.
 */
#include <float.h>
#include <string.h>

#include "rindex_internal.h"
#include "vec.h"

struct chunk_view {
	size_t H, d, ch, h;
	uint32_t c0, k;     /* first cluster of the chunk, clusters it has */
	uint64_t first;     /* token position of pending token 0 */
};

static struct chunk_view view(const struct kvt_rindex *x,
			      const struct rlayer *l, size_t h)
{
	uint32_t c0 = rl_chunk_c0(x, l);
	return (struct chunk_view){x->shape.n_kv_heads, x->shape.head_dim,
				   x->cfg.chunk_tokens, h, c0,
				   l->n_clusters - c0, l->n_tokens - l->pend_n};
}

static const float *raw_row(const struct rlayer *l, const struct chunk_view *v,
			    uint32_t i)
{
	return l->pend + (v->h * v->ch + i) * v->d;
}

static float inv_norm(const struct rlayer *l, const struct chunk_view *v,
		      uint32_t i)
{
	return l->pend_inv[v->h * v->ch + i];
}

static uint16_t *assign_of(struct rlayer *l, const struct chunk_view *v,
			   uint32_t i)
{
	return &l->assign[(v->first + i) * v->H + v->h];
}

static void normalise_cent(struct rlayer *l, const struct chunk_view *v,
			   uint32_t j)
{
	const float *u = l->usum + ((size_t)j * v->H + v->h) * v->d;
	float *c = l->cent + ((size_t)j * v->H + v->h) * v->d;
	float n = kvt_norm(u, v->d), s = n > 0 ? 1.0f / n : 0.0f;
	for (size_t e = 0; e < v->d; e++)
		c[e] = u[e] * s;
}

/* Adds (sign 1) or removes (sign -1) pending token i to local cluster j. */
static void member(struct rlayer *l, const struct chunk_view *v, uint32_t i,
		   uint32_t j, int sign)
{
	const float *r = raw_row(l, v, i);
	size_t at = ((size_t)j * v->H + v->h) * v->d;
	size_t g = (size_t)(v->c0 + j) * v->H + v->h;
	kvt_axpy(l->usum + at, (float)sign * inv_norm(l, v, i), r, v->d);
	kvt_axpy(l->csum + at, (float)sign, r, v->d);
	l->ccount[g] = (uint32_t)((int64_t)l->ccount[g] + sign);
}

/* Nearest of the first k local clusters to pending token i; *cos gets the
 * cosine (-FLT_MAX when k is 0). */
static uint32_t nearest(const struct rlayer *l, const struct chunk_view *v,
			uint32_t i, uint32_t k, float *cos)
{
	const float *r = raw_row(l, v, i);
	float best = -FLT_MAX;
	uint32_t arg = 0;
	for (uint32_t j = 0; j < k; j++) {
		const float *c = l->cent + ((size_t)j * v->H + v->h) * v->d;
		float s = kvt_dot(c, r, v->d);
		if (s > best)
			best = s, arg = j;
	}
	*cos = k ? best * inv_norm(l, v, i) : -FLT_MAX;
	return arg;
}

/* Cosine of pending token i to the centroid of its cluster. */
static float fit_of(struct rlayer *l, const struct chunk_view *v, uint32_t i)
{
	uint32_t j = *assign_of(l, v, i);
	const float *c = l->cent + ((size_t)j * v->H + v->h) * v->d;
	return kvt_dot(c, raw_row(l, v, i), v->d) * inv_norm(l, v, i);
}

/* The pending token (of the first n, outside singleton clusters) that
 * fits its cluster worst; n when none. */
static uint32_t worst_fit(struct rlayer *l, const struct chunk_view *v,
			  uint32_t n)
{
	float worst = FLT_MAX;
	uint32_t arg = n;
	for (uint32_t i = 0; i < n; i++) {
		size_t g = (size_t)(v->c0 + *assign_of(l, v, i)) * v->H + v->h;
		float f = fit_of(l, v, i);
		if (l->ccount[g] > 1 && f < worst)
			worst = f, arg = i;
	}
	return arg;
}

/* Moves pending token s into local cluster j. */
static void move(struct rlayer *l, const struct chunk_view *v, uint32_t s,
		 uint32_t j)
{
	uint32_t old = *assign_of(l, v, s);
	member(l, v, s, old, -1);
	normalise_cent(l, v, old);
	*assign_of(l, v, s) = (uint16_t)j;
	member(l, v, s, j, +1);
	normalise_cent(l, v, j);
}

/* Opens local cluster j for head v->h, pending token i not yet placed. */
static void open_cluster(struct rlayer *l, const struct chunk_view *v,
			 uint32_t i, uint32_t j)
{
	float cos_i;
	nearest(l, v, i, j, &cos_i);
	uint32_t s = worst_fit(l, v, i);
	if (s == i || j == 0 || fit_of(l, v, s) >= cos_i) {
		*assign_of(l, v, i) = (uint16_t)j; /* i seeds it */
		member(l, v, i, j, +1);
		normalise_cent(l, v, j);
		return;
	}
	move(l, v, s, j);
	float cos;
	uint32_t b = nearest(l, v, i, j + 1, &cos);
	*assign_of(l, v, i) = (uint16_t)b;
	member(l, v, i, b, +1);
	normalise_cent(l, v, b);
}

void kvt_km_add_token(const struct kvt_rindex *x, struct rlayer *l, uint32_t i)
{
	struct chunk_view v = view(x, l, 0);
	uint32_t need = i / x->cfg.cluster_tokens + 1;
	int grow = v.k < need;
	for (size_t h = 0; h < v.H; h++) {
		v.h = h;
		if (grow) {
			open_cluster(l, &v, i, v.k);
			continue;
		}
		float cos;
		uint32_t b = nearest(l, &v, i, v.k, &cos);
		*assign_of(l, &v, i) = (uint16_t)b;
		member(l, &v, i, b, +1);
		normalise_cent(l, &v, b);
	}
	if (grow)
		l->n_clusters++;
}

/* ---------------------------------------------------------------- Lloyd */

static void clear_stats(struct rlayer *l, const struct chunk_view *v)
{
	for (uint32_t j = 0; j < v->k; j++) {
		size_t g = (size_t)(v->c0 + j) * v->H + v->h;
		size_t at = ((size_t)j * v->H + v->h) * v->d;
		memset(l->usum + at, 0, v->d * sizeof(float));
		memset(l->csum + at, 0, v->d * sizeof(float));
		l->ccount[g] = 0;
	}
}

static void rebuild_head(struct rlayer *l, const struct chunk_view *v,
			 uint32_t n)
{
	clear_stats(l, v);
	for (uint32_t i = 0; i < n; i++)
		member(l, v, i, *assign_of(l, v, i), +1);
	for (uint32_t j = 0; j < v->k; j++)
		normalise_cent(l, v, j);
}

/* One Lloyd step for one head; returns the number of tokens that moved. */
static uint32_t lloyd_step(struct rlayer *l, const struct chunk_view *v,
			   uint32_t n)
{
	uint32_t moved = 0;
	for (uint32_t i = 0; i < n; i++) {
		float cos;
		uint32_t b = nearest(l, v, i, v->k, &cos);
		moved += *assign_of(l, v, i) != b;
		*assign_of(l, v, i) = (uint16_t)b;
	}
	rebuild_head(l, v, n);
	return moved;
}

/* Reseeds empty clusters; returns how many were reseeded. */
static uint32_t reseed_empty(struct rlayer *l, const struct chunk_view *v,
			     uint32_t n)
{
	uint32_t done = 0;
	for (uint32_t j = 0; j < v->k; j++) {
		if (l->ccount[(size_t)(v->c0 + j) * v->H + v->h])
			continue;
		uint32_t s = worst_fit(l, v, n);
		if (s == n)
			break;
		move(l, v, s, j);
		done++;
	}
	return done;
}

void kvt_km_refine(const struct kvt_rindex *x, struct rlayer *l)
{
	struct chunk_view v = view(x, l, 0);
	for (size_t h = 0; h < v.H; h++) {
		v.h = h;
		for (uint32_t it = 0; it < x->cfg.iters; it++) {
			uint32_t moved = lloyd_step(l, &v, l->pend_n);
			if (reseed_empty(l, &v, l->pend_n) == 0 && moved == 0)
				break;
		}
	}
}

void kvt_km_rebuild(const struct kvt_rindex *x, struct rlayer *l)
{
	struct chunk_view v = view(x, l, 0);
	for (size_t h = 0; h < v.H; h++) {
		v.h = h;
		for (uint32_t j = 0; j < v.k; j++)
			normalise_cent(l, &v, j);
	}
}
