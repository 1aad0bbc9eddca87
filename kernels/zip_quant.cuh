// zip_quant.cuh - ZipCache quantization on the GPU (codec/zipcache.c's
// format and arithmetic): per-thread bodies shared by the kernel and its
// CPU emulation.
#ifndef KVTIER_KERNELS_ZIP_QUANT_CUH
#define KVTIER_KERNELS_ZIP_QUANT_CUH

#include "zip_dequant.cuh"

#define ZIPQ_THREADS 128
#define ZIPQ_MAX_DIM 1024u

// What one thread block (one stream half of one head of one block) needs.
struct zipq_plan {
	struct kvt_zip_geom g;
	struct zip_sect z;     // layout of each stream (K and V alike)
	uint32_t norms;        // 1: channel-separable, 0: plain tokenwise
	uint32_t bm_words;     // words of one bitmap
	uint32_t half_elems;   // elements of one raw half
};

// Input element c of row t of head hd, normalised when r is given.
KVT_HD_FN float zipq_xn(const struct zipq_plan &p, const uint8_t *raw,
			uint32_t hd, uint32_t t, uint32_t c, const float *r)
{
	const size_t i = ((size_t)hd * p.g.tokens + t) * p.g.dim + c;
	const float x = kvt_load_elem(raw, p.g.dtype, i);
	return r ? KVT_FMUL(x, r[c]) : x;
}

// Largest magnitude of channel c over the tokens of head hd, as the input
// dtype's bits with the sign cleared (ordered like the magnitudes).
KVT_HD_FN float zipq_amax(const struct zipq_plan &p, const uint8_t *raw,
			  uint32_t hd, uint32_t c)
{
	uint32_t m = 0;
	for (uint32_t t = 0; t < p.g.tokens; t++) {
		const size_t i = ((size_t)hd * p.g.tokens + t) * p.g.dim + c;
		uint32_t a = p.g.dtype == KVT_DTYPE_F32
				     ? ((const uint32_t *)raw)[i] & 0x7fffffffu
				     : ((const uint16_t *)raw)[i] & 0x7fffu;
		m = a > m ? a : m;
	}
	if (p.g.dtype == KVT_DTYPE_F32)
		return kvt_u2f(m);
	return kivi_elem16(m, p.g.dtype);
}

// kvt_zip_norm: sqrt rounded to nearest fp16, clamped; 1.0 for 0.
KVT_HD_FN uint16_t zipq_norm(float amax)
{
	if (!(amax > 0.0f))
		return 0x3c00u;
	float n = sqrtf(amax);
	n = n < 6.103515625e-05f ? 6.103515625e-05f : n;
	n = n > KVT_F16_MAX ? KVT_F16_MAX : n;
	return __half_as_ushort(__float2half_rn(n));
}

// codec/zipcache.c row_minmax over xn: four chains of eight lanes from 32
// elements on, combined in the same order, then the tail, so ties between
// signed zeros resolve as there.
KVT_HD_FN void zipq_minmax(const struct zipq_plan &p, const uint8_t *raw,
			   uint32_t hd, uint32_t t, const float *r, float *mn_out,
			   float *mx_out)
{
	const uint32_t n = p.g.dim;
	float a = zipq_xn(p, raw, hd, t, 0, r), b = a;
	uint32_t c = 0;
	if (n >= 32) {
		float mn[32], mx[32]; // [chain * 8 + lane]
		KVT_UNROLL
		for (uint32_t k = 0; k < 32; k++)
			mn[k] = mx[k] = zipq_xn(p, raw, hd, t, k, r);
		for (c = 32; c + 32 <= n; c += 32) {
			KVT_UNROLL
			for (uint32_t k = 0; k < 32; k++) {
				const float v = zipq_xn(p, raw, hd, t, c + k, r);
				mn[k] = v < mn[k] ? v : mn[k];
				mx[k] = v > mx[k] ? v : mx[k];
			}
		}
		KVT_UNROLL
		for (uint32_t j = 1; j < 4; j++) {
			KVT_UNROLL
			for (uint32_t k = 0; k < 8; k++) {
				mn[k] = mn[8 * j + k] < mn[k] ? mn[8 * j + k] : mn[k];
				mx[k] = mx[8 * j + k] > mx[k] ? mx[8 * j + k] : mx[k];
			}
		}
		KVT_UNROLL
		for (uint32_t k = 0; k < 8; k++) {
			a = mn[k] < a ? mn[k] : a;
			b = mx[k] > b ? mx[k] : b;
		}
	}
	for (; c < n; c++) {
		const float v = zipq_xn(p, raw, hd, t, c, r);
		a = v < a ? v : a;
		b = v > b ? v : b;
	}
	*mn_out = a;
	*mx_out = b;
}

// Quantizes row t of head hd into the stream s; bm is the block's salient
// bitmap (read from the input: other thread blocks write the stream's copy).
KVT_HD_FN void zipq_row(const struct zipq_plan &p, const uint8_t *raw,
			uint8_t *s, const uint32_t *bm, uint32_t hd, uint32_t t,
			const float *r)
{
	const struct zip_sect &z = p.z;
	const int sal = (bm[t / 32] >> (t % 32)) & 1u;
	uint32_t before = 0;
	for (uint32_t k = 0; k < t / 32; k++)
		before += KVT_POPC(bm[k]);
	before += KVT_POPC(bm[t / 32] & ((1u << (t % 32)) - 1u));
	const uint32_t bits = sal ? p.g.high_bits : p.g.bits, per_word = 32u / bits;
	const uint32_t nw = sal ? z.wh : z.wl, rows = sal ? z.n_sal : z.n_low;
	const float qmax = (float)((1u << bits) - 1);
	float mn, mx;
	zipq_minmax(p, raw, hd, t, r, &mn, &mx);
	const struct kivi_group q = kivi_params(mn, mx, bits);
	const size_t ri = (size_t)hd * p.g.tokens + t;
	((uint16_t *)(s + z.scales))[ri] = q.sh;
	((uint16_t *)(s + z.mins))[ri] = q.mh;
	uint32_t *words = (uint32_t *)(s + (sal ? z.high : z.low)) +
			  ((size_t)hd * rows + (sal ? before : t - before)) * nw;
	for (uint32_t w = 0; w < nw; w++) {
		uint32_t acc = 0;
		for (uint32_t k = 0; k < per_word; k++) {
			const uint32_t c = w * per_word + k;
			if (c < p.g.dim)
				acc |= kivi_code(zipq_xn(p, raw, hd, t, c, r), q, qmax) << (k * bits);
		}
		words[w] = acc;
	}
}

// Header, flags, bitmap and section padding of stream s of kind `kind`.
KVT_HD_FN void zipq_frame(const struct zipq_plan &p, uint8_t *s, uint32_t kind,
			  const uint32_t *bitmap)
{
	const struct zip_sect &z = p.z;
	uint32_t *w = (uint32_t *)s;
	w[0] = KVT_KIVI_MAGIC;
	w[1] = 1u | 2u << 8 | kind << 16 | (uint32_t)p.g.dtype << 24;
	w[2] = (uint32_t)p.g.bits | (uint32_t)p.g.high_bits << 8;
	w[3] = p.g.heads, w[4] = p.g.tokens, w[5] = p.g.dim;
	w[6] = 0, w[7] = z.n_sal, w[8] = z.end - KVT_KIVI_HEADER_BYTES, w[9] = 0;
	w[10] = p.norms ? ZIP_FLAG_NORMS : 0;
	for (uint32_t i = 0; i < p.bm_words; i++)
		((uint32_t *)(s + z.bitmap))[i] = bitmap[i];
	const uint32_t nn = p.g.heads * p.g.dim, nr = p.g.heads * p.g.tokens;
	if (p.norms && nn % 2)
		((uint16_t *)(s + z.norm))[nn] = 0;
	if (nr % 2) {
		((uint16_t *)(s + z.scales))[nr] = 0;
		((uint16_t *)(s + z.mins))[nr] = 0;
	}
}

// Enqueues the quantization of n items (device table) with one salient
// bitmap per item (device, bm_words each).
int kvt_zip_quant_launch(const struct zipq_plan &p,
			 const struct kvt_gpu_item *items, uint32_t n,
			 const uint32_t *bitmaps, cudaStream_t st);

// Plan of a geometry; 0 or -EINVAL / KVT_ECODEC.
int kvt_zipq_plan(const struct kvt_zip_geom *g, int tokenwise, uint32_t n_sal,
		  struct zipq_plan *p);

#endif
