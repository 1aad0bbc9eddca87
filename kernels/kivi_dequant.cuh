// kivi_dequant.cuh - KIVI decoding of encoded blocks into raw blocks, from
// device memory or fused with the gather from mapped host memory.
#ifndef KVTIER_KERNELS_KIVI_DEQUANT_CUH
#define KVTIER_KERNELS_KIVI_DEQUANT_CUH

#include "kivi.cuh"

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


// Enqueues the decoding of n items (device table) with encoded sources in
// device memory; results[i] gets KVT_EFORMAT for a bad header.
int kvt_kivi_dequant_launch(const struct kivi_plan &p,
			    const struct kvt_gpu_item *items, uint32_t n,
			    int *results, cudaStream_t st);

// Same, one thread block per item that first copies its encoded block into
// shared memory; KVT_ETOOBIG when it does not fit.
int kvt_kivi_gather_dequant_launch(const struct kivi_plan &p,
				   const struct kvt_gpu_item *items, uint32_t n,
				   int *results, cudaStream_t st);

#endif
