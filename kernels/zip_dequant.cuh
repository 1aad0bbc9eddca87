// zip_dequant.cuh - ZipCache decoding on the GPU (codec/zipcache.c's
// format): layout, checks and per-thread bodies, shared by the kernel and
// its CPU emulation.
#ifndef KVTIER_KERNELS_ZIP_DEQUANT_CUH
#define KVTIER_KERNELS_ZIP_DEQUANT_CUH

#include "kivi.cuh"

#define ZIP_THREADS 256
#define ZIP_FLAG_NORMS 1u

#ifdef __CUDA_ARCH__
#define KVT_POPC(x) __popc(x)
#else
#define KVT_POPC(x) __builtin_popcount(x)
#endif

// Parses the stream at s (avail bytes left in the block) as `kind`; 1 and
// *z when its header and flags are those of a ZipCache stream of g.
KVT_HD_FN int zip_stream_ok(const struct kvt_zip_geom &g, const uint8_t *s,
			    uint32_t avail, uint32_t kind, struct zip_sect *z)
{
	if (avail < KVT_KIVI_HEADER_BYTES + 4)
		return 0;
	const uint32_t *w = (const uint32_t *)s;
	const uint32_t w1 = 1u | 2u << 8 | kind << 16 | (uint32_t)g.dtype << 24;
	const uint32_t w2 = (uint32_t)g.bits | (uint32_t)g.high_bits << 8;
	if (w[0] != KVT_KIVI_MAGIC || w[1] != w1 || w[2] != w2 ||
	    w[3] != g.heads || w[4] != g.tokens || w[5] != g.dim || w[6] != 0 ||
	    w[7] > g.tokens || w[9] != 0 || w[10] > ZIP_FLAG_NORMS)
		return 0;
	zip_layout(&g, w[7], w[10] & ZIP_FLAG_NORMS, z);
	return z->end - KVT_KIVI_HEADER_BYTES == w[8] && z->end <= avail;
}

// The bitmap has exactly n_sal bits, none past the last token.
KVT_HD_FN int zip_bitmap_ok(const struct kvt_zip_geom &g, const uint8_t *s,
			    const struct zip_sect &z)
{
	const uint32_t *bm = (const uint32_t *)(s + z.bitmap);
	const uint32_t nw = (g.tokens + 31) / 32;
	uint32_t count = 0;
	for (uint32_t i = 0; i < nw; i++)
		count += KVT_POPC(bm[i]);
	if (g.tokens % 32 && (bm[nw - 1] >> (g.tokens % 32)))
		return 0;
	return count == z.n_sal;
}

// Normalisers tid, tid + nt, ... are positive and finite fp16.
KVT_HD_FN int zip_norms_ok(const struct kvt_zip_geom &g, const uint8_t *s,
			   const struct zip_sect &z, uint32_t tid, uint32_t nt)
{
	const uint16_t *n = (const uint16_t *)(s + z.norm);
	int ok = 1;
	for (uint32_t i = tid; z.norms && i < g.heads * g.dim; i += nt)
		ok &= (n[i] & 0x8000u) == 0 && (n[i] & 0x7fffu) != 0 &&
		      (n[i] & 0x7c00u) != 0x7c00u;
	return ok;
}

// Work item i of one stream: code word w of token t of head hd (rows of
// ordinary tokens have fewer words; their extra items do nothing).
KVT_HD_FN void zip_decode_item(const struct kvt_zip_geom &g, const uint8_t *s,
			       const struct zip_sect &z, uint8_t *raw,
			       uint32_t i)
{
	const uint32_t w = i % z.wh, rt = i / z.wh;
	const uint32_t t = rt % g.tokens, hd = rt / g.tokens;
	const uint32_t *bm = (const uint32_t *)(s + z.bitmap);
	const int sal = (bm[t / 32] >> (t % 32)) & 1u;
	const uint32_t nw = sal ? z.wh : z.wl;
	if (w >= nw)
		return;
	uint32_t before = 0; // salient tokens before t
	for (uint32_t k = 0; k < t / 32; k++)
		before += KVT_POPC(bm[k]);
	before += KVT_POPC(bm[t / 32] & ((1u << (t % 32)) - 1u));
	const uint32_t rank = sal ? before : t - before;
	const uint32_t rows = sal ? z.n_sal : z.n_low;
	const uint32_t *words = (const uint32_t *)(s + (sal ? z.high : z.low));
	const uint32_t word = words[((size_t)hd * rows + rank) * nw + w];
	const uint32_t bits = sal ? g.high_bits : g.bits, per_word = 32u / bits;
	const uint32_t mask = (1u << bits) - 1;
	const size_t r = (size_t)hd * g.tokens + t;
	const float sc = kivi_h2f(((const uint16_t *)(s + z.scales))[r]);
	const float mn = kivi_h2f(((const uint16_t *)(s + z.mins))[r]);
	const uint16_t *norm = (const uint16_t *)(s + z.norm) + (size_t)hd * g.dim;
	for (uint32_t k = 0; k < per_word; k++) {
		const uint32_t c = w * per_word + k;
		if (c >= g.dim)
			break;
		float v = kivi_decode1((word >> (k * bits)) & mask, sc, mn);
		if (z.norms)
			v = KVT_FMUL(v, kivi_h2f(norm[c]));
		kvt_store_elem(raw, g.dtype, r * g.dim + c, v);
	}
}

// Enqueues the decoding of n items (device table), one thread block each
// with smem bytes of shared memory; results[i] gets KVT_EFORMAT for a bad
// block.
int kvt_zip_dequant_launch(const struct kvt_zip_geom &g,
			   const struct kvt_gpu_item *items, uint32_t n,
			   size_t smem, int *results, cudaStream_t st);

#endif
