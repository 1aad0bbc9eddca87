/* none.c - the kernels module of a build without CUDA: no device, ever. */
#include <errno.h>

#include "kvt_kernels.h"

int kvt_gpu_available(void) { return KVT_ENOGPU; }
int kvt_gpu_host_register(void *ptr, size_t len) { (void)ptr, (void)len; return KVT_ENOGPU; }
int kvt_gpu_host_unregister(void *ptr) { (void)ptr; return KVT_ENOGPU; }

int kvt_stream_create(struct kvt_stream **out) { (void)out; return KVT_ENOGPU; }
void kvt_stream_destroy(struct kvt_stream *s) { (void)s; }
int kvt_stream_sync(struct kvt_stream *s) { (void)s; return KVT_ENOGPU; }
int kvt_stream_query(struct kvt_stream *s) { (void)s; return KVT_ENOGPU; }

int kvt_gpu_malloc(size_t len, void **dev) { (void)len, (void)dev; return KVT_ENOGPU; }
void kvt_gpu_free(void *dev) { (void)dev; }
int kvt_gpu_host_alloc(size_t len, void **host) { (void)len, (void)host; return KVT_ENOGPU; }
void kvt_gpu_host_free(void *host) { (void)host; }
int kvt_gpu_host_device_ptr(const void *host, void **dev) { (void)host, (void)dev; return KVT_ENOGPU; }

int kvt_gpu_copy_async(void *dst, const void *src, size_t len, struct kvt_stream *s)
{
	(void)dst, (void)src, (void)len, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_memset_async(void *dev, int byte, size_t len, struct kvt_stream *s)
{
	(void)dev, (void)byte, (void)len, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_event_create(struct kvt_gpu_event **out) { (void)out; return KVT_ENOGPU; }
void kvt_gpu_event_destroy(struct kvt_gpu_event *e) { (void)e; }
int kvt_gpu_event_record(struct kvt_gpu_event *e, struct kvt_stream *s) { (void)e, (void)s; return KVT_ENOGPU; }
int kvt_gpu_event_query(struct kvt_gpu_event *e) { (void)e; return KVT_ENOGPU; }
int kvt_gpu_event_sync(struct kvt_gpu_event *e) { (void)e; return KVT_ENOGPU; }

int kvt_gpu_event_elapsed(struct kvt_gpu_event *a, struct kvt_gpu_event *b, float *ms)
{
	(void)a, (void)b, (void)ms;
	return KVT_ENOGPU;
}

int kvt_gpu_batch_create(uint32_t cap, struct kvt_gpu_batch **out) { (void)cap, (void)out; return KVT_ENOGPU; }
void kvt_gpu_batch_free(struct kvt_gpu_batch *b) { (void)b; }
struct kvt_gpu_item *kvt_gpu_batch_items(struct kvt_gpu_batch *b) { (void)b; return NULL; }
const int *kvt_gpu_batch_results(const struct kvt_gpu_batch *b) { (void)b; return NULL; }

int kvt_gpu_gather(struct kvt_gpu_batch *b, uint32_t n, struct kvt_stream *s)
{
	(void)b, (void)n, (void)s;
	return KVT_ENOGPU;
}

int kvt_kivi_quantize(const struct kvt_kivi_geom *g, struct kvt_gpu_batch *b,
		      uint32_t n, struct kvt_stream *s)
{
	(void)g, (void)b, (void)n, (void)s;
	return KVT_ENOGPU;
}

int kvt_kivi_dequantize(const struct kvt_kivi_geom *g, struct kvt_gpu_batch *b,
			uint32_t n, struct kvt_stream *s)
{
	(void)g, (void)b, (void)n, (void)s;
	return KVT_ENOGPU;
}

int kvt_kivi_gather_dequantize(const struct kvt_kivi_geom *g,
			       struct kvt_gpu_batch *b, uint32_t n,
			       struct kvt_stream *s)
{
	(void)g, (void)b, (void)n, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_score_topk(const float *q, uint32_t nq, const float *keys,
		       uint32_t m, uint32_t dim, uint32_t k, float *scores,
		       uint32_t *top_idx, float *top_score, struct kvt_stream *s)
{
	(void)q, (void)nq, (void)keys, (void)m, (void)dim, (void)k;
	(void)scores, (void)top_idx, (void)top_score, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_score_topk_sets(const float *q, uint32_t sets, uint32_t nq,
			    const float *keys, uint32_t m, uint32_t dim,
			    uint32_t k, float *scores, uint32_t *top_idx,
			    float *top_score, struct kvt_stream *s)
{
	(void)q, (void)sets, (void)nq, (void)keys, (void)m, (void)dim, (void)k;
	(void)scores, (void)top_idx, (void)top_score, (void)s;
	return KVT_ENOGPU;
}

int kvt_zip_dequantize(const struct kvt_zip_geom *g, struct kvt_gpu_batch *b,
		       uint32_t n, struct kvt_stream *s)
{
	(void)g, (void)b, (void)n, (void)s;
	return KVT_ENOGPU;
}

int kvt_zip_quantize(const struct kvt_zip_geom *g, int tokenwise,
		     uint32_t n_salient, const uint32_t *bitmaps,
		     struct kvt_gpu_batch *b, uint32_t n, struct kvt_stream *s)
{
	(void)g, (void)tokenwise, (void)n_salient, (void)bitmaps, (void)b;
	(void)n, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_quest_keys(const struct kvt_quest_args *a, struct kvt_stream *s)
{
	(void)a, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_select_top(const uint32_t *key, uint32_t n, uint32_t k,
		       uint8_t *sel, struct kvt_stream *s)
{
	(void)key, (void)n, (void)k, (void)sel, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_clusterkv_keys(const struct kvt_ckv_args *a, struct kvt_stream *s)
{
	(void)a, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_attn_blocks(const struct kvt_attn_args *a, struct kvt_stream *s)
{
	(void)a, (void)s;
	return KVT_ENOGPU;
}
