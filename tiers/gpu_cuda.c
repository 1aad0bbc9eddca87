/*
 * gpu_cuda.c - the GPU tier: one cudaMalloc'd pool of budget bytes.
 *
 * Extents are rounded to 256 bytes (16-byte vector loads, and every slot
 * starts a memory transaction), bump-allocated and recycled through
 * exact-size free lists, as in the host tier: the blocks of one cache all
 * have one raw size and one encoded size, so exact-size reuse covers the
 * common case and the pool is never resized. Only the index lives on the
 * host; block bytes never leave device memory except through get.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_internal.h"

static struct kvt_hkey hkey(const struct kvt_block_key *k)
{
	return (struct kvt_hkey){k->cache_id, (uint64_t)k->layer << 32 | k->block};
}

static uint64_t round_up(uint64_t n)
{
	return (n + KVT_GPU_ALIGN - 1) / KVT_GPU_ALIGN * KVT_GPU_ALIGN;
}

/* ---------------------------------------------------------------- extents */

static struct gpu_free_list *list_for(struct gpu_tier *g, uint64_t size,
				      int create)
{
	for (size_t i = 0; i < g->n_lists; i++)
		if (g->lists[i].size == size)
			return &g->lists[i];
	if (!create)
		return NULL;
	struct gpu_free_list *l = realloc(g->lists, (g->n_lists + 1) * sizeof *l);
	if (!l)
		return NULL;
	g->lists = l;
	l[g->n_lists] = (struct gpu_free_list){.size = size};
	return &l[g->n_lists++];
}

/* extra: bytes about to be released by the caller (a replaced value). */
static int alloc_extent(struct gpu_tier *g, uint64_t size, uint64_t extra,
			uint64_t *off)
{
	if (g->used - extra + size > g->size)
		return KVT_ENOSPACE;
	struct gpu_free_list *l = list_for(g, size, 0);
	if (l && l->n) {
		*off = l->off[--l->n];
		return 0;
	}
	if (g->size - g->top < size)
		return KVT_ENOSPACE;
	*off = g->top;
	g->top += size;
	return 0;
}

/* Never fails for lack of memory: a lost extent only wastes pool space. */
static void free_extent(struct gpu_tier *g, uint64_t off, uint64_t size)
{
	if (off + size == g->top) {
		g->top = off;
		return;
	}
	struct gpu_free_list *l = list_for(g, size, 1);
	if (!l)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		uint64_t *v = realloc(l->off, cap * sizeof *v);
		if (!v)
			return;
		l->off = v;
		l->cap = cap;
	}
	l->off[l->n++] = off;
}

/* ---------------------------------------------------------------- entries */

static int entry_new(struct gpu_tier *g, uint32_t *out)
{
	if (g->n_free_entries) {
		*out = g->free_entries[--g->n_free_entries];
		return 0;
	}
	if (g->n_entries == g->cap_entries) {
		size_t cap = g->cap_entries ? g->cap_entries * 2 : 256;
		struct gpu_entry *e = realloc(g->entries, cap * sizeof *e);
		if (e)
			g->entries = e;
		uint32_t *f = realloc(g->free_entries, cap * sizeof *f);
		if (f)
			g->free_entries = f;
		if (!e || !f)
			return -ENOMEM;
		g->cap_entries = cap;
	}
	*out = (uint32_t)g->n_entries++;
	return 0;
}

static void entry_drop(struct gpu_tier *g, uint32_t i)
{
	kvt_hmap_del(&g->index, hkey(&g->entries[i].key));
	g->entries[i].used = 0;
	g->free_entries[g->n_free_entries++] = i;
}

static struct gpu_entry *lookup(struct gpu_tier *g, const struct kvt_block_key *k)
{
	uint32_t i;
	if (kvt_hmap_get(&g->index, hkey(k), &i) || !g->entries[i].used)
		return NULL;
	return &g->entries[i];
}

static int reserve_fresh(struct gpu_tier *g, const struct kvt_block_key *key,
			 uint64_t size, struct gpu_slot *s)
{
	int rc = alloc_extent(g, size, 0, &s->off);
	if (rc)
		return rc;
	rc = entry_new(g, &s->entry);
	if (rc == 0 && (rc = kvt_hmap_put(&g->index, hkey(key), s->entry)))
		g->free_entries[g->n_free_entries++] = s->entry;
	if (rc) {
		free_extent(g, s->off, size);
		return rc;
	}
	g->entries[s->entry] = (struct gpu_entry){.key = *key, .off = s->off,
						  .size = size, .used = 1};
	g->entries[s->entry].meta.len = 0;
	g->used += size;
	s->fresh = 1;
	s->size = size;
	s->new_extent = 1;
	return 0;
}

int kvt_gpu_slot_reserve(struct gpu_tier *g, const struct kvt_block_key *key,
			 uint32_t len, struct gpu_slot *s)
{
	uint64_t size = round_up(len ? len : 1);
	uint32_t i;
	memset(s, 0, sizeof *s);
	if (kvt_hmap_get(&g->index, hkey(key), &i))
		return reserve_fresh(g, key, size, s);
	struct gpu_entry *e = &g->entries[i];
	s->entry = i;
	s->size = size;
	if (size == e->size) {
		s->off = e->off;
		return 0;
	}
	int rc = alloc_extent(g, size, e->size, &s->off);
	if (rc)
		return rc;
	g->used += size;
	s->new_extent = 1;
	return 0;
}

void kvt_gpu_slot_commit(struct gpu_tier *g, const struct gpu_slot *s,
			 const struct kvt_block_meta *meta)
{
	struct gpu_entry *e = &g->entries[s->entry];
	if (s->new_extent && !s->fresh) {
		free_extent(g, e->off, e->size);
		g->used -= e->size;
		e->off = s->off;
		e->size = s->size;
	}
	e->meta = *meta;
}

void kvt_gpu_slot_cancel(struct gpu_tier *g, const struct gpu_slot *s)
{
	if (s->new_extent) {
		free_extent(g, s->off, s->size);
		g->used -= s->size;
	}
	if (s->fresh)
		entry_drop(g, s->entry);
}

void kvt_gpu_remove(struct gpu_tier *g, const struct kvt_block_key *key)
{
	uint32_t i;
	if (kvt_hmap_get(&g->index, hkey(key), &i))
		return;
	free_extent(g, g->entries[i].off, g->entries[i].size);
	g->used -= g->entries[i].size;
	entry_drop(g, i);
}

/* ---------------------------------------------------------------- ops */

static int gpu_put(struct kvt_tier *t, const struct kvt_block_key *key,
		   const void *data, const struct kvt_block_meta *meta)
{
	struct gpu_tier *g = gpu_of(t);
	struct gpu_slot s;
	int rc = kvt_gpu_tier_reload_wait(t, NULL);
	(void)rc; /* a failed reload only removed its own keys */
	if (!data || !meta)
		return -EINVAL;
	if ((rc = kvt_gpu_slot_reserve(g, key, meta->len, &s)))
		return rc;
	rc = kvt_gpu_copy_async(g->pool + s.off, data, meta->len, g->stream);
	if (rc == 0)
		rc = kvt_stream_sync(g->stream);
	if (rc) {
		/* The old bytes may be partly overwritten: drop the key. */
		kvt_gpu_slot_cancel(g, &s);
		if (!s.fresh)
			kvt_gpu_remove(g, key);
		return rc;
	}
	kvt_gpu_slot_commit(g, &s, meta);
	return 0;
}

static int gpu_get(struct kvt_tier *t, const struct kvt_block_key *key,
		   void *dst, size_t cap, struct kvt_block_meta *meta)
{
	struct gpu_tier *g = gpu_of(t);
	kvt_gpu_tier_reload_wait(t, NULL);
	struct gpu_entry *e = lookup(g, key);
	if (!e)
		return KVT_ENOTFOUND;
	if (cap < e->meta.len)
		return -ENOBUFS;
	int rc = kvt_gpu_copy_async(dst, g->pool + e->off, e->meta.len, g->stream);
	if (rc == 0)
		rc = kvt_stream_sync(g->stream);
	if (rc)
		return rc == -ENOMEM ? -ENOMEM : KVT_ECUDA;
	if (meta)
		*meta = e->meta;
	return 0;
}

static int gpu_stat(struct kvt_tier *t, const struct kvt_block_key *key,
		    struct kvt_block_meta *meta)
{
	struct gpu_entry *e = lookup(gpu_of(t), key);
	if (!e)
		return KVT_ENOTFOUND;
	*meta = e->meta;
	return 0;
}

static int gpu_del(struct kvt_tier *t, const struct kvt_block_key *key)
{
	struct gpu_tier *g = gpu_of(t);
	kvt_gpu_tier_reload_wait(t, NULL);
	if (!lookup(g, key))
		return KVT_ENOTFOUND;
	kvt_gpu_remove(g, key);
	return 0;
}

static int gpu_iter(struct kvt_tier *t, kvt_tier_iter_fn fn, void *ctx)
{
	struct gpu_tier *g = gpu_of(t);
	kvt_gpu_tier_reload_wait(t, NULL);
	for (size_t i = 0; i < g->n_entries; i++) {
		if (!g->entries[i].used)
			continue;
		int rc = fn(ctx, &g->entries[i].key, &g->entries[i].meta);
		if (rc)
			return rc;
	}
	return 0;
}

static int gpu_usage(struct kvt_tier *t, struct kvt_tier_usage *out)
{
	struct gpu_tier *g = gpu_of(t);
	*out = (struct kvt_tier_usage){1, g->size, g->used, g->index.n};
	return 0;
}

static int gpu_locate(struct kvt_tier *t, const struct kvt_block_key *key,
		      struct kvt_block_loc *loc)
{
	struct gpu_tier *g = gpu_of(t);
	struct gpu_entry *e = lookup(g, key);
	if (!e)
		return KVT_ENOTFOUND;
	*loc = (struct kvt_block_loc){g->pool + e->off, -1, e->off, e->meta.len};
	return 0;
}

static void gpu_destroy(struct kvt_tier *t)
{
	struct gpu_tier *g = gpu_of(t);
	kvt_gpu_tier_reload_wait(t, NULL);
	kvt_gpu_reload_release(g);
	for (size_t i = 0; i < g->n_lists; i++)
		free(g->lists[i].off);
	kvt_hmap_free(&g->index);
	free(g->lists);
	free(g->entries);
	free(g->free_entries);
	kvt_stream_destroy(g->stream);
	kvt_gpu_free(g->pool);
	free(g);
}

int kvt_gpu_tier_alloc(struct kvt_tier *t, size_t n,
		       const struct kvt_block_key *keys,
		       const struct kvt_block_meta *metas, void **addrs)
{
	struct gpu_tier *g = gpu_of(t);
	struct gpu_slot s;
	int rc = 0;
	size_t i;
	kvt_gpu_tier_reload_wait(t, NULL);
	if (n && (!keys || !metas || !addrs))
		return -EINVAL;
	for (i = 0; i < n && rc == 0; i++) {
		/* A stored key may be an orphan a reload still reads. */
		if (lookup(g, &keys[i]))
			rc = -EEXIST;
		else if ((rc = reserve_fresh(g, &keys[i], round_up(metas[i].len ? metas[i].len : 1), &s)) == 0) {
			kvt_gpu_slot_commit(g, &s, &metas[i]);
			addrs[i] = g->pool + s.off;
		}
	}
	if (rc)
		while (--i > 0) /* the failed one (i - 1 after the loop) holds nothing */
			kvt_gpu_remove(g, &keys[i - 1]);
	return rc;
}

static const struct kvt_tier_ops gpu_ops = {
	.name = "gpu",
	.put = gpu_put,
	.get = gpu_get,
	.stat = gpu_stat,
	.del = gpu_del,
	.iter = gpu_iter,
	.usage = gpu_usage,
	.locate = gpu_locate,
	.destroy = gpu_destroy,
};

int kvt_gpu_tier_create(uint64_t budget, struct kvt_tier **out)
{
	if (!out)
		return -EINVAL;
	int rc = kvt_gpu_available();
	if (rc)
		return rc;
	struct gpu_tier *g = calloc(1, sizeof *g);
	if (!g)
		return -ENOMEM;
	g->base = (struct kvt_tier){&gpu_ops, KVT_TIER_GPU};
	g->size = budget ? budget / KVT_GPU_ALIGN * KVT_GPU_ALIGN : KVT_GPU_DEFAULT_POOL;
	if (g->size == 0)
		rc = -EINVAL;
	if (rc == 0)
		rc = kvt_gpu_malloc(g->size, (void **)&g->pool);
	if (rc == 0)
		rc = kvt_stream_create(&g->stream);
	if (rc) {
		kvt_gpu_free(g->pool);
		free(g);
		return rc;
	}
	*out = &g->base;
	return 0;
}
