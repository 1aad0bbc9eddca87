// score.cu - retrieval scoring (query x centroids or block means) and an
// exact top-k. Dot products use a fixed summation order so a CPU loop gives
// the same bits; top-k is a bitonic sort of (current best, next chunk) in
// shared memory, exact with ties broken toward the lower index.
#include <math.h>

#include "score.cuh"

#define SCORE_THREADS 256
#define TOPK_THREADS 256
#define TOPK_MAX 1024u
#define SCORE_MAX_DIM 4096u

static __global__ void score_kernel(const float *q, const float *keys,
				    uint32_t m, uint32_t dim, float *scores)
{
	extern __shared__ float qs[];
	const uint32_t qi = blockIdx.y;
	for (uint32_t d = threadIdx.x; d < dim; d += blockDim.x)
		qs[d] = q[(size_t)qi * dim + d];
	__syncthreads();
	const uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= m)
		return;
	const float *k = keys + (size_t)j * dim;
	float s = 0.0f;
	for (uint32_t d = 0; d < dim; d++)
		s = __fadd_rn(s, __fmul_rn(qs[d], k[d]));
	scores[(size_t)qi * m + j] = s;
}

struct cand {
	float score;
	uint32_t idx;
};

static __device__ __forceinline__ bool better(const struct cand &a,
					      const struct cand &b)
{
	return a.score > b.score || (a.score == b.score && a.idx < b.idx);
}

// Sorts c[0, n) best first; n a power of two; all threads of the block.
static __device__ void bitonic_sort(struct cand *c, uint32_t n)
{
	for (uint32_t k = 2; k <= n; k <<= 1) {
		for (uint32_t j = k >> 1; j > 0; j >>= 1) {
			for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
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
			__syncthreads();
		}
	}
}

static __global__ void topk_kernel(const float *scores, uint32_t m, uint32_t k,
				   uint32_t span, uint32_t *top_idx,
				   float *top_score)
{
	extern __shared__ struct cand cs[];
	const float *row = scores + (size_t)blockIdx.x * m;
	const struct cand none = {-INFINITY, 0xffffffffu};
	for (uint32_t i = threadIdx.x; i < span; i += blockDim.x)
		cs[i] = none;
	for (uint32_t base = 0; base < m; base += span) {
		for (uint32_t i = threadIdx.x; i < span; i += blockDim.x) {
			const uint32_t j = base + i;
			cs[span + i] = j < m ? cand{row[j], j} : none;
		}
		__syncthreads();
		bitonic_sort(cs, 2 * span);
	}
	for (uint32_t i = threadIdx.x; i < k; i += blockDim.x) {
		top_idx[(size_t)blockIdx.x * k + i] = cs[i].idx;
		if (top_score)
			top_score[(size_t)blockIdx.x * k + i] = cs[i].score;
	}
}

int kvt_score_launch(const float *q, uint32_t nq, const float *keys, uint32_t m,
		     uint32_t dim, float *scores, cudaStream_t st)
{
	dim3 grid((m + SCORE_THREADS - 1) / SCORE_THREADS, nq);
	score_kernel<<<grid, SCORE_THREADS, dim * sizeof(float), st>>>(
		q, keys, m, dim, scores);
	return kvt_cuda_launched();
}

int kvt_topk_launch(const float *scores, uint32_t nq, uint32_t m, uint32_t k,
		    uint32_t *top_idx, float *top_score, cudaStream_t st)
{
	uint32_t span = 128;
	while (span < k)
		span <<= 1;
	topk_kernel<<<nq, TOPK_THREADS, 2 * span * sizeof(struct cand), st>>>(
		scores, m, k, span, top_idx, top_score);
	return kvt_cuda_launched();
}

extern "C" int kvt_gpu_score_topk(const float *q, uint32_t nq, const float *keys,
				  uint32_t m, uint32_t dim, uint32_t k,
				  float *scores, uint32_t *top_idx,
				  float *top_score, struct kvt_stream *s)
{
	if (!q || !keys || !scores || !top_idx || nq == 0 || m == 0 ||
	    dim == 0 || dim > SCORE_MAX_DIM || k == 0 || k > m ||
	    k > TOPK_MAX || nq > 65535)
		return -EINVAL;
	cudaStream_t st = kvt_cu_stream(s);
	int rc = kvt_score_launch(q, nq, keys, m, dim, scores, st);
	return rc ? rc : kvt_topk_launch(scores, nq, m, k, top_idx, top_score, st);
}
