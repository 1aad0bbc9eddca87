/* codec_internal.h - the table each codec implements; codec.c dispatches. */
#ifndef KVTIER_CODEC_INTERNAL_H
#define KVTIER_CODEC_INTERNAL_H

#include "kvtier/codec.h"

struct kvt_codec_ops {
	enum kvt_codec_id id;
	const char *name;
	/* Parameter check beyond the generic one in codec.c. */
	int (*check)(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
		     const struct kvt_tensor_desc *d);
	/* Payload bytes (header excluded) for this tensor. */
	size_t (*payload_size)(const struct kvt_codec_params *p,
			       enum kvt_kv_kind kind,
			       const struct kvt_tensor_desc *d);
	/* Fills the codec-specific header fields (bits, group, residual,
	 * n_salient); the generic ones are set by codec.c. */
	void (*fill_header)(const struct kvt_codec_params *p,
			    enum kvt_kv_kind kind,
			    const struct kvt_tensor_desc *d,
			    struct kvt_codec_header *h);
	/* Writes the payload (exactly payload_size bytes) after the header. */
	int (*encode)(const struct kvt_codec_params *p,
		      const struct kvt_codec_header *h, const void *src,
		      uint8_t *payload);
	/* Validates header fields and payload_len for this codec. */
	int (*validate)(const struct kvt_codec_header *h);
	/* Decodes a validated payload into fp32 [heads][tokens][dim]. */
	int (*decode_f32)(const struct kvt_codec_header *h,
			  const uint8_t *payload, float *dst);
	/* Optional: decodes a validated payload straight into the header's
	 * dtype. Returns 0, a negative code, or 1 when it does not cover this
	 * tensor (codec.c then decodes to fp32 and converts). */
	int (*decode_native)(const struct kvt_codec_header *h,
			     const uint8_t *payload, void *dst);
};

extern const struct kvt_codec_ops kvt_codec_raw_ops;
extern const struct kvt_codec_ops kvt_codec_kivi_ops;
extern const struct kvt_codec_ops kvt_codec_zipcache_ops;

/* Element count heads * tokens * dim of a header or descriptor. */
static inline size_t kvt_header_elems(const struct kvt_codec_header *h)
{
	return (size_t)h->heads * h->tokens * h->dim;
}

/* Rounds n up to a multiple of 4 (section alignment inside payloads). */
static inline size_t kvt_align4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

#endif
