/* kivi.c - placeholder until the codec lands: every call is KVT_ECODEC. */
#include "codec_internal.h"

static int kivi_unsupported(const struct kvt_codec_params *p,
			     enum kvt_kv_kind kind,
			     const struct kvt_tensor_desc *d)
{
	(void)p;
	(void)kind;
	(void)d;
	return KVT_ECODEC;
}

static int kivi_validate(const struct kvt_codec_header *h)
{
	(void)h;
	return KVT_ECODEC;
}

const struct kvt_codec_ops kvt_codec_kivi_ops = {
	.id = KVT_CODEC_KIVI,
	.name = "kivi",
	.check = kivi_unsupported,
	.validate = kivi_validate,
};
