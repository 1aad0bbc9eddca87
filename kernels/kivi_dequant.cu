// kivi_dequant.cu - KIVI decoding on the GPU: value for value what the CPU
// codec decodes (one fp32 multiply and one add per element, rounded to the
// block's dtype to nearest even).
#include "emu_internal.h"
#include "kivi_dequant.cuh"
#include "gather.cuh"

#include <stdlib.h>

#define DEQUANT_THREADS 256

// A key thread decodes the G tokens of one channel of one group.
KVT_HD_FN void dequant_key(const struct kivi_plan &p, const uint8_t *enc,
				   uint8_t *raw, uint32_t i)
{
	const uint32_t dim = p.g.dim, bits = p.g.bits, per_word = 32u / bits;
	const uint32_t mask = (1u << bits) - 1;
	const uint32_t d = i % dim, rest = i / dim;
	const uint32_t gl = rest % p.k.ng, h = rest / p.k.ng;
	const size_t gi = ((size_t)h * p.k.ng + gl) * dim + d;
	const float s = kivi_h2f(((const uint16_t *)(enc + p.k.scales))[gi]);
	const float m = kivi_h2f(((const uint16_t *)(enc + p.k.mins))[gi]);
	const uint32_t *words = (const uint32_t *)(enc + p.k.codes) + gi * p.k.wpg;
	const size_t base = ((size_t)h * p.g.tokens + (size_t)gl * p.g.group) * dim + d;
	for (uint32_t w = 0; w < p.k.wpg; w++) {
		const uint32_t word = words[w];
		for (uint32_t k = 0; k < per_word; k++) {
			const uint32_t j = w * per_word + k;
			float x = kivi_decode1((word >> (k * bits)) & mask, s, m);
			kvt_store_elem(raw, p.g.dtype, base + (size_t)j * dim, x);
		}
	}
}

// A value thread decodes one code word: 32 / bits channels of one token.
KVT_HD_FN void dequant_value(const struct kivi_plan &p,
				     const uint8_t *venc, uint8_t *vraw,
				     uint32_t i)
{
	const uint32_t dim = p.g.dim, bits = p.g.bits, per_word = 32u / bits;
	const uint32_t wpr = dim / per_word;
	const uint32_t r = i / wpr, wl = i % wpr; // r = head * tq + token
	const uint32_t h = r / p.v.tq, t = r % p.v.tq;
	const size_t gi = (size_t)r * p.v.nc + wl / p.v.wpg;
	const float s = kivi_h2f(((const uint16_t *)(venc + p.v.scales))[gi]);
	const float m = kivi_h2f(((const uint16_t *)(venc + p.v.mins))[gi]);
	const uint32_t word = ((const uint32_t *)(venc + p.v.codes))[(size_t)r * wpr + wl];
	const size_t base = ((size_t)h * p.g.tokens + t) * dim + (size_t)wl * per_word;
	kivi_decode_word_any(word, s, m, bits, p.g.dtype, vraw, base);
}

KVT_HD_FN void dequant_item(const struct kivi_plan &p, const uint8_t *enc,
				    uint8_t *raw, uint32_t i)
{
	if (i < p.wk)
		dequant_key(p, enc, raw, i);
	else if (i < p.wk + p.wv)
		dequant_value(p, enc + p.k_len,
			      raw + (size_t)p.half_elems * kvt_kg_esize(p.g.dtype),
			      i - p.wk);
	else
		kivi_residual(p, NULL, raw, enc, NULL, i - p.wk - p.wv, 0);
}

// 1 when both stream headers of enc are the ones the geometry implies.
KVT_HD_FN int headers_ok(const struct kivi_plan &p, const uint8_t *enc)
{
	const uint32_t *k = (const uint32_t *)enc;
	const uint32_t *v = (const uint32_t *)(enc + p.k_len);
	int ok = 1;
	for (int w = 0; w < 10; w++)
		ok &= k[w] == p.hk.w[w] && v[w] == p.hv.w[w];
	return ok;
}

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

extern "C" int kvt_emu_kivi_dequantize(const struct kvt_kivi_geom *g,
				       const void *enc, void *raw, int fused)
{
	struct kivi_plan p;
	int rc = kvt_kivi_plan(g, 0, &p);
	if (rc)
		return rc;
	const uint8_t *src = (const uint8_t *)enc;
	uint8_t *staged = NULL;
	if (fused) {
		staged = (uint8_t *)aligned_alloc(16, ((size_t)p.enc_len + 15) & ~(size_t)15);
		if (!staged)
			return -ENOMEM;
		for (uint32_t t = 0; t < DEQUANT_THREADS; t++)
			kvt_block_copy(src, staged, p.enc_len, t, DEQUANT_THREADS);
		src = staged;
	}
	rc = headers_ok(p, src) ? 0 : KVT_EFORMAT;
	for (uint32_t i = 0; rc == 0 && i < p.work; i++)
		dequant_item(p, src, (uint8_t *)raw, i);
	free(staged);
	return rc;
}
