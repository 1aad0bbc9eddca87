// kivi.cuh - KIVI arithmetic shared by the quantize and dequantize kernels.
// Every rounding step is spelled out (KVT_FSUB/FMUL/FDIV: the _rn
// intrinsics on the GPU; __float2half_rd/_ru, rintf) so the GPU does exactly what codec/kivi.c does
// with -ffp-contract=off: same codes, same scales and minima, same decode.
#ifndef KVTIER_KERNELS_KIVI_CUH
#define KVTIER_KERNELS_KIVI_CUH

#include "common.cuh"

extern "C" {
#include "kivi_geom_internal.h"
}

#define KVT_F16_MAX 65504.0f

// Everything a kernel needs about one block's geometry, passed by value.
struct kivi_plan {
	struct kvt_kivi_geom g;
	struct kvt_kivi_sect k, v;
	struct kvt_kivi_hdr hk, hv;
	uint32_t half_elems; // elements of one raw half (K or V)
	uint32_t k_len;      // bytes of the K stream
	uint32_t enc_len;    // bytes of the encoded block
	uint32_t wk;         // key work items: heads * ng * dim
	uint32_t wv;         // value work items (groups to quantize, words to decode)
	uint32_t wr;         // residual elements, both halves
	uint32_t work;       // wk + wv + wr (+1 for the header item of quantize)
};

// Fills *p for the quantizer (quant = 1) or the dequantizer; 0 or the
// code of kvt_kivi_geom_check.
int kvt_kivi_plan(const struct kvt_kivi_geom *g, int quant, struct kivi_plan *p);

// Checks that every item's pointers are 4-byte aligned and not NULL.
int kvt_kivi_items_ok(const struct kvt_gpu_batch *b, uint32_t n);

struct kivi_group {
	uint16_t sh, mh; // stored fp16 scale and minimum
	float m, inv;    // decoded minimum, fp32 reciprocal of the scale
};

// kvt_kivi_group_params of codec/kivi.c.
KVT_HD_FN struct kivi_group kivi_params(float mn, float mx,
							 uint32_t bits)
{
	struct kivi_group r;
	if (mn < -KVT_F16_MAX)
		mn = -KVT_F16_MAX;
	__half mh = __float2half_rd(mn);
	r.m = __half2float(mh);
	float range = KVT_FDIV(KVT_FSUB(mx, r.m), (float)((1u << bits) - 1));
	if (range > KVT_F16_MAX)
		range = KVT_F16_MAX;
	__half sh = __float2half_ru(range);
	float s = __half2float(sh);
	r.sh = __half_as_ushort(sh);
	r.mh = __half_as_ushort(mh);
	r.inv = s > 0.0f ? KVT_FDIV(1.0f, s) : 0.0f;
	return r;
}

KVT_HD_FN uint32_t kivi_code(float x, const struct kivi_group &p,
					      float qmax)
{
	float v = rintf(KVT_FMUL(KVT_FSUB(x, p.m), p.inv));
	v = v < 0.0f ? 0.0f : v;
	v = v > qmax ? qmax : v;
	return (uint32_t)(int32_t)v;
}

KVT_HD_FN float kivi_decode1(uint32_t code, float s, float m)
{
	return KVT_FADD(KVT_FMUL((float)code, s), m);
}

KVT_HD_FN float kivi_h2f(uint16_t h)
{
	return __half2float(__ushort_as_half(h));
}

// Residual element e (both halves, K first): copies the stored bits.
// to_enc: raw -> encoded stream, else encoded -> raw.
KVT_HD_FN void kivi_residual(const struct kivi_plan &p,
					      const uint8_t *raw_c, uint8_t *raw,
					      const uint8_t *enc_c, uint8_t *enc,
					      uint32_t e, int to_enc)
{
	const uint32_t per_half = p.wr / 2, dim = p.g.dim, r = p.k.r;
	const uint32_t hv = e / per_half, e2 = e % per_half;
	const uint32_t h = e2 / (r * dim), rem = e2 % (r * dim);
	const size_t ri = (size_t)hv * p.half_elems +
			  ((size_t)h * p.g.tokens + p.k.tq) * dim + rem;
	const size_t off = (hv ? p.k_len + p.v.residual : p.k.residual);
	if (kvt_kg_esize(p.g.dtype) == 4) {
		const size_t ei = off / 4 + e2;
		if (to_enc)
			((uint32_t *)enc)[ei] = ((const uint32_t *)raw_c)[ri];
		else
			((uint32_t *)raw)[ri] = ((const uint32_t *)enc_c)[ei];
	} else {
		const size_t ei = off / 2 + e2;
		if (to_enc)
			((uint16_t *)enc)[ei] = ((const uint16_t *)raw_c)[ri];
		else
			((uint16_t *)raw)[ri] = ((const uint16_t *)enc_c)[ei];
	}
}

#endif
