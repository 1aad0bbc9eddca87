/* zip_host.c - ZipCache block sizes and salient sets on the host (every build). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kivi_geom_internal.h"

int kvt_zip_block_size(const struct kvt_zip_geom *g, int tokenwise,
		       uint32_t n_salient, size_t *k_stream, size_t *encoded)
{
	int rc = kvt_zip_geom_check(g);
	if (rc)
		return rc;
	if (n_salient > g->tokens || (tokenwise & ~1))
		return -EINVAL;
	struct zip_sect z;
	zip_layout(g, n_salient, !tokenwise, &z);
	if (k_stream)
		*k_stream = z.end;
	if (encoded)
		*encoded = 2 * (size_t)z.end;
	return 0;
}

struct ranked {
	float s;
	uint32_t i;
};

/* codec/zipcache.c's order: higher score first, then lower index. */
static int ranked_cmp(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	if (x->s != y->s)
		return x->s > y->s ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

int kvt_zip_salient_bitmap(const float *scores, uint32_t tokens,
			   uint32_t n_salient, uint32_t *bitmap)
{
	if (!bitmap || tokens == 0 || n_salient > tokens || (n_salient && !scores))
		return -EINVAL;
	memset(bitmap, 0, (tokens + 31) / 32 * 4);
	if (n_salient == 0)
		return 0;
	struct ranked *r = malloc((size_t)tokens * sizeof *r);
	if (!r)
		return -ENOMEM;
	for (uint32_t t = 0; t < tokens; t++)
		r[t] = (struct ranked){isnan(scores[t]) ? -INFINITY : scores[t], t};
	qsort(r, tokens, sizeof *r, ranked_cmp);
	for (uint32_t k = 0; k < n_salient; k++)
		bitmap[r[k].i / 32] |= 1u << (r[k].i % 32);
	free(r);
	return 0;
}
