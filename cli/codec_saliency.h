/* codec_saliency.h - where `kvtier codec` gets ZipCache token saliency from. */
#ifndef KVTIER_CLI_CODEC_SALIENCY_H
#define KVTIER_CLI_CODEC_SALIENCY_H

#include <stdint.h>

#include "kvtier/codec.h"

struct kvt_cli_saliency {
	const char *queries; /* Q.npy [q_heads, tokens, dim]: compute scores */
	const char *keys;    /* K.npy [kv_heads, tokens, dim]; NULL: the input */
	const char *scores;  /* S.npy with `tokens` elements: use as is */
	float probe;         /* probe ratio (1.0: exact) */
	uint64_t seed;
	int quiet;
};

/* 1 when any saliency source is given. */
int kvt_cli_saliency_given(const struct kvt_cli_saliency *s);

/*
 * Per-token scores for a tensor of `tokens` tokens: read from s->scores or
 * computed from s->queries and the keys (s->keys, else the input keys
 * `in`/`in_desc`, which may be NULL when the input holds values). On success
 * *out is a malloc'd array of tokens floats. Returns 0, or 1 after printing
 * the reason.
 */
int kvt_cli_saliency_get(const struct kvt_cli_saliency *s, uint32_t tokens,
			 const struct kvt_tensor_desc *in_desc, const void *in,
			 float **out);

/* `kvtier codec saliency`: writes the scores to a 1-D float32 .npy. */
int kvt_cli_saliency_cmd(int argc, char **argv);

#endif
