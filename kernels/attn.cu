// attn.cu - reference attention over a block table on the GPU (attn.cuh).
#include "attn.cuh"

static __global__ void attn_kernel(struct kvt_attn_args a)
{
	__shared__ float red[ATTN_THREADS];
	attn_row(&a, blockIdx.x, red, threadIdx.x, blockDim.x);
}

extern "C" int kvt_gpu_attn_blocks(const struct kvt_attn_args *a,
				   struct kvt_stream *s)
{
	if (!attn_args_ok(a))
		return -EINVAL;
	attn_kernel<<<a->n_q_heads * a->n_queries, ATTN_THREADS, 0,
		      kvt_cu_stream(s)>>>(*a);
	return kvt_cuda_launched();
}
