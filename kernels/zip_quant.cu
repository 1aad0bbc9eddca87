// zip_quant.cu - ZipCache quantization on the GPU, byte for byte what
// codec/zipcache.c writes for the same salient set. One thread block per
// (block, K or V, head): its threads first take the channel normalisers
// (largest magnitude over the tokens, sqrt rounded to fp16), then one
// thread per token row quantizes it at its class's bits. The salient set
// is an input (one bitmap per block, see kvt_zip_salient_bitmap).
#include "zip_quant.cuh"

static __global__ void zipq_kernel(const struct zipq_plan p,
				   const struct kvt_gpu_item *items,
				   const uint32_t *bitmaps)
{
	__shared__ float r[ZIPQ_MAX_DIM];
	const uint32_t hd = blockIdx.x % p.g.heads;
	const uint32_t half = (blockIdx.x / p.g.heads) % 2;
	const uint32_t item = blockIdx.x / (2 * p.g.heads);
	const uint8_t *raw = (const uint8_t *)items[item].src +
			     (size_t)half * p.half_elems * kvt_kg_esize(p.g.dtype);
	uint8_t *s = (uint8_t *)items[item].dst + (half ? p.z.end : 0);
	const uint32_t *bm = bitmaps + (size_t)item * p.bm_words;
	if (hd == 0 && threadIdx.x == 0)
		zipq_frame(p, s, half, bm);
	for (uint32_t c = threadIdx.x; p.norms && c < p.g.dim; c += blockDim.x) {
		const uint16_t nh = zipq_norm(zipq_amax(p, raw, hd, c));
		((uint16_t *)(s + p.z.norm))[(size_t)hd * p.g.dim + c] = nh;
		r[c] = KVT_FDIV(1.0f, kivi_h2f(nh));
	}
	__syncthreads();
	for (uint32_t t = threadIdx.x; t < p.g.tokens; t += blockDim.x)
		zipq_row(p, raw, s, bm, hd, t, p.norms ? r : NULL);
}

int kvt_zip_quant_launch(const struct zipq_plan &p,
			 const struct kvt_gpu_item *items, uint32_t n,
			 const uint32_t *bitmaps, cudaStream_t st)
{
	const uint64_t ctas = (uint64_t)n * 2 * p.g.heads;
	if (ctas > 0x7fffffffull)
		return -EINVAL;
	zipq_kernel<<<(unsigned)ctas, ZIPQ_THREADS, 0, st>>>(p, items, bitmaps);
	return kvt_cuda_launched();
}

extern "C" int kvt_zip_quantize(const struct kvt_zip_geom *g, int tokenwise,
				uint32_t n_salient, const uint32_t *bitmaps,
				struct kvt_gpu_batch *b, uint32_t n,
				struct kvt_stream *s)
{
	struct zipq_plan p;
	int rc = kvt_zipq_plan(g, tokenwise, n_salient, &p);
	if (rc || (rc = kvt_kivi_items_ok(b, n)) || n == 0)
		return rc;
	if (!bitmaps)
		return -EINVAL;
	cudaStream_t st = kvt_cu_stream(s);
	rc = kvt_batch_upload(b, n, st);
	return rc ? rc : kvt_zip_quant_launch(p, b->dev, n, bitmaps, st);
}
