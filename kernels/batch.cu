// batch.cu - item tables of the batched kernels: a pinned host table the
// caller fills, its device copy, and mapped per-item results.
#include <stdlib.h>

#include "common.cuh"

extern "C" int kvt_gpu_batch_create(uint32_t cap, struct kvt_gpu_batch **out)
{
	if (!out || cap == 0 || cap > (1u << 24))
		return -EINVAL;
	if (kvt_gpu_available())
		return KVT_ENOGPU;
	struct kvt_gpu_batch *b = (struct kvt_gpu_batch *)calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	b->cap = cap;
	size_t tab = (size_t)cap * sizeof(struct kvt_gpu_item);
	int rc = kvt_cuda_status(cudaHostAlloc((void **)&b->host, tab,
					       cudaHostAllocPortable));
	if (rc == 0)
		rc = kvt_cuda_status(cudaMalloc((void **)&b->dev, tab));
	if (rc == 0)
		rc = kvt_cuda_status(cudaHostAlloc((void **)&b->results,
						   cap * sizeof(int),
						   cudaHostAllocMapped |
							   cudaHostAllocPortable));
	if (rc == 0)
		rc = kvt_cuda_status(cudaHostGetDevicePointer(
			(void **)&b->results_dev, b->results, 0));
	if (rc) {
		kvt_gpu_batch_free(b);
		return rc;
	}
	*out = b;
	return 0;
}

extern "C" void kvt_gpu_batch_free(struct kvt_gpu_batch *b)
{
	if (!b)
		return;
	if (b->host)
		cudaFreeHost(b->host);
	if (b->dev)
		cudaFree(b->dev);
	if (b->results)
		cudaFreeHost(b->results);
	free(b);
}

extern "C" struct kvt_gpu_item *kvt_gpu_batch_items(struct kvt_gpu_batch *b)
{
	return b ? b->host : NULL;
}

extern "C" const int *kvt_gpu_batch_results(const struct kvt_gpu_batch *b)
{
	return b ? b->results : NULL;
}

int kvt_batch_upload(struct kvt_gpu_batch *b, uint32_t n, cudaStream_t st)
{
	if (!b || n == 0 || n > b->cap)
		return -EINVAL;
	// The previous user of the batch has completed (documented contract),
	// so the host may clear the results before the new launch.
	for (uint32_t i = 0; i < n; i++)
		b->results[i] = 0;
	return kvt_cuda_status(cudaMemcpyAsync(b->dev, b->host,
					       (size_t)n * sizeof *b->host,
					       cudaMemcpyHostToDevice, st));
}
