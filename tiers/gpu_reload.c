/*
 * gpu_reload.c - asynchronous batched reload into the GPU tier: one gather
 * launch for raw blocks, one fused gather + decode launch per quantizing
 * codec (KIVI, ZipCache), an event to poll; and the spill the other way
 * (one quantize launch, one gather out). See gpu_tier.h for the contract.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_internal.h"

void kvt_gpu_reload_release(struct gpu_tier *g)
{
	struct gpu_reload *r = &g->reload;
	for (int c = 0; c < GPU_N_CODECS; c++)
		kvt_gpu_batch_free(r->batch[c]);
	kvt_gpu_batch_free(r->staged);
	kvt_gpu_event_destroy(r->done);
	kvt_gpu_free(r->stage);
	free(r->keys);
	free(r->pos);
	free(r->codec_of);
	memset(r, 0, sizeof *r);
}

static void free_tables(struct gpu_reload *r)
{
	for (int c = 0; c < GPU_N_CODECS; c++) {
		kvt_gpu_batch_free(r->batch[c]);
		r->batch[c] = NULL;
	}
	kvt_gpu_batch_free(r->staged); /* made again, at the new capacity */
	r->staged = NULL;
	free(r->keys);
	free(r->pos);
	free(r->codec_of);
	r->keys = NULL, r->pos = NULL, r->codec_of = NULL;
	r->cap = 0;
}

static int ensure_cap(struct gpu_tier *g, uint32_t n)
{
	struct gpu_reload *r = &g->reload;
	int rc = r->done ? 0 : kvt_gpu_event_create(&r->done);
	if (rc || r->cap >= n)
		return rc;
	uint32_t cap = n > 2 * r->cap ? n : 2 * r->cap;
	free_tables(r);
	for (int c = 0; c < GPU_N_CODECS && rc == 0; c++)
		rc = kvt_gpu_batch_create(cap, &r->batch[c]);
	r->keys = malloc(cap * sizeof *r->keys);
	r->pos = malloc(cap * sizeof *r->pos);
	r->codec_of = malloc(cap);
	if (rc == 0 && (!r->keys || !r->pos || !r->codec_of))
		rc = -ENOMEM;
	if (rc) {
		free_tables(r);
		return rc;
	}
	r->cap = cap;
	return 0;
}

/* Raw bytes of a block of codec c on the GPU (0: codec not decodable). */
static size_t raw_size(const struct kvt_block_codecs *cd, unsigned c,
		       const struct kvt_block_meta *m)
{
	size_t raw = 0;
	if (c == KVT_CODEC_RAW)
		return m->len;
	if (c == KVT_CODEC_KIVI && cd && cd->kivi &&
	    kvt_kivi_geom_sizes(cd->kivi, &raw, NULL, NULL) == 0)
		return raw;
	if (c == KVT_CODEC_ZIPCACHE && cd && cd->zip && kvt_zip_geom_check(cd->zip) == 0)
		return 2 * (size_t)cd->zip->heads * cd->zip->tokens * cd->zip->dim *
		       kvt_dtype_size(cd->zip->dtype);
	return 0;
}

/* Lengths and codec checks, before anything changes. */
static int check_items(size_t n, const struct kvt_block_key *keys,
		       const void *const *srcs, const struct kvt_block_meta *metas,
		       const struct kvt_block_codecs *cd)
{
	size_t enc = 0;
	if (!keys || !srcs || !metas || n > (1u << 24))
		return -EINVAL;
	if (cd && cd->kivi) {
		int rc = kvt_kivi_geom_sizes(cd->kivi, NULL, NULL, &enc);
		if (rc)
			return rc;
	}
	if (cd && cd->zip && kvt_zip_geom_check(cd->zip))
		return kvt_zip_geom_check(cd->zip);
	for (size_t i = 0; i < n; i++) {
		const unsigned c = metas[i].codec;
		if (!srcs[i] || (c == KVT_CODEC_KIVI && metas[i].len != enc))
			return -EINVAL;
		if (c > KVT_CODEC_ZIPCACHE)
			return KVT_ECODEC;
		if (raw_size(cd, c, &metas[i]) == 0 && c != KVT_CODEC_RAW)
			return -EINVAL; /* no geometry for its codec */
		if (c == KVT_CODEC_ZIPCACHE && metas[i].len == 0)
			return -EINVAL;
	}
	return 0;
}

static void cancel_all(struct gpu_tier *g, struct gpu_slot *slots, size_t n)
{
	while (n--)
		kvt_gpu_slot_cancel(g, &slots[n]);
}

/* Fills one batch per codec; -EINVAL when a source is not mapped. */
static int fill_batches(struct gpu_tier *g, size_t n, const void *const *srcs,
			const struct kvt_block_meta *metas,
			const struct gpu_slot *slots, uint32_t *count)
{
	struct gpu_reload *r = &g->reload;
	for (int c = 0; c < GPU_N_CODECS; c++)
		count[c] = 0;
	for (size_t i = 0; i < n; i++) {
		void *src;
		int rc = kvt_gpu_host_device_ptr(srcs[i], &src);
		if (rc)
			return rc == KVT_ENOGPU ? rc : -EINVAL;
		const unsigned c = metas[i].codec;
		r->codec_of[i] = (uint8_t)c;
		r->pos[i] = count[c];
		kvt_gpu_batch_items(r->batch[c])[count[c]++] = (struct kvt_gpu_item){
			src, g->pool + slots[i].off, metas[i].len};
	}
	return 0;
}

static int ensure_stage(struct gpu_reload *r, size_t bytes)
{
	if (r->stage_cap >= bytes)
		return 0;
	void *p;
	int rc = kvt_gpu_malloc(bytes, &p);
	if (rc)
		return rc;
	kvt_gpu_free(r->stage);
	r->stage = p;
	r->stage_cap = bytes;
	return 0;
}

/* Encoded blocks too big for the fused kernel's shared memory: gather them
 * into the staging area, then decode from there (two launches, not one). */
static int launch_staged(struct gpu_tier *g, const struct kvt_kivi_geom *geom,
			 uint32_t nk, struct kvt_stream *st)
{
	struct gpu_reload *r = &g->reload;
	size_t enc;
	int rc = kvt_kivi_geom_sizes(geom, NULL, NULL, &enc);
	const size_t slot = (enc + 255) / 256 * 256;
	if (rc || (rc = ensure_stage(r, nk * slot)))
		return rc;
	if (!r->staged && (rc = kvt_gpu_batch_create(r->cap, &r->staged)))
		return rc;
	struct kvt_gpu_item *ki = kvt_gpu_batch_items(r->batch[KVT_CODEC_KIVI]);
	struct kvt_gpu_item *si = kvt_gpu_batch_items(r->staged);
	for (uint32_t i = 0; i < nk; i++) {
		si[i] = (struct kvt_gpu_item){ki[i].src, r->stage + i * slot, enc};
		ki[i].src = r->stage + i * slot;
	}
	rc = kvt_gpu_gather(r->staged, nk, st);
	return rc ? rc : kvt_kivi_dequantize(geom, r->batch[KVT_CODEC_KIVI], nk, st);
}

static int launch(struct gpu_tier *g, const struct kvt_block_codecs *cd,
		  const uint32_t *count, struct kvt_stream *st)
{
	struct gpu_reload *r = &g->reload;
	int rc = count[KVT_CODEC_RAW]
			 ? kvt_gpu_gather(r->batch[KVT_CODEC_RAW], count[KVT_CODEC_RAW], st)
			 : 0;
	const uint32_t nk = count[KVT_CODEC_KIVI], nz = count[KVT_CODEC_ZIPCACHE];
	if (rc == 0 && nk) {
		rc = kvt_kivi_gather_dequantize(cd->kivi, r->batch[KVT_CODEC_KIVI], nk, st);
		if (rc == KVT_ETOOBIG)
			rc = launch_staged(g, cd->kivi, nk, st);
	}
	if (rc == 0 && nz)
		rc = kvt_zip_dequantize(cd->zip, r->batch[KVT_CODEC_ZIPCACHE], nz, st);
	if (rc == 0)
		rc = kvt_gpu_event_record(r->done, st);
	if (rc)
		kvt_stream_sync(st); /* nothing may still write the slots */
	return rc;
}

/* What the GPU tier records: decoded blocks are raw, unhashed. */
static struct kvt_block_meta stored_meta(const struct kvt_block_meta *m,
					 size_t raw)
{
	if (m->codec == KVT_CODEC_RAW)
		return *m;
	return (struct kvt_block_meta){.len = (uint32_t)raw, .raw_len = (uint32_t)raw,
				       .codec = KVT_CODEC_RAW, .flags = m->flags,
				       .n_tokens = m->n_tokens};
}

static int reserve_all(struct gpu_tier *g, size_t n,
		       const struct kvt_block_key *keys,
		       const struct kvt_block_meta *metas,
		       const struct kvt_block_codecs *cd, struct gpu_slot *slots)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = raw_size(cd, metas[i].codec, &metas[i]);
		int rc = len > UINT32_MAX ? -EINVAL
					  : kvt_gpu_slot_reserve(g, &keys[i], (uint32_t)len,
								 &slots[i]);
		if (rc) {
			cancel_all(g, slots, i);
			return rc;
		}
	}
	return 0;
}

int kvt_gpu_tier_reload(struct kvt_tier *gpu, size_t n,
			const struct kvt_block_key *keys,
			const void *const *srcs,
			const struct kvt_block_meta *metas,
			const struct kvt_block_codecs *cd, struct kvt_stream *s)
{
	struct gpu_tier *g = gpu_of(gpu);
	uint32_t count[GPU_N_CODECS];
	kvt_gpu_tier_reload_wait(gpu, NULL);
	int rc = check_items(n, keys, srcs, metas, cd);
	if (rc || n == 0)
		return rc;
	if ((rc = ensure_cap(g, (uint32_t)n)))
		return rc;
	struct gpu_slot *slots = malloc(n * sizeof *slots);
	if (!slots)
		return -ENOMEM;
	if ((rc = reserve_all(g, n, keys, metas, cd, slots))) {
		free(slots);
		return rc;
	}
	struct kvt_stream *st = s ? s : g->stream;
	rc = fill_batches(g, n, srcs, metas, slots, count);
	if (rc == 0)
		rc = launch(g, cd, count, st);
	if (rc) {
		cancel_all(g, slots, n);
		free(slots);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		struct kvt_block_meta m =
			stored_meta(&metas[i], raw_size(cd, metas[i].codec, &metas[i]));
		kvt_gpu_slot_commit(g, &slots[i], &m);
	}
	free(slots);
	memcpy(g->reload.keys, keys, n * sizeof *keys);
	g->reload.n = (uint32_t)n;
	g->reload.pending = 1;
	return 0;
}

int kvt_gpu_tier_reload_poll(struct kvt_tier *gpu)
{
	struct gpu_reload *r = &gpu_of(gpu)->reload;
	if (!r->pending)
		return 0;
	return kvt_gpu_event_query(r->done);
}

int kvt_gpu_tier_reload_wait(struct kvt_tier *gpu, int *results)
{
	struct gpu_tier *g = gpu_of(gpu);
	struct gpu_reload *r = &g->reload;
	if (!r->pending)
		return 0;
	int rc = kvt_gpu_event_sync(r->done), first = 0;
	r->pending = 0;
	for (uint32_t i = 0; i < r->n; i++) {
		const unsigned c = r->codec_of[i];
		int ri = rc ? KVT_ECUDA
			    : (c == KVT_CODEC_RAW ? 0
						  : kvt_gpu_batch_results(r->batch[c])[r->pos[i]]);
		if (ri)
			kvt_gpu_remove(g, &r->keys[i]);
		if (results)
			results[i] = ri;
		first = first ? first : ri;
	}
	return rc ? KVT_ECUDA : first;
}

/* ---------------------------------------------------------------- spill */

/* Quantize items: raw GPU blocks -> staging; gather items: staging -> dsts. */
static int fill_spill(struct gpu_tier *g, size_t n,
		      const struct kvt_block_key *keys, void *const *dsts,
		      size_t raw, size_t enc, size_t slot)
{
	struct gpu_reload *r = &g->reload;
	struct kvt_gpu_item *q = kvt_gpu_batch_items(r->batch[KVT_CODEC_KIVI]);
	struct kvt_gpu_item *out = kvt_gpu_batch_items(r->batch[KVT_CODEC_RAW]);
	for (size_t i = 0; i < n; i++) {
		struct kvt_block_loc loc;
		if (!dsts[i])
			return -EINVAL;
		int rc = g->base.ops->locate(&g->base, &keys[i], &loc);
		if (rc)
			return rc;
		if (loc.len != raw)
			return -EINVAL;
		void *dst;
		if ((rc = kvt_gpu_host_device_ptr(dsts[i], &dst)))
			return rc == KVT_ENOGPU ? rc : -EINVAL;
		q[i] = (struct kvt_gpu_item){loc.ptr, r->stage + i * slot, 0};
		out[i] = (struct kvt_gpu_item){r->stage + i * slot, dst, enc};
	}
	return 0;
}

int kvt_gpu_tier_spill(struct kvt_tier *gpu, size_t n,
		       const struct kvt_block_key *keys, void *const *dsts,
		       const struct kvt_kivi_geom *geom, struct kvt_stream *s)
{
	struct gpu_tier *g = gpu_of(gpu);
	size_t raw, enc;
	kvt_gpu_tier_reload_wait(gpu, NULL);
	if (!keys || !dsts || !geom || n > (1u << 24))
		return -EINVAL;
	int rc = kvt_kivi_geom_sizes(geom, &raw, NULL, &enc);
	if (rc || n == 0)
		return rc;
	const size_t slot = (enc + 255) / 256 * 256;
	if ((rc = ensure_cap(g, (uint32_t)n)) || (rc = ensure_stage(&g->reload, n * slot)))
		return rc;
	if ((rc = fill_spill(g, n, keys, dsts, raw, enc, slot)))
		return rc;
	struct kvt_stream *st = s ? s : g->stream;
	rc = kvt_kivi_quantize(geom, g->reload.batch[KVT_CODEC_KIVI], (uint32_t)n, st);
	if (rc == 0)
		rc = kvt_gpu_gather(g->reload.batch[KVT_CODEC_RAW], (uint32_t)n, st);
	if (rc == 0)
		rc = kvt_gpu_event_record(g->reload.done, st);
	if (rc) {
		kvt_stream_sync(st);
		return rc;
	}
	g->reload.n = 0; /* nothing to drop on failure: the tier is unchanged */
	g->reload.pending = 1;
	return 0;
}
