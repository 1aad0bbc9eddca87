/*
 * salient.h - the salient token set of ZipCache (internal, shared by the
 * CPU codec and the GPU host code so both choose exactly the same tokens).
 */
#ifndef KVTIER_COMMON_SALIENT_H
#define KVTIER_COMMON_SALIENT_H

#include <stdint.h>

/*
 * Sets in bitmap ((tokens + 31) / 32 words, cleared first) the n_salient
 * tokens with the highest scores; ties go to the lower index and NaN ranks
 * lowest, so the choice is the same on every platform. scores may be NULL
 * when n_salient is 0. Returns 0, -EINVAL (n_salient > tokens, NULL
 * bitmap, NULL scores with n_salient > 0) or -ENOMEM.
 */
int kvt_salient_bitmap(const float *scores, uint32_t tokens,
		       uint32_t n_salient, uint32_t *bitmap);

#endif
