/* raw.c - the identity codec: payload = the tensor in its own dtype. */
#include <errno.h>
#include <string.h>

#include "codec_internal.h"
#include "half.h"

static size_t raw_payload_size(const struct kvt_codec_params *p,
			       enum kvt_kv_kind kind,
			       const struct kvt_tensor_desc *d)
{
	(void)p;
	(void)kind;
	return (size_t)d->heads * d->tokens * d->dim * kvt_dtype_size(d->dtype);
}

static void raw_fill_header(const struct kvt_codec_params *p,
			    enum kvt_kv_kind kind,
			    const struct kvt_tensor_desc *d,
			    struct kvt_codec_header *h)
{
	(void)p;
	(void)kind;
	h->residual = d->tokens;
}

static int raw_encode(const struct kvt_codec_params *p,
		      const struct kvt_codec_header *h, const void *src,
		      uint8_t *payload)
{
	(void)p;
	memcpy(payload, src, h->payload_len);
	return 0;
}

static int raw_validate(const struct kvt_codec_header *h)
{
	size_t want = kvt_header_elems(h) * kvt_dtype_size(h->dtype);
	if (h->residual != h->tokens || h->payload_len != want || h->bits ||
	    h->high_bits || h->group || h->n_salient)
		return KVT_EFORMAT;
	return 0;
}

static int raw_decode_f32(const struct kvt_codec_header *h,
			  const uint8_t *payload, float *dst)
{
	kvt_to_f32(h->dtype, payload, dst, kvt_header_elems(h));
	return 0;
}

static int raw_decode_native(const struct kvt_codec_header *h,
			     const uint8_t *payload, void *dst)
{
	memcpy(dst, payload, h->payload_len);
	return 0;
}

const struct kvt_codec_ops kvt_codec_raw_ops = {
	.id = KVT_CODEC_RAW,
	.name = "raw",
	.check = NULL,
	.payload_size = raw_payload_size,
	.fill_header = raw_fill_header,
	.encode = raw_encode,
	.validate = raw_validate,
	.decode_f32 = raw_decode_f32,
	.decode_native = raw_decode_native,
};
