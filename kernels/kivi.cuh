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

// The same, and every item's len (its encoded bytes) in 1 .. 1 GiB.
int kvt_zip_items_ok(const struct kvt_gpu_batch *b, uint32_t n);

struct kivi_group {
	uint16_t sh, mh; // stored fp16 scale and minimum
	float m, inv;    // decoded minimum, fp32 reciprocal of the scale
};

// kvt_kivi_group_params of codec/kivi.c.
KVT_HD_FN struct kivi_group kivi_params(float mn, float mx,
							 uint32_t bits)
{
	struct kivi_group r;
	// + 0 makes a zero bound +0 whatever order the group was reduced in,
	// as the CPU codec does.
	mn = KVT_FADD(mn, 0.0f);
	mx = KVT_FADD(mx, 0.0f);
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

// ---- register paths for groups of up to KVT_REG_G elements (the common
// G = 16 or 32): one pass of wide loads, min/max and codes from registers,
// codes packed with constant shifts (templates on the bit width).
#define KVT_REG_G 32u
#ifdef __CUDA_ARCH__
#define KVT_UNROLL _Pragma("unroll")
#else
#define KVT_UNROLL
#endif

KVT_HD_FN float kivi_elem16(uint32_t u, uint32_t dtype)
{
	return dtype == KVT_DTYPE_F16 ? __half2float(__ushort_as_half((uint16_t)u))
				      : kvt_u2f(u << 16);
}

// x[0, n) = n consecutive elements from element index base; 16-byte loads
// when the run is aligned.
KVT_HD_FN void kivi_load_run(const uint8_t *raw, uint32_t dt, size_t base,
			     uint32_t n, float *x)
{
	const uint32_t es = kvt_kg_esize(dt);
	const uint8_t *p = raw + base * es;
	if (((uintptr_t)p & 15u) || (n * es) % 16u) {
		KVT_UNROLL
		for (uint32_t k = 0; k < KVT_REG_G; k++)
			if (k < n)
				x[k] = kvt_load_elem(raw, dt, base + k);
		return;
	}
	if (dt == KVT_DTYPE_F32) {
		KVT_UNROLL
		for (uint32_t v = 0; v < KVT_REG_G / 4; v++) {
			if (v * 4 < n) {
				const uint4 q = ((const uint4 *)p)[v];
				x[4 * v] = kvt_u2f(q.x), x[4 * v + 1] = kvt_u2f(q.y);
				x[4 * v + 2] = kvt_u2f(q.z), x[4 * v + 3] = kvt_u2f(q.w);
			}
		}
		return;
	}
	KVT_UNROLL
	for (uint32_t v = 0; v < KVT_REG_G / 8; v++) {
		if (v * 8 < n) {
			const uint4 q = ((const uint4 *)p)[v];
			const uint32_t w[4] = {q.x, q.y, q.z, q.w};
			KVT_UNROLL
			for (uint32_t e = 0; e < 8; e++)
				x[8 * v + e] = kivi_elem16((w[e / 2] >> (16 * (e % 2))) & 0xffffu, dt);
		}
	}
}

// Quantizes x[0, g) (g <= KVT_REG_G) in the CPU's order: scans for min and
// max, then writes g * BITS / 32 code words to words.
template <uint32_t BITS>
KVT_HD_FN struct kivi_group kivi_quant_regs(const float *x, uint32_t g,
					    uint32_t *words)
{
	float mn = x[0], mx = x[0];
	KVT_UNROLL
	for (uint32_t k = 1; k < KVT_REG_G; k++) {
		if (k < g) {
			mn = x[k] < mn ? x[k] : mn;
			mx = x[k] > mx ? x[k] : mx;
		}
	}
	const struct kivi_group q = kivi_params(mn, mx, BITS);
	const float qmax = (float)((1u << BITS) - 1);
	uint32_t w[KVT_REG_G * BITS / 32];
	KVT_UNROLL
	for (uint32_t i = 0; i < KVT_REG_G * BITS / 32; i++)
		w[i] = 0;
	KVT_UNROLL
	for (uint32_t k = 0; k < KVT_REG_G; k++)
		if (k < g)
			w[k * BITS / 32] |= kivi_code(x[k], q, qmax) << ((k * BITS) % 32);
	KVT_UNROLL
	for (uint32_t i = 0; i < KVT_REG_G * BITS / 32; i++)
		if (i < g * BITS / 32)
			words[i] = w[i];
	return q;
}

KVT_HD_FN struct kivi_group kivi_quant_regs_any(const float *x, uint32_t g,
						uint32_t bits, uint32_t *words)
{
	if (bits == 2)
		return kivi_quant_regs<2>(x, g, words);
	if (bits == 4)
		return kivi_quant_regs<4>(x, g, words);
	return kivi_quant_regs<8>(x, g, words);
}

KVT_HD_FN uint32_t kivi_out16(float v, uint32_t dt)
{
	return dt == KVT_DTYPE_F16 ? __half_as_ushort(__float2half_rn(v))
				   : kvt_f32_to_bf16_any(v);
}

// Decodes one code word into its 32 / BITS consecutive elements at element
// index base of out, with 16-byte (or 8-byte) stores when aligned.
template <uint32_t BITS>
KVT_HD_FN void kivi_decode_word(uint32_t word, float s, float m, uint32_t dt,
				uint8_t *out, size_t base)
{
	const uint32_t PW = 32 / BITS, mask = (1u << BITS) - 1;
	float v[32 / BITS];
	KVT_UNROLL
	for (uint32_t k = 0; k < PW; k++)
		v[k] = kivi_decode1((word >> (k * BITS)) & mask, s, m);
	uint8_t *p = out + base * kvt_kg_esize(dt);
	if (dt == KVT_DTYPE_F32 && ((uintptr_t)p & 15u) == 0) {
		KVT_UNROLL
		for (uint32_t i = 0; i < PW / 4; i++) {
			uint4 q;
			q.x = kvt_f2u(v[4 * i]), q.y = kvt_f2u(v[4 * i + 1]);
			q.z = kvt_f2u(v[4 * i + 2]), q.w = kvt_f2u(v[4 * i + 3]);
			((uint4 *)p)[i] = q;
		}
		return;
	}
	if (dt != KVT_DTYPE_F32 && ((uintptr_t)p & 7u) == 0) {
		uint32_t h[32 / BITS / 2];
		KVT_UNROLL
		for (uint32_t i = 0; i < PW / 2; i++)
			h[i] = kivi_out16(v[2 * i], dt) | kivi_out16(v[2 * i + 1], dt) << 16;
		if (PW / 2 >= 4 && ((uintptr_t)p & 15u) == 0) {
			KVT_UNROLL
			for (uint32_t i = 0; i * 8 < PW; i++) {
				uint4 q;
				q.x = h[4 * i], q.y = h[4 * i + 1];
				q.z = h[4 * i + 2], q.w = h[4 * i + 3];
				((uint4 *)p)[i] = q;
			}
		} else {
			KVT_UNROLL
			for (uint32_t i = 0; i < PW / 4; i++) {
				uint2 q;
				q.x = h[2 * i], q.y = h[2 * i + 1];
				((uint2 *)p)[i] = q;
			}
		}
		return;
	}
	KVT_UNROLL
	for (uint32_t k = 0; k < PW; k++)
		kvt_store_elem(out, dt, base + k, v[k]);
}

KVT_HD_FN void kivi_decode_word_any(uint32_t word, float s, float m,
				    uint32_t bits, uint32_t dt, uint8_t *out,
				    size_t base)
{
	if (bits == 2)
		kivi_decode_word<2>(word, s, m, dt, out, base);
	else if (bits == 4)
		kivi_decode_word<4>(word, s, m, dt, out, base);
	else
		kivi_decode_word<8>(word, s, m, dt, out, base);
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
