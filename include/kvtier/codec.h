/*
 * codec.h - KV block codecs: raw, KIVI, ZipCache.
 *
 * A codec turns a tensor [heads][tokens][dim] of one kind (keys or values)
 * into a self-describing byte string: a fixed header (struct kvt_codec_header,
 * serialised little-endian, KVT_CODEC_HEADER_BYTES long) followed by the
 * payload. Decoding needs nothing but those bytes.
 *
 * The CPU implementation is the reference; GPU kernels (kernels/) produce the
 * same codes bit for bit.
 *
 * ---- KIVI payload (codec id KVT_CODEC_KIVI), b bits, group G -------------
 * Let T = tokens, R = header.residual, the number of trailing tokens kept at
 * full precision: Tq = T - R quantized tokens. For keys Tq is a multiple of G;
 * the encoder picks Tq = floor(max(T - residual_param, 0) / G) * G, so that
 * R = T - Tq (R >= the residual parameter, unless T is small). Values use the
 * same Tq so both halves of a token are quantized together.
 * Per group, with x the fp32 inputs of the group:
 *     m  = min(x) + 0, M = max(x) + 0   (a zero bound is +0, whatever the
 *                                       signs and order of the zeros)
 *     mh = fp16 of m rounded toward -inf          (stored)
 *     sh = fp16 of (M - mh) / (2^b - 1) rounded toward +inf   (stored)
 *     inv = sh > 0 ? 1.0f / sh : 0.0f              (fp32)
 *     code = clamp(rint((x - mh) * inv), 0, 2^b - 1)   (round half to even)
 *     decode: x' = (float)code * sh + mh            (two roundings, no FMA)
 * so |x - x'| <= sh / 2 (up to fp32 rounding) for inputs of magnitude at
 * most 65504, the fp16 range of mh and sh. Larger bf16/fp32 inputs are not
 * supported (like non-finite ones): they decode to wrong values, without an
 * error (ZipCache with normalisers, the default, does cover them).
 * Sections, in order, each starting at a 4-byte aligned offset:
 *  keys (per channel, grouped along tokens), ng = Tq / G:
 *     codes  u32 [heads][ng][dim][G*b/32]   code of token j of the group at
 *                                           word (j*b)/32, bit (j*b)%32
 *     scales f16 [heads][ng][dim]
 *     mins   f16 [heads][ng][dim]
 *  values (per token, grouped along channels), nc = dim / G:
 *     codes  u32 [heads][Tq][nc][G*b/32]    channel c of the group likewise
 *     scales f16 [heads][Tq][nc]
 *     mins   f16 [heads][Tq][nc]
 *  residual: [heads][R][dim] in the header's dtype.
 *
 * ---- raw payload: [heads][tokens][dim] in the header's dtype.
 * ---- ZipCache payload (codec id KVT_CODEC_ZIPCACHE): header bits = low
 * bits, high_bits, n_salient; group and residual 0. Layout and arithmetic
 * are documented at the top of codec/zipcache.c.
 */
#ifndef KVTIER_CODEC_H
#define KVTIER_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVT_CODEC_MAGIC 0x5154564bu /* "KVTQ" little-endian */
#define KVT_CODEC_VERSION 1
#define KVT_CODEC_HEADER_BYTES 40

enum kvt_kv_kind {
	KVT_KIND_KEY = 0,
	KVT_KIND_VALUE = 1,
};

/* Description of a tensor [heads][tokens][dim]. */
struct kvt_tensor_desc {
	uint32_t heads;
	uint32_t tokens;
	uint32_t dim;
	enum kvt_dtype dtype;
};

/* Decoded form of the header that starts every encoded tensor. */
struct kvt_codec_header {
	uint32_t magic;        /* KVT_CODEC_MAGIC */
	uint8_t version;       /* KVT_CODEC_VERSION */
	uint8_t codec;         /* enum kvt_codec_id */
	uint8_t kind;          /* enum kvt_kv_kind */
	uint8_t dtype;         /* enum kvt_dtype of the input and the decoded output */
	uint8_t bits;          /* low bits (KIVI bits) */
	uint8_t high_bits;     /* ZipCache salient bits, else 0 */
	uint16_t group;        /* KIVI group size, else 0 */
	uint32_t heads;
	uint32_t tokens;
	uint32_t dim;
	uint32_t residual;     /* trailing full-precision tokens */
	uint32_t n_salient;    /* ZipCache salient tokens, else 0 */
	uint32_t payload_len;  /* bytes after the header */
	uint32_t reserved;     /* 0 */
};

/* "raw", "kivi", "zipcache", or NULL for an unknown id. */
const char *kvt_codec_name(enum kvt_codec_id id);

/* Parses a codec name; -EINVAL (KVT_ECODEC) for an unknown name. */
int kvt_codec_from_name(const char *name, enum kvt_codec_id *out);

/*
 * Checks params against a tensor: bits and group supported, group divides
 * dim for KIVI values, ZipCache ratio in range. Returns 0, -EINVAL for a bad
 * descriptor, or KVT_ECODEC with unsupported parameters.
 */
int kvt_codec_check(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
		    const struct kvt_tensor_desc *d);

/*
 * Exact size in bytes (header included) that kvt_codec_encode will write for
 * this tensor. Errors as kvt_codec_check.
 */
int kvt_codec_encoded_size(const struct kvt_codec_params *p,
			   enum kvt_kv_kind kind,
			   const struct kvt_tensor_desc *d, size_t *out);

/*
 * Encodes src ([heads][tokens][dim] of d->dtype) into dst (cap bytes).
 * *written gets the bytes written. Errors: those of kvt_codec_check,
 * -ENOBUFS when cap is below kvt_codec_encoded_size(), -ENOMEM.
 * Non-finite inputs are not supported (their codes are unspecified).
 */
int kvt_codec_encode(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
		     const struct kvt_tensor_desc *d, const void *src,
		     void *dst, size_t cap, size_t *written);

/*
 * Parses and validates the header of an encoded tensor of len bytes.
 * Here and in the decoders, src must be 4-byte aligned: the payload's u16
 * and u32 sections are read in place.
 * Errors: KVT_EFORMAT (bad magic, truncated, inconsistent sizes),
 * KVT_EVERSION, KVT_ECODEC (unknown codec).
 */
int kvt_codec_read_header(const void *src, size_t len,
			  struct kvt_codec_header *out);

/*
 * Decodes an encoded tensor into dst ([heads][tokens][dim] of the header's
 * dtype, cap bytes). *desc (may be NULL) gets the decoded shape. Errors: those
 * of kvt_codec_read_header, -ENOBUFS when cap is too small.
 */
int kvt_codec_decode(const void *src, size_t len, void *dst, size_t cap,
		     struct kvt_tensor_desc *desc);

/*
 * Like kvt_codec_decode but always writes fp32 ([heads][tokens][dim]).
 */
int kvt_codec_decode_f32(const void *src, size_t len, float *dst, size_t cap,
			 struct kvt_tensor_desc *desc);

/* ---------------------------------------------------------------- ZipCache saliency */

/*
 * Normalised attention scores of one layer (ZipCache saliency).
 * q: [n_q_heads][n_tokens][dim] fp32 queries, k: [n_kv_heads][n_tokens][dim]
 * fp32 keys; q head h uses kv head h / (n_q_heads / n_kv_heads) (GQA), so
 * n_q_heads must be a multiple of n_kv_heads. Attention is causal with scale
 * 1/sqrt(dim). scores (n_tokens floats) gets, per token j, the sum over heads
 * and over the probing queries i >= j of softmax(q_i K^T)[j], divided by the
 * number of probing queries that see j.
 * probe_ratio 1.0 (or more) uses every query (exact); below 1.0 the probe set
 * is the most recent 5% of queries plus a uniform random sample (seeded by
 * seed; the same seed gives the same scores) bringing the total to
 * round(probe_ratio * n_tokens) queries, at least one; the cost is about
 * probe_ratio of the exact one. Uses O(n_tokens * dim) scratch memory.
 * Errors: -EINVAL (NULL pointer, a zero size, n_q_heads not a multiple of
 * n_kv_heads, probe_ratio <= 0 or NaN), -ENOMEM.
 */
int kvt_zipcache_saliency(const float *q, uint32_t n_q_heads,
			  const float *k, uint32_t n_kv_heads,
			  uint32_t n_tokens, uint32_t dim, float probe_ratio,
			  uint64_t seed, float *scores);

#ifdef __cplusplus
}
#endif

#endif /* KVTIER_CODEC_H */
