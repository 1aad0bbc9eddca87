// fake_runtime.cu - a test double of the whole kernels API on host memory,
// for running the GPU tests and the GPU tier on a machine without a GPU
// (library kvt_kernels_fake, linked only by the *_fake tests). "Device"
// memory is aligned host memory, streams and events are no-ops, kernels
// are the CPU emulation of their per-thread bodies (emu.cu). It checks the
// callers' logic (tier bookkeeping, batches, results, test code), not the
// device. The registry of mapped ranges is process-global: a test double
// for single-threaded tests, nothing else links it.
#include <stdlib.h>

#include "emu_internal.h"
#include "kivi.cuh"
#include "zip_quant.cuh"

#define FAKE_MAX_RANGES 4096

struct fake_range {
	const uint8_t *p;
	size_t len;
};

static struct fake_range ranges[FAKE_MAX_RANGES];
static size_t n_ranges;

static int range_add(const void *p, size_t len)
{
	if (n_ranges == FAKE_MAX_RANGES)
		return -ENOMEM;
	ranges[n_ranges++] = (struct fake_range){(const uint8_t *)p, len};
	return 0;
}

static void range_del(const void *p)
{
	for (size_t i = 0; i < n_ranges; i++)
		if (ranges[i].p == p) {
			ranges[i] = ranges[--n_ranges];
			return;
		}
}

static void *fake_alloc(size_t len)
{
	return aligned_alloc(256, (len + 255) / 256 * 256);
}

extern "C" int kvt_gpu_available(void) { return 0; }

extern "C" int kvt_gpu_host_register(void *ptr, size_t len)
{
	return ptr && len ? range_add(ptr, len) : -EINVAL;
}

extern "C" int kvt_gpu_host_unregister(void *ptr)
{
	range_del(ptr);
	return 0;
}

extern "C" int kvt_stream_create(struct kvt_stream **out)
{
	static int token;
	*out = (struct kvt_stream *)&token;
	return 0;
}

extern "C" void kvt_stream_destroy(struct kvt_stream *s) { (void)s; }
extern "C" int kvt_stream_sync(struct kvt_stream *s) { (void)s; return 0; }
extern "C" int kvt_stream_query(struct kvt_stream *s) { (void)s; return 0; }

extern "C" int kvt_gpu_malloc(size_t len, void **dev)
{
	if (!dev || !len)
		return -EINVAL;
	*dev = fake_alloc(len);
	return *dev ? 0 : -ENOMEM;
}

extern "C" void kvt_gpu_free(void *dev) { free(dev); }

extern "C" int kvt_gpu_host_alloc(size_t len, void **host)
{
	int rc = kvt_gpu_malloc(len, host);
	if (rc == 0 && (rc = range_add(*host, len)))
		free(*host);
	return rc;
}

extern "C" void kvt_gpu_host_free(void *host)
{
	range_del(host);
	free(host);
}

extern "C" int kvt_gpu_host_device_ptr(const void *host, void **dev)
{
	const uint8_t *p = (const uint8_t *)host;
	for (size_t i = 0; host && i < n_ranges; i++)
		if (p >= ranges[i].p && p < ranges[i].p + ranges[i].len) {
			*dev = (void *)host;
			return 0;
		}
	return -EINVAL;
}

extern "C" int kvt_gpu_copy_async(void *dst, const void *src, size_t len,
				  struct kvt_stream *s)
{
	(void)s;
	if (len && (!dst || !src))
		return -EINVAL;
	memmove(dst, src, len);
	return 0;
}

extern "C" int kvt_gpu_memset_async(void *dev, int byte, size_t len,
				    struct kvt_stream *s)
{
	(void)s;
	if (len && !dev)
		return -EINVAL;
	memset(dev, byte, len);
	return 0;
}

extern "C" int kvt_gpu_event_create(struct kvt_gpu_event **out)
{
	static int token;
	*out = (struct kvt_gpu_event *)&token;
	return 0;
}

extern "C" void kvt_gpu_event_destroy(struct kvt_gpu_event *e) { (void)e; }

extern "C" int kvt_gpu_event_record(struct kvt_gpu_event *e, struct kvt_stream *s)
{
	(void)s;
	return e ? 0 : -EINVAL;
}

extern "C" int kvt_gpu_event_query(struct kvt_gpu_event *e) { return e ? 0 : -EINVAL; }
extern "C" int kvt_gpu_event_sync(struct kvt_gpu_event *e) { return e ? 0 : -EINVAL; }

extern "C" int kvt_gpu_event_elapsed(struct kvt_gpu_event *a,
				     struct kvt_gpu_event *b, float *ms)
{
	(void)a, (void)b;
	*ms = 0.0f;
	return 0;
}

extern "C" int kvt_gpu_batch_create(uint32_t cap, struct kvt_gpu_batch **out)
{
	if (!out || cap == 0 || cap > (1u << 24))
		return -EINVAL;
	struct kvt_gpu_batch *b = (struct kvt_gpu_batch *)calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	b->cap = cap;
	b->host = (struct kvt_gpu_item *)calloc(cap, sizeof *b->host);
	b->results = (int *)calloc(cap, sizeof(int));
	b->results_dev = b->results;
	if (!b->host || !b->results) {
		kvt_gpu_batch_free(b);
		return -ENOMEM;
	}
	*out = b;
	return 0;
}

extern "C" void kvt_gpu_batch_free(struct kvt_gpu_batch *b)
{
	if (!b)
		return;
	free(b->host);
	free(b->results);
	free(b);
}

extern "C" struct kvt_gpu_item *kvt_gpu_batch_items(struct kvt_gpu_batch *b)
{
	return b ? b->host : NULL;
}

extern "C" const int *kvt_gpu_batch_results(const struct kvt_gpu_batch *b)
{
	return b ? b->results : NULL;
}

extern "C" int kvt_gpu_gather(struct kvt_gpu_batch *b, uint32_t n,
			      struct kvt_stream *s)
{
	(void)s;
	if (!b || n > b->cap)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (b->host[i].len && (!b->host[i].src || !b->host[i].dst))
			return -EINVAL;
	return kvt_emu_gather(b->host, n);
}

extern "C" int kvt_kivi_quantize(const struct kvt_kivi_geom *g,
				 struct kvt_gpu_batch *b, uint32_t n,
				 struct kvt_stream *s)
{
	struct kivi_plan p;
	(void)s;
	int rc = kvt_kivi_plan(g, 1, &p);
	if (rc || (rc = kvt_kivi_items_ok(b, n)))
		return rc;
	for (uint32_t i = 0; i < n; i++)
		kvt_emu_kivi_quantize(g, b->host[i].src, b->host[i].dst);
	return 0;
}

static int fake_dequant(const struct kvt_kivi_geom *g, struct kvt_gpu_batch *b,
			uint32_t n, int fused)
{
	struct kivi_plan p;
	int rc = kvt_kivi_plan(g, 0, &p);
	if (rc || (rc = kvt_kivi_items_ok(b, n)))
		return rc;
	for (uint32_t i = 0; i < n; i++) {
		rc = kvt_emu_kivi_dequantize(g, b->host[i].src, b->host[i].dst, fused);
		b->results[i] = rc == KVT_EFORMAT ? KVT_EFORMAT : 0;
		if (rc && rc != KVT_EFORMAT)
			return rc;
	}
	return 0;
}

extern "C" int kvt_kivi_dequantize(const struct kvt_kivi_geom *g,
				   struct kvt_gpu_batch *b, uint32_t n,
				   struct kvt_stream *s)
{
	(void)s;
	return fake_dequant(g, b, n, 0);
}

// Mimics the device's limit: an H100/H200 block gets at most 227 KiB of
// shared memory.
#define FAKE_SMEM_LIMIT (227u << 10)

extern "C" int kvt_kivi_gather_dequantize(const struct kvt_kivi_geom *g,
					  struct kvt_gpu_batch *b, uint32_t n,
					  struct kvt_stream *s)
{
	struct kivi_plan p;
	(void)s;
	int rc = kvt_kivi_plan(g, 0, &p);
	if (rc)
		return rc;
	if ((((size_t)p.enc_len + 15) & ~(size_t)15) + 64 > FAKE_SMEM_LIMIT)
		return KVT_ETOOBIG;
	return fake_dequant(g, b, n, 1);
}

extern "C" int kvt_gpu_score_topk_sets(const float *q, uint32_t sets,
				       uint32_t nq, const float *keys,
				       uint32_t m, uint32_t dim, uint32_t k,
				       float *scores, uint32_t *top_idx,
				       float *top_score, struct kvt_stream *s)
{
	(void)s;
	return kvt_emu_score_topk(q, sets, nq, keys, m, dim, k, scores, top_idx,
				  top_score);
}

extern "C" int kvt_gpu_score_topk(const float *q, uint32_t nq, const float *keys,
				  uint32_t m, uint32_t dim, uint32_t k,
				  float *scores, uint32_t *top_idx,
				  float *top_score, struct kvt_stream *s)
{
	return kvt_gpu_score_topk_sets(q, 1, nq, keys, m, dim, k, scores,
				       top_idx, top_score, s);
}

extern "C" int kvt_zip_dequantize(const struct kvt_zip_geom *g,
				  struct kvt_gpu_batch *b, uint32_t n,
				  struct kvt_stream *s)
{
	(void)s;
	int rc = kvt_zip_geom_check(g);
	if (rc || (rc = kvt_zip_items_ok(b, n)))
		return rc;
	for (uint32_t i = 0; i < n; i++)
		if (((b->host[i].len + 15) & ~15ull) + 256 > FAKE_SMEM_LIMIT)
			return KVT_ETOOBIG;
	for (uint32_t i = 0; i < n; i++) {
		rc = kvt_emu_zip_dequantize(g, b->host[i].src, b->host[i].len,
					    b->host[i].dst);
		b->results[i] = rc == KVT_EFORMAT ? KVT_EFORMAT : 0;
		if (rc && rc != KVT_EFORMAT)
			return rc;
	}
	return 0;
}

extern "C" int kvt_zip_quantize(const struct kvt_zip_geom *g, int tokenwise,
				uint32_t n_salient, const uint32_t *bitmaps,
				struct kvt_gpu_batch *b, uint32_t n,
				struct kvt_stream *s)
{
	struct zipq_plan p;
	(void)s;
	int rc = kvt_zipq_plan(g, tokenwise, n_salient, &p);
	if (rc || (rc = kvt_kivi_items_ok(b, n)) || n == 0)
		return rc;
	if (!bitmaps)
		return -EINVAL;
	for (uint32_t i = 0; i < n && rc == 0; i++)
		rc = kvt_emu_zip_quantize(g, tokenwise, n_salient,
					  bitmaps + (size_t)i * p.bm_words,
					  b->host[i].src, b->host[i].dst);
	return rc;
}

extern "C" int kvt_gpu_quest_keys(const struct kvt_quest_args *a,
				  struct kvt_stream *s)
{
	(void)s;
	return kvt_emu_quest_keys(a);
}

extern "C" int kvt_gpu_select_top(const uint32_t *key, uint32_t n, uint32_t k,
				  uint8_t *sel, struct kvt_stream *s)
{
	(void)s;
	return kvt_emu_select_top(key, n, k, sel);
}

extern "C" int kvt_gpu_clusterkv_keys(const struct kvt_ckv_args *a,
				      struct kvt_stream *s)
{
	(void)s;
	return kvt_emu_clusterkv_keys(a);
}

extern "C" int kvt_gpu_attn_blocks(const struct kvt_attn_args *a,
				   struct kvt_stream *s)
{
	(void)s;
	return kvt_emu_attn_blocks(a);
}
