// score.cu - retrieval scoring (query x centroids or block means) and an
// exact top-k. Dot products use a fixed summation order so a CPU loop gives
// the same bits; top-k is a bitonic sort of (current best, next chunk) in
// shared memory, exact with ties broken toward the lower index.
#include <math.h>

#include "score.cuh"

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

static __global__ void topk_kernel(const float *scores, uint32_t m, uint32_t k,
				   uint32_t span, uint32_t *top_idx,
				   float *top_score)
{
	extern __shared__ struct cand cs[];
	const size_t r = blockIdx.x;
	topk_row(scores + r * m, m, k, span, cs, top_idx + r * k,
		 top_score ? top_score + r * k : NULL, threadIdx.x, blockDim.x);
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
