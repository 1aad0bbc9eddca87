/*
 * gpu_attn.c - kvt_attn_reload_gpu: the reference attention run on the GPU
 * over the blocks of a reload (kernels/attn.cu). A reference, not a fast
 * attention kernel: one thread block per (q head, query), every buffer
 * allocated for the call.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvt_kernels.h"
#include "kvtier/retrieval.h"

struct attn_dev {
	float *q, *scores, *out;
	const void **ptrs;
	uint32_t *first;
	uint8_t *staged; /* device copies of blocks held in host memory */
};

static void attn_dev_free(struct attn_dev *d)
{
	kvt_gpu_free(d->q), kvt_gpu_free(d->scores), kvt_gpu_free(d->out);
	kvt_gpu_free((void *)d->ptrs), kvt_gpu_free(d->first), kvt_gpu_free(d->staged);
}

static int attn_dev_alloc(struct attn_dev *d, size_t rows, size_t dim,
			  size_t n, uint32_t tokens, size_t staged)
{
	int rc = kvt_gpu_malloc(rows * dim * 4, (void **)&d->q);
	if (rc == 0)
		rc = kvt_gpu_malloc(rows * dim * 4, (void **)&d->out);
	if (rc == 0)
		rc = kvt_gpu_malloc(rows * tokens * 4, (void **)&d->scores);
	if (rc == 0)
		rc = kvt_gpu_malloc(n * sizeof(void *), (void **)&d->ptrs);
	if (rc == 0)
		rc = kvt_gpu_malloc((n + 1) * 4, (void **)&d->first);
	if (rc == 0 && staged)
		rc = kvt_gpu_malloc(staged, (void **)&d->staged);
	return rc;
}

/* Block addresses the kernel can read (host blocks copied to staging) and
 * the prefix sums of the valid tokens, uploaded. */
static int upload_table(const struct kvt_reload_block *b, size_t n,
			struct attn_dev *d, struct kvt_stream *s)
{
	const void **ptrs = malloc(n * sizeof *ptrs);
	uint32_t *first = malloc((n + 1) * sizeof *first);
	int rc = ptrs && first ? 0 : -ENOMEM;
	size_t at = 0;
	if (first)
		first[0] = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		first[i + 1] = first[i] + b[i].n_tokens;
		ptrs[i] = b[i].addr;
		if (b[i].tier != KVT_TIER_GPU) {
			rc = kvt_gpu_copy_async(d->staged + at, b[i].addr, b[i].bytes, s);
			ptrs[i] = d->staged + at;
			at += b[i].bytes;
		}
	}
	if (rc == 0)
		rc = kvt_gpu_copy_async((void *)d->ptrs, ptrs, n * sizeof *ptrs, s);
	if (rc == 0)
		rc = kvt_gpu_copy_async(d->first, first, (n + 1) * sizeof *first, s);
	if (rc == 0)
		rc = kvt_stream_sync(s); /* the host arrays are free again */
	free(ptrs), free(first);
	return rc;
}

static int blocks_ok(const struct kvt_shape *shape, const struct kvt_reload_block *b,
		     size_t n, uint64_t *tokens, size_t *staged)
{
	*tokens = 0, *staged = 0;
	for (size_t i = 0; i < n; i++) {
		if (b[i].status || !b[i].addr || b[i].n_tokens == 0 ||
		    b[i].n_tokens > shape->block_tokens || b[i].bytes != kvt_block_bytes(shape))
			return -EINVAL;
		*tokens += b[i].n_tokens;
		*staged += b[i].tier == KVT_TIER_GPU ? 0 : b[i].bytes;
	}
	return *tokens <= UINT32_MAX ? 0 : -EINVAL;
}

int kvt_attn_reload_gpu(const struct kvt_shape *shape, uint32_t n_q_heads,
			uint32_t n_queries, const float *q,
			const struct kvt_reload_block *blocks, size_t n, float *out)
{
	uint64_t tokens;
	size_t staged;
	if (!shape || !q || !blocks || !out || n == 0 || n > UINT32_MAX ||
	    !n_q_heads || !n_queries || n_q_heads % shape->n_kv_heads ||
	    blocks_ok(shape, blocks, n, &tokens, &staged))
		return -EINVAL;
	int rc = kvt_gpu_available();
	if (rc)
		return rc;
	struct kvt_stream *s = NULL;
	struct attn_dev d = {0};
	size_t rows = (size_t)n_q_heads * n_queries, dim = shape->head_dim;
	rc = kvt_stream_create(&s);
	if (rc == 0)
		rc = attn_dev_alloc(&d, rows, dim, n, (uint32_t)tokens, staged);
	if (rc == 0)
		rc = kvt_gpu_copy_async(d.q, q, rows * dim * 4, s);
	if (rc == 0)
		rc = upload_table(blocks, n, &d, s);
	struct kvt_attn_args a = {
		d.q, n_q_heads, n_queries, shape->n_kv_heads, shape->head_dim,
		shape->block_tokens, (uint32_t)shape->dtype, (const void *const *)d.ptrs,
		d.first, (uint32_t)n, (uint32_t)tokens, 1.0f / sqrtf((float)dim),
		d.scores, d.out};
	if (rc == 0)
		rc = kvt_gpu_attn_blocks(&a, s);
	if (rc == 0)
		rc = kvt_gpu_copy_async(out, d.out, rows * dim * 4, s);
	if (s && kvt_stream_sync(s) && rc == 0)
		rc = KVT_ECUDA;
	attn_dev_free(&d);
	kvt_stream_destroy(s);
	return rc;
}
