/* zipcache_internal.h - ZipCache payload layout, shared with tests and the GPU path. */
#ifndef KVTIER_ZIPCACHE_INTERNAL_H
#define KVTIER_ZIPCACHE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/codec.h"

/* Bits of the payload's first word. */
#define KVT_ZIP_FLAG_NORMS 1u /* per-channel normalisers present */

/* Byte offsets of the payload sections (see codec/zipcache.c). */
struct kvt_zip_layout {
	uint32_t n_sal, n_low; /* salient / ordinary tokens */
	uint32_t wl, wh;       /* u32 code words per row at low / high bits */
	int norms;             /* 1 when the normaliser section exists */
	size_t flags, bitmap, norm, scales, mins, low, high, total;
};

/* Layout of a header whose fields are consistent (validated or built),
 * with or without the normaliser section. */
void kvt_zip_layout(const struct kvt_codec_header *h, int norms,
		    struct kvt_zip_layout *l);

/* Number of salient tokens the encoder picks: round(ratio * tokens), or 0
 * without saliency scores. */
uint32_t kvt_zip_n_salient(const struct kvt_codec_params *p, uint32_t tokens);

/* 1 when bit t of the salient bitmap is set. */
static inline int kvt_zip_is_salient(const uint32_t *bitmap, uint32_t t)
{
	return (bitmap[t / 32] >> (t % 32)) & 1u;
}

/* fp16 normaliser of a channel whose largest magnitude is amax:
 * sqrt(amax) rounded to nearest, clamped to [2^-14, 65504]; 1.0 for amax 0. */
uint16_t kvt_zip_norm(float amax);

/* kvt_to_f32 / kvt_from_f32 with the same results, through F16C for fp16
 * where the CPU has it (zipcache_x86.c). */
void kvt_zip_to_f32(enum kvt_dtype dtype, const void *src, float *dst, size_t n);
void kvt_zip_from_f32(enum kvt_dtype dtype, const float *src, void *dst, size_t n);

#endif
