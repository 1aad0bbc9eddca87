/* zip_host.c - ZipCache block sizes and salient sets on the host (every build). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kivi_geom_internal.h"
#include "salient.h"

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

int kvt_zip_salient_bitmap(const float *scores, uint32_t tokens,
			   uint32_t n_salient, uint32_t *bitmap)
{
	if (tokens == 0)
		return -EINVAL;
	return kvt_salient_bitmap(scores, tokens, n_salient, bitmap);
}
