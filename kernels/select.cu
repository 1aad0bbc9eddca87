// select.cu - Quest block selection on the GPU (bodies in select.cuh):
// bound logits, per-row softmax statistics, block keys, radix top-k.
#include "select.cuh"

// Grid: x over frames, y over query rows; the row's query in shared memory.
static __global__ void quest_logits_kernel(struct kvt_quest_args a)
{
	extern __shared__ float qs[];
	const uint32_t r = blockIdx.y, d = a.head_dim;
	for (uint32_t e = threadIdx.x; e < d; e += blockDim.x) {
		qs[e] = a.qp[(size_t)r * d + e];
		qs[d + e] = a.qn[(size_t)r * d + e];
	}
	__syncthreads();
	const uint32_t f = blockIdx.x * blockDim.x + threadIdx.x;
	if (f < a.n_frames)
		a.lg[(size_t)r * a.n_frames + f] = quest_logit(&a, qs, qs + d, r, f);
}

static __global__ void row_stats_kernel(struct kvt_quest_args a)
{
	__shared__ float red[STATS_THREADS];
	quest_row_stats(&a, blockIdx.x, red, threadIdx.x, blockDim.x);
}

static __global__ void block_key_kernel(struct kvt_quest_args a)
{
	const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
	if (b < a.n_blocks)
		block_key(&a, b);
}

// Grid: x over clusters, y over query rows.
static __global__ void ckv_logits_kernel(struct kvt_ckv_args a)
{
	extern __shared__ float qs[];
	const uint32_t r = blockIdx.y, d = a.head_dim;
	for (uint32_t e = threadIdx.x; e < d; e += blockDim.x)
		qs[e] = a.q[(size_t)r * d + e];
	__syncthreads();
	const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
	if (c < a.n_clusters)
		a.lg[(size_t)r * a.n_clusters + c] = ckv_logit(&a, qs, r, c);
}

static __global__ void ckv_row_stats_kernel(struct kvt_ckv_args a)
{
	__shared__ float red[STATS_THREADS];
	ckv_row_stats(&a, blockIdx.x, red, threadIdx.x, blockDim.x);
}

// Grid: x over clusters, y over kv heads.
static __global__ void ckv_weight_kernel(struct kvt_ckv_args a)
{
	const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
	if (c < a.n_clusters)
		ckv_weight(&a, c, blockIdx.y);
}

static __global__ void ckv_block_key_kernel(struct kvt_ckv_args a)
{
	const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
	if (b < a.n_blocks)
		ckv_block_key(&a, b);
}

static __global__ void select_kernel(const uint32_t *key, uint32_t n,
				     uint32_t k, uint8_t *sel)
{
	__shared__ uint32_t red[RSEL_THREADS];
	radix_select(key, n, k, sel, red, threadIdx.x, blockDim.x);
}

extern "C" int kvt_gpu_quest_keys(const struct kvt_quest_args *a,
				  struct kvt_stream *s)
{
	if (!quest_args_ok(a))
		return -EINVAL;
	cudaStream_t st = kvt_cu_stream(s);
	dim3 grid((a->n_frames + QUEST_THREADS - 1) / QUEST_THREADS, a->rows);
	quest_logits_kernel<<<grid, QUEST_THREADS, 2 * a->head_dim * sizeof(float), st>>>(*a);
	int rc = kvt_cuda_launched();
	if (rc)
		return rc;
	row_stats_kernel<<<a->rows, STATS_THREADS, 0, st>>>(*a);
	if ((rc = kvt_cuda_launched()))
		return rc;
	block_key_kernel<<<(a->n_blocks + 255) / 256, 256, 0, st>>>(*a);
	return kvt_cuda_launched();
}

extern "C" int kvt_gpu_select_top(const uint32_t *key, uint32_t n, uint32_t k,
				  uint8_t *sel, struct kvt_stream *s)
{
	if (!key || !sel || k == 0 || k > n)
		return -EINVAL;
	select_kernel<<<1, RSEL_THREADS, 0, kvt_cu_stream(s)>>>(key, n, k, sel);
	return kvt_cuda_launched();
}

extern "C" int kvt_gpu_clusterkv_keys(const struct kvt_ckv_args *a,
				      struct kvt_stream *s)
{
	if (!ckv_args_ok(a))
		return -EINVAL;
	cudaStream_t st = kvt_cu_stream(s);
	const uint32_t cb = (a->n_clusters + QUEST_THREADS - 1) / QUEST_THREADS;
	ckv_logits_kernel<<<dim3(cb, a->rows), QUEST_THREADS,
			    a->head_dim * sizeof(float), st>>>(*a);
	int rc = kvt_cuda_launched();
	if (rc)
		return rc;
	ckv_row_stats_kernel<<<a->rows, STATS_THREADS, 0, st>>>(*a);
	if ((rc = kvt_cuda_launched()))
		return rc;
	ckv_weight_kernel<<<dim3(cb, a->n_kv_heads), QUEST_THREADS, 0, st>>>(*a);
	if ((rc = kvt_cuda_launched()))
		return rc;
	ckv_block_key_kernel<<<(a->n_blocks + 255) / 256, 256, 0, st>>>(*a);
	return kvt_cuda_launched();
}
