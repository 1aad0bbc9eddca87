// kivi_dequant.cu - KIVI decoding on the GPU: value for value what the CPU
// codec decodes (one fp32 multiply and one add per element, rounded to the
// block's dtype to nearest even).
#include "kivi_dequant.cuh"
#include "gather.cuh"

// Thread 0 checks the headers for the whole thread block.
static __device__ int block_headers_ok(const struct kivi_plan &p,
				       const uint8_t *enc, int *result)
{
	__shared__ int ok;
	if (threadIdx.x == 0) {
		ok = headers_ok(p, enc);
		if (!ok && result)
			*result = KVT_EFORMAT;
	}
	__syncthreads();
	return ok;
}

static __global__ void dequant_kernel(const struct kivi_plan p,
				      const struct kvt_gpu_item *items,
				      uint32_t ctas_per_item, int *results)
{
	const uint32_t item = blockIdx.x / ctas_per_item;
	const uint32_t i = (blockIdx.x % ctas_per_item) * blockDim.x + threadIdx.x;
	const uint8_t *enc = (const uint8_t *)items[item].src;
	if (!block_headers_ok(p, enc, results ? results + item : NULL))
		return;
	if (i < p.work)
		dequant_item(p, enc, (uint8_t *)items[item].dst, i);
}

static __global__ void gather_dequant_kernel(const struct kivi_plan p,
					     const struct kvt_gpu_item *items,
					     int *results)
{
	extern __shared__ uint4 smem[];
	uint8_t *enc = (uint8_t *)smem;
	const struct kvt_gpu_item it = items[blockIdx.x];
	kvt_block_copy((const uint8_t *)it.src, enc, p.enc_len, threadIdx.x,
		       blockDim.x);
	__syncthreads();
	if (!block_headers_ok(p, enc, results ? results + blockIdx.x : NULL))
		return;
	for (uint32_t i = threadIdx.x; i < p.work; i += blockDim.x)
		dequant_item(p, enc, (uint8_t *)it.dst, i);
}

int kvt_kivi_dequant_launch(const struct kivi_plan &p,
			    const struct kvt_gpu_item *items, uint32_t n,
			    int *results, cudaStream_t st)
{
	uint64_t cpi = (p.work + DEQUANT_THREADS - 1) / DEQUANT_THREADS;
	cpi = cpi ? cpi : 1; // headers are checked even for an empty payload
	if (cpi * n > 0x7fffffffull)
		return -EINVAL;
	dequant_kernel<<<(unsigned)(cpi * n), DEQUANT_THREADS, 0, st>>>(
		p, items, (uint32_t)cpi, results);
	return kvt_cuda_launched();
}

static int smem_limit(size_t *out)
{
	int dev, v;
	int rc = kvt_cuda_status(cudaGetDevice(&dev));
	if (rc == 0)
		rc = kvt_cuda_status(cudaDeviceGetAttribute(
			&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
	if (rc == 0)
		*out = (size_t)v;
	return rc;
}

int kvt_kivi_gather_dequant_launch(const struct kivi_plan &p,
				   const struct kvt_gpu_item *items, uint32_t n,
				   int *results, cudaStream_t st)
{
	size_t limit, bytes = ((size_t)p.enc_len + 15) & ~(size_t)15;
	int rc = smem_limit(&limit);
	if (rc)
		return rc;
	// The header check needs a static int too; keep some slack.
	if (bytes + 64 > limit)
		return KVT_ETOOBIG;
	if (n > 0x7fffffffu)
		return -EINVAL;
	rc = kvt_cuda_status(cudaFuncSetAttribute(
		gather_dequant_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
		(int)bytes));
	if (rc)
		return rc;
	gather_dequant_kernel<<<n, DEQUANT_THREADS, bytes, st>>>(p, items, results);
	return kvt_cuda_launched();
}

static int prepare(const struct kvt_kivi_geom *g, struct kvt_gpu_batch *b,
		   uint32_t n, cudaStream_t st, struct kivi_plan *p)
{
	int rc = kvt_kivi_plan(g, 0, p);
	if (rc)
		return rc;
	if ((rc = kvt_kivi_items_ok(b, n)))
		return rc;
	return n ? kvt_batch_upload(b, n, st) : 0;
}

extern "C" int kvt_kivi_dequantize(const struct kvt_kivi_geom *g,
				   struct kvt_gpu_batch *b, uint32_t n,
				   struct kvt_stream *s)
{
	struct kivi_plan p;
	cudaStream_t st = kvt_cu_stream(s);
	int rc = prepare(g, b, n, st, &p);
	if (rc || n == 0)
		return rc;
	return kvt_kivi_dequant_launch(p, b->dev, n, b->results_dev, st);
}

extern "C" int kvt_kivi_gather_dequantize(const struct kvt_kivi_geom *g,
					  struct kvt_gpu_batch *b, uint32_t n,
					  struct kvt_stream *s)
{
	struct kivi_plan p;
	cudaStream_t st = kvt_cu_stream(s);
	int rc = kvt_kivi_plan(g, 0, &p);
	if (rc)
		return rc;
	size_t limit;
	if ((rc = smem_limit(&limit)))
		return rc;
	if ((((size_t)p.enc_len + 15) & ~(size_t)15) + 64 > limit)
		return KVT_ETOOBIG;
	rc = prepare(g, b, n, st, &p);
	if (rc || n == 0)
		return rc;
	return kvt_kivi_gather_dequant_launch(p, b->dev, n, b->results_dev, st);
}
