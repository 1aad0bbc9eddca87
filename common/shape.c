/* shape.c - dtype and shape helpers. */
#include <errno.h>

#include "kvtier/kvtier.h"

size_t kvt_dtype_size(enum kvt_dtype dtype)
{
	switch (dtype) {
	case KVT_DTYPE_F16: return 2;
	case KVT_DTYPE_BF16: return 2;
	case KVT_DTYPE_F32: return 4;
	}
	return 0;
}

const char *kvt_dtype_name(enum kvt_dtype dtype)
{
	switch (dtype) {
	case KVT_DTYPE_F16: return "f16";
	case KVT_DTYPE_BF16: return "bf16";
	case KVT_DTYPE_F32: return "f32";
	}
	return "?";
}

const char *kvt_tier_name(enum kvt_tier_kind kind)
{
	static const char *const names[KVT_TIER_COUNT] = {"gpu", "host", "disk"};
	return (unsigned)kind < KVT_TIER_COUNT ? names[kind] : "?";
}

int kvt_shape_check(const struct kvt_shape *s)
{
	if (!s || kvt_dtype_size(s->dtype) == 0)
		return -EINVAL;
	if (s->n_layers < 1 || s->n_layers > KVT_MAX_LAYERS)
		return -EINVAL;
	if (s->n_kv_heads < 1 || s->n_kv_heads > KVT_MAX_KV_HEADS)
		return -EINVAL;
	if (s->head_dim < 1 || s->head_dim > KVT_MAX_HEAD_DIM)
		return -EINVAL;
	if (s->block_tokens < 1 || s->block_tokens > KVT_MAX_BLOCK_TOKENS)
		return -EINVAL;
	return 0;
}

size_t kvt_block_bytes(const struct kvt_shape *s)
{
	return 2 * (size_t)s->n_kv_heads * s->block_tokens * s->head_dim *
	       kvt_dtype_size(s->dtype);
}
