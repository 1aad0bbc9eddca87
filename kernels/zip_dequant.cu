// zip_dequant.cu - ZipCache decoding on the GPU, value for value what
// codec/zipcache.c decodes: ((float)code * scale + min) * normaliser, each
// step rounded in that order, then rounded to the block's dtype. One thread
// block per block: the encoded bytes are copied into shared memory with
// wide loads (so a block can come straight from mapped host memory), the
// headers, lengths, bitmap and normalisers are checked, then every thread
// decodes code words.
#include "gather.cuh"
#include "zip_dequant.cuh"

struct zip_shared {
	struct zip_sect k, v;
	int ok;
};

static __global__ void zip_kernel(const struct kvt_zip_geom g,
				  const struct kvt_gpu_item *items, int *results)
{
	extern __shared__ uint4 smem[];
	__shared__ struct zip_shared sh;
	uint8_t *enc = (uint8_t *)smem;
	const struct kvt_gpu_item it = items[blockIdx.x];
	const uint32_t len = (uint32_t)it.len;
	kvt_block_copy((const uint8_t *)it.src, enc, len, threadIdx.x, blockDim.x);
	__syncthreads();
	if (threadIdx.x == 0) {
		sh.ok = zip_stream_ok(g, enc, len, 0, &sh.k) &&
			zip_stream_ok(g, enc + sh.k.end, len - sh.k.end, 1, &sh.v) &&
			sh.k.end + sh.v.end == len &&
			zip_bitmap_ok(g, enc, sh.k) &&
			zip_bitmap_ok(g, enc + sh.k.end, sh.v);
	}
	__syncthreads();
	int ok = sh.ok && zip_norms_ok(g, enc, sh.k, threadIdx.x, blockDim.x) &&
		 zip_norms_ok(g, enc + sh.k.end, sh.v, threadIdx.x, blockDim.x);
	if (!__syncthreads_and(ok)) {
		if (threadIdx.x == 0 && results)
			results[blockIdx.x] = KVT_EFORMAT;
		return;
	}
	const uint32_t per_half = g.heads * g.tokens * sh.k.wh;
	const size_t half_bytes = (size_t)g.heads * g.tokens * g.dim * kvt_kg_esize(g.dtype);
	uint8_t *raw = (uint8_t *)it.dst;
	for (uint32_t i = threadIdx.x; i < 2 * per_half; i += blockDim.x) {
		if (i < per_half)
			zip_decode_item(g, enc, sh.k, raw, i);
		else
			zip_decode_item(g, enc + sh.k.end, sh.v, raw + half_bytes,
					i - per_half);
	}
}

int kvt_zip_dequant_launch(const struct kvt_zip_geom &g,
			   const struct kvt_gpu_item *items, uint32_t n,
			   size_t smem, int *results, cudaStream_t st)
{
	int rc = kvt_cuda_status(cudaFuncSetAttribute(
		zip_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
	if (rc)
		return rc;
	zip_kernel<<<n, ZIP_THREADS, smem, st>>>(g, items, results);
	return kvt_cuda_launched();
}

// Bytes of shared memory for the largest item, or KVT_ETOOBIG.
static int zip_smem(const struct kvt_gpu_batch *b, uint32_t n, size_t *out)
{
	int dev, limit;
	int rc = kvt_cuda_status(cudaGetDevice(&dev));
	if (rc == 0)
		rc = kvt_cuda_status(cudaDeviceGetAttribute(
			&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
	if (rc)
		return rc;
	uint64_t max = 0;
	for (uint32_t i = 0; i < n; i++)
		max = b->host[i].len > max ? b->host[i].len : max;
	*out = (size_t)((max + 15) & ~15ull);
	return *out + 256 > (size_t)limit ? KVT_ETOOBIG : 0;
}

extern "C" int kvt_zip_dequantize(const struct kvt_zip_geom *g,
				  struct kvt_gpu_batch *b, uint32_t n,
				  struct kvt_stream *s)
{
	size_t smem;
	int rc = kvt_zip_geom_check(g);
	if (rc || (rc = kvt_zip_items_ok(b, n)) || n == 0)
		return rc;
	if ((rc = zip_smem(b, n, &smem)))
		return rc;
	cudaStream_t st = kvt_cu_stream(s);
	rc = kvt_batch_upload(b, n, st);
	return rc ? rc : kvt_zip_dequant_launch(*g, b->dev, n, smem,
						b->results_dev, st);
}
