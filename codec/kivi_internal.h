/* kivi_internal.h - KIVI layout and group arithmetic shared with the GPU path. */
#ifndef KVTIER_KIVI_INTERNAL_H
#define KVTIER_KIVI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/codec.h"

#define KVT_KIVI_MAX_GROUP 1024
#define KVT_KIVI_VALUE_ROWS 16 /* rows per SIMD value chunk */

/* Byte offsets of the payload sections (see kvtier/codec.h). */
struct kvt_kivi_layout {
	uint32_t tq;      /* quantized tokens */
	uint32_t ng;      /* key groups per head (tq / G) */
	uint32_t nc;      /* value groups per token (dim / G) */
	uint32_t wpg;     /* u32 code words per group (G * bits / 32) */
	size_t codes, scales, mins, residual, total;
};

/* 1 when bits is 2, 4 or 8 and a group of `group` codes fills whole words. */
int kvt_kivi_group_ok(unsigned bits, unsigned group);

/* Layout of a header whose fields are consistent (validated or built). */
void kvt_kivi_layout(const struct kvt_codec_header *h,
		     struct kvt_kivi_layout *l);

/* fp16 scale and minimum of a group spanning [mn, mx], and the fp32
 * reciprocal the encoder multiplies by (0 for a constant group). */
void kvt_kivi_group_params(float mn, float mx, unsigned bits,
			   uint16_t *scale, uint16_t *min, float *inv);

/* The scalar reference encoder (payload padding must be zeroed by the
 * caller). Returns 0 or -ENOMEM. */
int kvt_kivi_encode_ref(const struct kvt_codec_header *h, const void *src,
			uint8_t *payload);

/* 1 when this CPU runs the SIMD paths (AVX2 + F16C on x86-64). */
int kvt_kivi_simd_supported(void);

/* SIMD encode of the quantized sections (not the residual) of an fp16
 * tensor; tmp holds 4 * nc * KVT_KIVI_VALUE_ROWS + 1 floats. Returns 1 when done, 0 when the
 * shape is not covered (the caller falls back to the reference). */
int kvt_kivi_encode_simd(const struct kvt_codec_header *h, const void *src,
			 uint8_t *payload, const struct kvt_kivi_layout *l,
			 float *tmp);

/* SIMD decode of a validated fp16 payload into dst (fp16, residual
 * included). Returns 1 when done, 0 when not covered. */
int kvt_kivi_decode_simd(const struct kvt_codec_header *h,
			 const uint8_t *payload,
			 const struct kvt_kivi_layout *l, void *dst);

#endif
