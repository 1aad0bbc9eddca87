/*
 * zipcache_saliency.c - normalised attention scores (ZipCache token saliency).
 *
 * For each probing query i and key j <= i the causal softmax weight is added
 * to token j; dividing by the number of probing queries that see j removes
 * the bias of plain accumulated attention toward early tokens (they are seen
 * by more queries). Keys are transposed once per kv head so the logits of
 * one query are a loop over channels of contiguous multiply-adds (that
 * vectorises without reassociation); QB queries share each pass over the
 * keys. Scores are a ranking signal, not part of any format: float order is
 * free to differ from a GPU implementation.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/codec.h"

#define QB 4            /* queries per pass over the keys */
#define RECENT_FRAC 0.05 /* share of queries always probed: the newest */

/* splitmix64: the caller's seed is the whole state, nothing global. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Ascending probe query indices into probe; returns how many. */
static uint32_t pick_probes(uint32_t n, float ratio, uint64_t seed,
			    uint32_t *probe)
{
	if (ratio >= 1.0f) {
		for (uint32_t i = 0; i < n; i++)
			probe[i] = i;
		return n;
	}
	double want = floor((double)ratio * n + 0.5);
	uint32_t n_probe = want < 1 ? 1 : (uint32_t)want;
	uint32_t n_recent = (uint32_t)ceil(RECENT_FRAC * n);
	n_recent = n_recent < 1 ? 1 : n_recent;
	n_recent = n_recent > n_probe ? n_probe : n_recent;
	uint32_t pool = n - n_recent, need = n_probe - n_recent, k = 0;
	/* Selection sampling: each of the pool's queries in order, taken with
	 * probability need / remaining, gives a uniform sorted sample. */
	for (uint32_t i = 0; i < pool && need; i++) {
		double u = (double)(rng_next(&seed) >> 11) * 0x1p-53;
		if (u * (pool - i) < need) {
			probe[k++] = i;
			need--;
		}
	}
	for (uint32_t i = pool; i < n; i++)
		probe[k++] = i;
	return k;
}

struct sal_work {
	float *kt;    /* [dim][n] keys of one kv head, transposed */
	float *logit; /* [QB][n] */
	float *qs;    /* [QB][dim] scaled queries */
	double *acc;  /* [n] */
};

static void transpose(const float *k, uint32_t n, uint32_t dim, float *kt)
{
	for (uint32_t j = 0; j < n; j++)
		for (uint32_t d = 0; d < dim; d++)
			kt[(size_t)d * n + j] = k[(size_t)j * dim + d];
}

/* Logits of nq queries over keys [0, len). */
static void logits(const struct sal_work *w, uint32_t n, uint32_t dim,
		   uint32_t nq, uint32_t len)
{
	for (uint32_t b = 0; b < nq; b++) {
		float *restrict l = w->logit + (size_t)b * n;
		memset(l, 0, len * sizeof *l);
		for (uint32_t d = 0; d < dim; d++) {
			const float qd = w->qs[(size_t)b * dim + d];
			const float *restrict kr = w->kt + (size_t)d * n;
			for (uint32_t j = 0; j < len; j++)
				l[j] = l[j] + qd * kr[j];
		}
	}
}

/* Adds the causal softmax of query i (logits l) to acc. */
static void add_softmax(const float *restrict l, uint32_t i, double *restrict acc,
			float *restrict e)
{
	float mx = l[0];
	for (uint32_t j = 1; j <= i; j++)
		mx = l[j] > mx ? l[j] : mx;
	double sum = 0;
	for (uint32_t j = 0; j <= i; j++) {
		e[j] = expf(l[j] - mx);
		sum += e[j];
	}
	const double inv = 1.0 / sum;
	for (uint32_t j = 0; j <= i; j++)
		acc[j] += e[j] * inv;
}

/* One q head: every probe query, QB at a time. */
static void q_head(const float *q, uint32_t n, uint32_t dim,
		   const uint32_t *probe, uint32_t n_probe, struct sal_work *w,
		   float *e)
{
	const float scale = 1.0f / sqrtf((float)dim);
	for (uint32_t p0 = 0; p0 < n_probe; p0 += QB) {
		uint32_t nq = n_probe - p0 < QB ? n_probe - p0 : QB;
		for (uint32_t b = 0; b < nq; b++)
			for (uint32_t d = 0; d < dim; d++)
				w->qs[(size_t)b * dim + d] =
					q[(size_t)probe[p0 + b] * dim + d] * scale;
		/* probes ascend: the last of the block sees the most keys */
		logits(w, n, dim, nq, probe[p0 + nq - 1] + 1);
		for (uint32_t b = 0; b < nq; b++)
			add_softmax(w->logit + (size_t)b * n, probe[p0 + b],
				    w->acc, e);
	}
}

static int args_ok(const float *q, uint32_t n_q_heads, const float *k,
		   uint32_t n_kv_heads, uint32_t n_tokens, uint32_t dim,
		   float probe_ratio, const float *scores)
{
	if (!q || !k || !scores || !n_q_heads || !n_kv_heads || !n_tokens ||
	    !dim || n_q_heads % n_kv_heads)
		return 0;
	if ((uint64_t)n_q_heads * n_tokens * dim > (1ull << 34))
		return 0;
	return probe_ratio > 0.0f && !isnan(probe_ratio);
}

int kvt_zipcache_saliency(const float *q, uint32_t n_q_heads,
			  const float *k, uint32_t n_kv_heads,
			  uint32_t n_tokens, uint32_t dim, float probe_ratio,
			  uint64_t seed, float *scores)
{
	if (!args_ok(q, n_q_heads, k, n_kv_heads, n_tokens, dim, probe_ratio,
		     scores))
		return -EINVAL;
	const size_t n = n_tokens;
	struct sal_work w;
	uint32_t *probe = malloc(n * sizeof *probe);
	float *mem = malloc(((size_t)dim * n + (QB + 1) * n + QB * (size_t)dim) *
			    sizeof(float));
	w.acc = calloc(n, sizeof *w.acc);
	if (!probe || !mem || !w.acc) {
		free(probe), free(mem), free(w.acc);
		return -ENOMEM;
	}
	w.kt = mem;
	w.logit = mem + (size_t)dim * n;
	w.qs = w.logit + QB * n;
	float *e = w.qs + QB * (size_t)dim;
	uint32_t n_probe = pick_probes(n_tokens, probe_ratio, seed, probe);
	const uint32_t group = n_q_heads / n_kv_heads;
	for (uint32_t kh = 0; kh < n_kv_heads; kh++) {
		transpose(k + (size_t)kh * n * dim, n_tokens, dim, w.kt);
		for (uint32_t g = 0; g < group; g++) {
			size_t qh = (size_t)kh * group + g;
			q_head(q + qh * n * dim, n_tokens, dim, probe, n_probe,
			       &w, e);
		}
	}
	/* Probes seeing token j: those with index >= j. The newest query is
	 * always a probe, so every token is seen at least once. */
	for (uint32_t j = n_tokens, p = n_probe, seen = 0; j-- > 0;) {
		while (p > 0 && probe[p - 1] >= j) {
			p--;
			seen++;
		}
		scores[j] = (float)(w.acc[j] / seen);
	}
	free(probe), free(mem), free(w.acc);
	return 0;
}
