// score.cuh - retrieval scoring: queries x keys, then top-k per query.
#ifndef KVTIER_KERNELS_SCORE_CUH
#define KVTIER_KERNELS_SCORE_CUH

#include <math.h>

#include "common.cuh"

#define SCORE_THREADS 256
#define TOPK_THREADS 256
#define TOPK_MAX 1024u
#define SCORE_MAX_DIM 4096u

KVT_HD_FN float dot(const float *q, const float *k, uint32_t dim)
{
	float s = 0.0f;
	for (uint32_t d = 0; d < dim; d++)
		s = KVT_FADD(s, KVT_FMUL(q[d], k[d]));
	return s;
}

struct cand {
	float score;
	uint32_t idx;
};

KVT_HD_FN bool better(const struct cand &a, const struct cand &b)
{
	return a.score > b.score || (a.score == b.score && a.idx < b.idx);
}

// Sorts c[0, n) best first; n a power of two; thread tid of nt. The pairs
// of one step are disjoint, so one thread doing all of them (the CPU
// emulation) gives the same result.
KVT_HD_FN void bitonic_sort(struct cand *c, uint32_t n, uint32_t tid, uint32_t nt)
{
	for (uint32_t k = 2; k <= n; k <<= 1) {
		for (uint32_t j = k >> 1; j > 0; j >>= 1) {
			for (uint32_t i = tid; i < n; i += nt) {
				const uint32_t x = i ^ j;
				if (x <= i)
					continue;
				const bool first = (i & k) == 0;
				struct cand a = c[i], b = c[x];
				if (first ? better(b, a) : better(a, b)) {
					c[i] = b;
					c[x] = a;
				}
			}
			KVT_SYNC();
		}
	}
}

// Top k of one row with cs[2 * span] of scratch; thread tid of nt.
KVT_HD_FN void topk_row(const float *row, uint32_t m, uint32_t k, uint32_t span,
			struct cand *cs, uint32_t *idx, float *score,
			uint32_t tid, uint32_t nt)
{
	const struct cand none = {-INFINITY, 0xffffffffu};
	for (uint32_t i = tid; i < span; i += nt)
		cs[i] = none;
	for (uint32_t base = 0; base < m; base += span) {
		for (uint32_t i = tid; i < span; i += nt) {
			const uint32_t j = base + i;
			cs[span + i] = j < m ? cand{row[j], j} : none;
		}
		KVT_SYNC();
		bitonic_sort(cs, 2 * span, tid, nt);
	}
	for (uint32_t i = tid; i < k; i += nt) {
		idx[i] = cs[i].idx;
		if (score)
			score[i] = cs[i].score;
	}
}

static inline uint32_t topk_span(uint32_t k)
{
	uint32_t span = 128;
	while (span < k)
		span <<= 1;
	return span;
}

static inline int score_args_ok(const float *q, uint32_t sets, uint32_t nq,
			 const float *keys, uint32_t m, uint32_t dim, uint32_t k,
			 const float *scores, const uint32_t *top_idx)
{
	return q && keys && scores && top_idx && sets && sets <= 65535 && nq &&
	       nq <= 65535 && (uint64_t)sets * nq <= 0x7fffffffu && m && dim &&
	       dim <= SCORE_MAX_DIM && k && k <= m && k <= TOPK_MAX;
}


// scores[s][nq][m] = q[s][nq][dim] . keys[s][m][dim], in order, no FMA.
int kvt_score_launch(const float *q, uint32_t sets, uint32_t nq,
		     const float *keys, uint32_t m, uint32_t dim, float *scores,
		     cudaStream_t st);

// Top k of each row of scores[rows][m] (score descending, index ascending).
int kvt_topk_launch(const float *scores, uint32_t rows, uint32_t m, uint32_t k,
		    uint32_t *top_idx, float *top_score, cudaStream_t st);

#endif
