/* kivi_geom.c - KIVI block geometry checks and sizes (host only, every build). */
#include <errno.h>

#include "kivi_geom_internal.h"

/* The codec's own checks (codec.c desc_check, kivi.c kivi_check), restated
 * for a whole block; the kernels also need 32-bit offsets. */
int kvt_kivi_geom_check(const struct kvt_kivi_geom *g)
{
	if (!g || g->heads == 0 || g->dim == 0 || g->tokens == 0)
		return -EINVAL;
	if (g->dtype != KVT_DTYPE_F16 && g->dtype != KVT_DTYPE_BF16 &&
	    g->dtype != KVT_DTYPE_F32)
		return -EINVAL;
	if (g->heads > KVT_MAX_KV_HEADS * 4 || g->dim > KVT_MAX_HEAD_DIM)
		return -EINVAL;
	uint64_t elems = (uint64_t)g->heads * g->tokens * g->dim;
	if (elems * 4 > (1ull << 30)) /* raw block and its stream < 2 GiB */
		return -EINVAL;
	if (g->bits != 2 && g->bits != 4 && g->bits != 8)
		return KVT_ECODEC;
	if (g->group < 1 || g->group > 1024 || (g->group * g->bits) % 32)
		return KVT_ECODEC;
	if (g->dim % g->group)
		return KVT_ECODEC;
	return 0;
}

int kvt_kivi_geom_sizes(const struct kvt_kivi_geom *g, size_t *raw,
			size_t *k_stream, size_t *encoded)
{
	int rc = kvt_kivi_geom_check(g);
	if (rc)
		return rc;
	struct kvt_kivi_sect k, v;
	kvt_kivi_sect_of(g, 0, &k);
	kvt_kivi_sect_of(g, 1, &v);
	if (raw)
		*raw = 2 * (size_t)g->heads * g->tokens * g->dim *
		       kvt_kg_esize(g->dtype);
	if (k_stream)
		*k_stream = k.end;
	if (encoded)
		*encoded = (size_t)k.end + v.end;
	return 0;
}

int kvt_zip_geom_check(const struct kvt_zip_geom *g)
{
	if (!g || g->heads == 0 || g->dim == 0 || g->tokens == 0)
		return -EINVAL;
	if (g->dtype != KVT_DTYPE_F16 && g->dtype != KVT_DTYPE_BF16 &&
	    g->dtype != KVT_DTYPE_F32)
		return -EINVAL;
	if (g->heads > KVT_MAX_KV_HEADS * 4 || g->dim > KVT_MAX_HEAD_DIM ||
	    (uint64_t)g->heads * g->tokens * g->dim * 4 > (1ull << 30))
		return -EINVAL;
	int bits_ok = g->bits == 2 || g->bits == 4 || g->bits == 8;
	int high_ok = g->high_bits == 4 || g->high_bits == 8;
	return bits_ok && high_ok && g->high_bits > g->bits ? 0 : KVT_ECODEC;
}
