// score.cu - retrieval scoring (query x centroids or block means) and an
// exact top-k. Dot products use a fixed summation order so a CPU loop gives
// the same bits; top-k is a bitonic sort of (current best, next chunk) in
// shared memory, exact with ties broken toward the lower index.
#include <math.h>
#include <stdlib.h>

#include "emu_internal.h"
#include "score.cuh"

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

// Grid: x over keys, y over queries, z over sets (one key set per head).
static __global__ void score_kernel(const float *q, const float *keys,
				    uint32_t nq, uint32_t m, uint32_t dim,
				    float *scores)
{
	extern __shared__ float qs[];
	const size_t row = (size_t)blockIdx.z * nq + blockIdx.y;
	for (uint32_t d = threadIdx.x; d < dim; d += blockDim.x)
		qs[d] = q[row * dim + d];
	__syncthreads();
	const uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j < m)
		scores[row * m + j] = dot(qs, keys + ((size_t)blockIdx.z * m + j) * dim, dim);
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

static __global__ void topk_kernel(const float *scores, uint32_t m, uint32_t k,
				   uint32_t span, uint32_t *top_idx,
				   float *top_score)
{
	extern __shared__ struct cand cs[];
	const size_t r = blockIdx.x;
	topk_row(scores + r * m, m, k, span, cs, top_idx + r * k,
		 top_score ? top_score + r * k : NULL, threadIdx.x, blockDim.x);
}

static uint32_t topk_span(uint32_t k)
{
	uint32_t span = 128;
	while (span < k)
		span <<= 1;
	return span;
}

int kvt_score_launch(const float *q, uint32_t sets, uint32_t nq,
		     const float *keys, uint32_t m, uint32_t dim, float *scores,
		     cudaStream_t st)
{
	dim3 grid((m + SCORE_THREADS - 1) / SCORE_THREADS, nq, sets);
	score_kernel<<<grid, SCORE_THREADS, dim * sizeof(float), st>>>(
		q, keys, nq, m, dim, scores);
	return kvt_cuda_launched();
}

int kvt_topk_launch(const float *scores, uint32_t rows, uint32_t m, uint32_t k,
		    uint32_t *top_idx, float *top_score, cudaStream_t st)
{
	const uint32_t span = topk_span(k);
	topk_kernel<<<rows, TOPK_THREADS, 2 * span * sizeof(struct cand), st>>>(
		scores, m, k, span, top_idx, top_score);
	return kvt_cuda_launched();
}

static int score_args_ok(const float *q, uint32_t sets, uint32_t nq,
			 const float *keys, uint32_t m, uint32_t dim, uint32_t k,
			 const float *scores, const uint32_t *top_idx)
{
	return q && keys && scores && top_idx && sets && sets <= 65535 && nq &&
	       nq <= 65535 && (uint64_t)sets * nq <= 0x7fffffffu && m && dim &&
	       dim <= SCORE_MAX_DIM && k && k <= m && k <= TOPK_MAX;
}

extern "C" int kvt_gpu_score_topk_sets(const float *q, uint32_t sets,
				       uint32_t nq, const float *keys,
				       uint32_t m, uint32_t dim, uint32_t k,
				       float *scores, uint32_t *top_idx,
				       float *top_score, struct kvt_stream *s)
{
	if (!score_args_ok(q, sets, nq, keys, m, dim, k, scores, top_idx))
		return -EINVAL;
	cudaStream_t st = kvt_cu_stream(s);
	int rc = kvt_score_launch(q, sets, nq, keys, m, dim, scores, st);
	return rc ? rc : kvt_topk_launch(scores, sets * nq, m, k, top_idx,
					 top_score, st);
}

extern "C" int kvt_gpu_score_topk(const float *q, uint32_t nq, const float *keys,
				  uint32_t m, uint32_t dim, uint32_t k,
				  float *scores, uint32_t *top_idx,
				  float *top_score, struct kvt_stream *s)
{
	return kvt_gpu_score_topk_sets(q, 1, nq, keys, m, dim, k, scores,
				       top_idx, top_score, s);
}

extern "C" int kvt_emu_score_topk(const float *q, uint32_t sets, uint32_t nq,
				  const float *keys, uint32_t m, uint32_t dim,
				  uint32_t k, float *scores, uint32_t *top_idx,
				  float *top_score)
{
	if (!score_args_ok(q, sets, nq, keys, m, dim, k, scores, top_idx))
		return -EINVAL;
	for (uint32_t z = 0; z < sets; z++)
		for (uint32_t i = 0; i < nq; i++)
			for (uint32_t j = 0; j < m; j++)
				scores[((size_t)z * nq + i) * m + j] =
					dot(q + ((size_t)z * nq + i) * dim,
					    keys + ((size_t)z * m + j) * dim, dim);
	const uint32_t span = topk_span(k);
	struct cand *cs = (struct cand *)malloc(2 * span * sizeof *cs);
	if (!cs)
		return -ENOMEM;
	for (size_t r = 0; r < (size_t)sets * nq; r++)
		topk_row(scores + r * m, m, k, span, cs, top_idx + r * k,
			 top_score ? top_score + r * k : NULL, 0, 1);
	free(cs);
	return 0;
}
