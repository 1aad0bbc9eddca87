// kivi_quant.cuh - KIVI quantization of raw blocks into encoded blocks.
#ifndef KVTIER_KERNELS_KIVI_QUANT_CUH
#define KVTIER_KERNELS_KIVI_QUANT_CUH

#include "kivi.cuh"

#define QUANT_THREADS 256

// Groups of up to KVT_REG_G tokens: one pass, values kept in registers.
KVT_HD_FN void quant_key_regs(const struct kivi_plan &p, const uint8_t *raw,
			      size_t base, size_t gi, uint8_t *enc)
{
	const uint32_t dim = p.g.dim, grp = p.g.group, dt = p.g.dtype;
	float x[KVT_REG_G];
	KVT_UNROLL
	for (uint32_t j = 0; j < KVT_REG_G; j++)
		if (j < grp)
			x[j] = kvt_load_elem(raw, dt, base + (size_t)j * dim);
	uint32_t *words = (uint32_t *)(enc + p.k.codes) + gi * p.k.wpg;
	const struct kivi_group q = kivi_quant_regs_any(x, grp, p.g.bits, words);
	((uint16_t *)(enc + p.k.scales))[gi] = q.sh;
	((uint16_t *)(enc + p.k.mins))[gi] = q.mh;
}

// A key thread quantizes the G tokens of one channel of one group.
KVT_HD_FN void quant_key(const struct kivi_plan &p, const uint8_t *raw,
			 uint8_t *enc, uint32_t i)
{
	const uint32_t dim = p.g.dim, grp = p.g.group, bits = p.g.bits;
	const uint32_t per_word = 32u / bits, dt = p.g.dtype;
	const float qmax = (float)((1u << bits) - 1);
	const uint32_t d = i % dim, rest = i / dim;
	const uint32_t gl = rest % p.k.ng, h = rest / p.k.ng;
	const size_t base = ((size_t)h * p.g.tokens + (size_t)gl * grp) * dim + d;
	const size_t gi = ((size_t)h * p.k.ng + gl) * dim + d;
	if (grp <= KVT_REG_G) {
		quant_key_regs(p, raw, base, gi, enc);
		return;
	}
	float mn = kvt_load_elem(raw, dt, base), mx = mn;
	for (uint32_t j = 1; j < grp; j++) {
		float x = kvt_load_elem(raw, dt, base + (size_t)j * dim);
		mn = x < mn ? x : mn;
		mx = x > mx ? x : mx;
	}
	const struct kivi_group q = kivi_params(mn, mx, bits);
	((uint16_t *)(enc + p.k.scales))[gi] = q.sh;
	((uint16_t *)(enc + p.k.mins))[gi] = q.mh;
	uint32_t *words = (uint32_t *)(enc + p.k.codes) + gi * p.k.wpg;
	for (uint32_t w = 0; w < p.k.wpg; w++) {
		uint32_t acc = 0;
		for (uint32_t k = 0; k < per_word; k++) {
			const uint32_t j = w * per_word + k;
			float x = kvt_load_elem(raw, dt, base + (size_t)j * dim);
			acc |= kivi_code(x, q, qmax) << (k * bits);
		}
		words[w] = acc;
	}
}

KVT_HD_FN void quant_value(const struct kivi_plan &p,
				   const uint8_t *raw, uint8_t *enc, uint32_t i)
{
	const uint32_t dim = p.g.dim, grp = p.g.group, bits = p.g.bits;
	const uint32_t per_word = 32u / bits, dt = p.g.dtype;
	const float qmax = (float)((1u << bits) - 1);
	const uint32_t c = i % p.v.nc, r = i / p.v.nc; // r = head * tq + token
	const uint32_t h = r / p.v.tq, t = r % p.v.tq;
	const size_t base = ((size_t)h * p.g.tokens + t) * dim + (size_t)c * grp;
	const size_t gi = (size_t)r * p.v.nc + c;
	uint8_t *venc = enc + p.k_len;
	uint32_t *words = (uint32_t *)(venc + p.v.codes) + gi * p.v.wpg;
	if (grp <= KVT_REG_G) {
		float xs[KVT_REG_G];
		kivi_load_run(raw, dt, base, grp, xs);
		const struct kivi_group q = kivi_quant_regs_any(xs, grp, bits, words);
		((uint16_t *)(venc + p.v.scales))[gi] = q.sh;
		((uint16_t *)(venc + p.v.mins))[gi] = q.mh;
		return;
	}
	float mn = kvt_load_elem(raw, dt, base), mx = mn;
	for (uint32_t k = 1; k < grp; k++) {
		float x = kvt_load_elem(raw, dt, base + k);
		mn = x < mn ? x : mn;
		mx = x > mx ? x : mx;
	}
	const struct kivi_group q = kivi_params(mn, mx, bits);
	((uint16_t *)(venc + p.v.scales))[gi] = q.sh;
	((uint16_t *)(venc + p.v.mins))[gi] = q.mh;
	for (uint32_t w = 0; w < p.v.wpg; w++) {
		uint32_t acc = 0;
		for (uint32_t k = 0; k < per_word; k++) {
			float x = kvt_load_elem(raw, dt, base + w * per_word + k);
			acc |= kivi_code(x, q, qmax) << (k * bits);
		}
		words[w] = acc;
	}
}

// Zero bytes [from, to) of the stream (section padding is part of the format).
KVT_HD_FN void zero_bytes(uint8_t *s, uint32_t from, uint32_t to)
{
	for (uint32_t b = from; b < to; b++)
		s[b] = 0;
}

KVT_HD_FN void stream_frame(const struct kvt_kivi_sect &s,
				    const struct kvt_kivi_hdr &h,
				    const struct kivi_plan &p, uint8_t *st)
{
	for (int w = 0; w < 10; w++)
		((uint32_t *)st)[w] = h.w[w];
	zero_bytes(st, s.scales + s.n_groups * 2, s.mins);
	zero_bytes(st, s.mins + s.n_groups * 2, s.residual);
	zero_bytes(st, s.residual + p.g.heads * s.r * p.g.dim *
				    kvt_kg_esize(p.g.dtype), s.end);
}

// Work item i of one block: key groups, value groups, residual elements,
// then one item for the headers and padding.
KVT_HD_FN void quant_item(const struct kivi_plan &p, const uint8_t *raw,
			  uint8_t *enc, uint32_t i)
{
	if (i < p.wk)
		quant_key(p, raw, enc, i);
	else if (i < p.wk + p.wv)
		quant_value(p, raw + (size_t)p.half_elems * kvt_kg_esize(p.g.dtype),
			    enc, i - p.wk);
	else if (i < p.wk + p.wv + p.wr)
		kivi_residual(p, raw, NULL, NULL, enc, i - p.wk - p.wv, 1);
	else {
		stream_frame(p.k, p.hk, p, enc);
		stream_frame(p.v, p.hv, p, enc + p.k_len);
	}
}

// Enqueues the quantization of n items (device table); 0 or a kvtier code.
int kvt_kivi_quant_launch(const struct kivi_plan &p,
			  const struct kvt_gpu_item *items, uint32_t n,
			  cudaStream_t st);

#endif
