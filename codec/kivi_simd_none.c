/* kivi_simd_none.c - no SIMD path on this architecture: the reference runs. */
#include "kivi_internal.h"

int kvt_kivi_simd_supported(void)
{
	return 0;
}

int kvt_kivi_encode_simd(const struct kvt_codec_header *h, const void *src,
			 uint8_t *payload, const struct kvt_kivi_layout *l,
			 float *tmp)
{
	(void)h, (void)src, (void)payload, (void)l, (void)tmp;
	return 0;
}

int kvt_kivi_decode_simd(const struct kvt_codec_header *h,
			 const uint8_t *payload,
			 const struct kvt_kivi_layout *l, void *dst)
{
	(void)h, (void)payload, (void)l, (void)dst;
	return 0;
}
