/* salient.c - see salient.h. */
#include "salient.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ranked {
	float s;
	uint32_t i;
};

/* Higher score first, then lower index: a total order, so the choice is
 * the same whatever qsort does with ties. */
static int ranked_cmp(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	if (x->s != y->s)
		return x->s > y->s ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

int kvt_salient_bitmap(const float *scores, uint32_t tokens,
		       uint32_t n_salient, uint32_t *bitmap)
{
	if (!bitmap || n_salient > tokens || (n_salient && !scores))
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
