/* zipcache.c - placeholder until the codec lands: every call is KVT_ECODEC. */
#include "codec_internal.h"

static int zipcache_unsupported(const struct kvt_codec_params *p,
			     enum kvt_kv_kind kind,
			     const struct kvt_tensor_desc *d)
{
	(void)p;
	(void)kind;
	(void)d;
	return KVT_ECODEC;
}

static int zipcache_validate(const struct kvt_codec_header *h)
{
	(void)h;
	return KVT_ECODEC;
}

const struct kvt_codec_ops kvt_codec_zipcache_ops = {
	.id = KVT_CODEC_ZIPCACHE,
	.name = "zipcache",
	.check = zipcache_unsupported,
	.validate = zipcache_validate,
};

int kvt_zipcache_saliency(const float *q, uint32_t n_q_heads,
			  const float *k, uint32_t n_kv_heads,
			  uint32_t n_tokens, uint32_t dim, float probe_ratio,
			  uint64_t seed, float *scores)
{
	(void)q, (void)n_q_heads, (void)k, (void)n_kv_heads, (void)n_tokens;
	(void)dim, (void)probe_ratio, (void)seed, (void)scores;
	return KVT_ECODEC;
}
