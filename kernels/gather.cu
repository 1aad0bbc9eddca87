// gather.cu - one launch copies N scattered blocks (typically from mapped
// pinned host memory into GPU slots): the reload path of DESIGN.md, where
// one copy per block reaches a third of the link.
#include "gather.cuh"

static __global__ void gather_kernel(const struct kvt_gpu_item *items,
				     uint32_t chunks_per_item)
{
	const uint32_t item = blockIdx.x / chunks_per_item;
	const uint64_t begin = (uint64_t)(blockIdx.x % chunks_per_item) * GATHER_CHUNK;
	const struct kvt_gpu_item it = items[item];
	if (begin >= it.len)
		return;
	const uint64_t left = it.len - begin;
	const uint32_t len = left < GATHER_CHUNK ? (uint32_t)left : GATHER_CHUNK;
	kvt_block_copy((const uint8_t *)it.src + begin, (uint8_t *)it.dst + begin,
		       len, threadIdx.x, blockDim.x);
}

int kvt_gather_launch(const struct kvt_gpu_item *items, uint32_t n,
		      uint64_t max_len, cudaStream_t st)
{
	if (n == 0 || max_len == 0)
		return 0;
	uint64_t chunks = (max_len + GATHER_CHUNK - 1) / GATHER_CHUNK;
	if (chunks * n > 0x7fffffffull)
		return -EINVAL;
	gather_kernel<<<(unsigned)(chunks * n), GATHER_THREADS, 0, st>>>(
		items, (uint32_t)chunks);
	return kvt_cuda_launched();
}

extern "C" int kvt_gpu_gather(struct kvt_gpu_batch *b, uint32_t n,
			      struct kvt_stream *s)
{
	if (!b || n > b->cap)
		return -EINVAL;
	if (n == 0)
		return 0;
	uint64_t max_len = 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct kvt_gpu_item *it = &b->host[i];
		if (it->len && (!it->src || !it->dst))
			return -EINVAL;
		max_len = it->len > max_len ? it->len : max_len;
	}
	cudaStream_t st = kvt_cu_stream(s);
	int rc = kvt_batch_upload(b, n, st);
	return rc ? rc : kvt_gather_launch(b->dev, n, max_len, st);
}
