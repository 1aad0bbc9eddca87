/*
 * host.c - the host RAM tier.
 *
 * Blocks live in memfd-backed arenas (64 MiB each, or the budget when
 * smaller) so another process can map them: the daemon passes an arena's
 * fd to its clients and answers reads with (fd, offset, len). Arenas are
 * pinned for the GPU (cudaHostRegister) when CUDA is present, otherwise
 * mlock is attempted; neither is required.
 *
 * Allocation: extents rounded to 64 bytes, bump-allocated, recycled through
 * exact-size free lists. The blocks of one cache all have the same encoded
 * size, so exact-size reuse covers the common case without a general
 * allocator. The budget limits live bytes; arenas may exceed it by at most
 * one arena of fragmentation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hmap.h"
#include "kvt_kernels.h"
#include "tier.h"

#define ARENA_BYTES (64ull << 20)
#define ALIGN 64u

struct arena {
	uint8_t *base;
	int fd;
	int gpu_registered;
	uint64_t size;
	uint64_t top; /* bump pointer */
};

struct extent {
	uint32_t arena;
	uint64_t offset;
};

struct free_list {
	uint64_t size; /* rounded extent size */
	struct extent *v;
	size_t n, cap;
};

struct entry {
	struct kvt_block_key key;
	struct kvt_block_meta meta;
	struct extent at;
	uint64_t size; /* rounded */
	int used;
};

struct host_tier {
	struct kvt_tier base;
	uint64_t budget;  /* 0: unlimited */
	uint64_t arena_bytes;
	uint64_t used;    /* rounded bytes of live blocks */
	uint64_t arena_total;
	struct arena *arenas;
	uint32_t n_arenas;
	struct free_list *lists;
	size_t n_lists;
	struct entry *entries;
	size_t n_entries, cap_entries;
	uint32_t *free_entries;
	size_t n_free_entries;
	struct kvt_hmap index;
};

static struct host_tier *host(struct kvt_tier *t)
{
	return (struct host_tier *)t;
}

static struct kvt_hkey hkey(const struct kvt_block_key *k)
{
	return (struct kvt_hkey){k->cache_id, (uint64_t)k->layer << 32 | k->block};
}

static uint64_t round_up(uint64_t n)
{
	return (n + ALIGN - 1) / ALIGN * ALIGN;
}

/* ---------------------------------------------------------------- arenas */

static int arena_add(struct host_tier *h, uint64_t min_size)
{
	uint64_t size = h->arena_bytes > min_size ? h->arena_bytes : round_up(min_size);
	struct arena *a = realloc(h->arenas, (h->n_arenas + 1) * sizeof *a);
	if (!a)
		return -ENOMEM;
	h->arenas = a;
	int fd = memfd_create("kvtier-host", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size)) {
		int e = -errno;
		close(fd);
		return e;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = -errno;
		close(fd);
		return e;
	}
	struct arena *n = &h->arenas[h->n_arenas++];
	*n = (struct arena){.base = p, .fd = fd, .size = size};
	/* Pinning is an optimisation: failure only costs transfer speed. */
	n->gpu_registered = kvt_gpu_host_register(p, size) == 0;
	if (!n->gpu_registered)
		(void)mlock(p, size);
	h->arena_total += size;
	return 0;
}

static struct free_list *list_for(struct host_tier *h, uint64_t size, int create)
{
	for (size_t i = 0; i < h->n_lists; i++)
		if (h->lists[i].size == size)
			return &h->lists[i];
	if (!create)
		return NULL;
	struct free_list *l = realloc(h->lists, (h->n_lists + 1) * sizeof *l);
	if (!l)
		return NULL;
	h->lists = l;
	l[h->n_lists] = (struct free_list){.size = size};
	return &l[h->n_lists++];
}

static int bump(struct host_tier *h, uint64_t size, struct extent *out)
{
	for (uint32_t i = 0; i < h->n_arenas; i++) {
		struct arena *a = &h->arenas[h->n_arenas - 1 - i];
		if (a->size - a->top >= size) {
			*out = (struct extent){h->n_arenas - 1 - i, a->top};
			a->top += size;
			return 0;
		}
	}
	return KVT_ENOSPACE;
}

static int alloc_extent(struct host_tier *h, uint64_t size, struct extent *out)
{
	if (h->budget && h->used + size > h->budget)
		return KVT_ENOSPACE;
	struct free_list *l = list_for(h, size, 0);
	if (l && l->n) {
		*out = l->v[--l->n];
		return 0;
	}
	if (bump(h, size, out) == 0)
		return 0;
	if (h->budget && h->arena_total + size > h->budget + h->arena_bytes)
		return KVT_ENOSPACE;
	int rc = arena_add(h, size);
	return rc ? rc : bump(h, size, out);
}

/* Never fails for lack of memory: a lost extent only wastes space. */
static void free_extent(struct host_tier *h, struct extent e, uint64_t size)
{
	struct free_list *l = list_for(h, size, 1);
	if (!l)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct extent *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = e;
}

static uint8_t *extent_ptr(struct host_tier *h, struct extent e)
{
	return h->arenas[e.arena].base + e.offset;
}

/* ---------------------------------------------------------------- entries */

static int entry_new(struct host_tier *h, uint32_t *out)
{
	if (h->n_free_entries) {
		*out = h->free_entries[--h->n_free_entries];
		return 0;
	}
	if (h->n_entries == h->cap_entries) {
		size_t cap = h->cap_entries ? h->cap_entries * 2 : 256;
		struct entry *e = realloc(h->entries, cap * sizeof *e);
		uint32_t *f = realloc(h->free_entries, cap * sizeof *f);
		if (e)
			h->entries = e;
		if (f)
			h->free_entries = f;
		if (!e || !f)
			return -ENOMEM;
		h->cap_entries = cap;
	}
	*out = (uint32_t)h->n_entries++;
	return 0;
}

static struct entry *lookup(struct host_tier *h, const struct kvt_block_key *k)
{
	uint32_t i;
	if (kvt_hmap_get(&h->index, hkey(k), &i))
		return NULL;
	return &h->entries[i];
}

/* ---------------------------------------------------------------- ops */

static int host_replace(struct host_tier *h, struct entry *e, const void *data,
			const struct kvt_block_meta *meta)
{
	uint64_t size = round_up(meta->len);
	struct extent x;
	if (size != e->size) {
		/* Allocate first so a failure leaves the old value intact. */
		h->used -= e->size;
		int rc = alloc_extent(h, size, &x);
		h->used += e->size;
		if (rc)
			return rc;
		free_extent(h, e->at, e->size);
		h->used = h->used - e->size + size;
		e->at = x;
		e->size = size;
	}
	memcpy(extent_ptr(h, e->at), data, meta->len);
	e->meta = *meta;
	return 0;
}

static int host_put(struct kvt_tier *t, const struct kvt_block_key *key,
		    const void *data, const struct kvt_block_meta *meta)
{
	struct host_tier *h = host(t);
	struct entry *old = lookup(h, key);
	if (old)
		return host_replace(h, old, data, meta);
	uint64_t size = round_up(meta->len);
	struct extent x;
	uint32_t i;
	int rc = alloc_extent(h, size, &x);
	if (rc)
		return rc;
	rc = entry_new(h, &i);
	if (rc == 0 && (rc = kvt_hmap_put(&h->index, hkey(key), i)))
		h->free_entries[h->n_free_entries++] = i;
	if (rc) {
		free_extent(h, x, size);
		return rc;
	}
	h->entries[i] = (struct entry){*key, *meta, x, size, 1};
	h->used += size;
	memcpy(extent_ptr(h, x), data, meta->len);
	return 0;
}

static int host_get(struct kvt_tier *t, const struct kvt_block_key *key,
		    void *dst, size_t cap, struct kvt_block_meta *meta)
{
	struct host_tier *h = host(t);
	struct entry *e = lookup(h, key);
	if (!e)
		return KVT_ENOTFOUND;
	if (cap < e->meta.len)
		return -ENOBUFS;
	memcpy(dst, extent_ptr(h, e->at), e->meta.len);
	if (meta)
		*meta = e->meta;
	return 0;
}

static int host_stat(struct kvt_tier *t, const struct kvt_block_key *key,
		     struct kvt_block_meta *meta)
{
	struct entry *e = lookup(host(t), key);
	if (!e)
		return KVT_ENOTFOUND;
	*meta = e->meta;
	return 0;
}

static int host_del(struct kvt_tier *t, const struct kvt_block_key *key)
{
	struct host_tier *h = host(t);
	uint32_t i;
	if (kvt_hmap_get(&h->index, hkey(key), &i))
		return KVT_ENOTFOUND;
	struct entry *e = &h->entries[i];
	kvt_hmap_del(&h->index, hkey(key));
	free_extent(h, e->at, e->size);
	h->used -= e->size;
	e->used = 0;
	h->free_entries[h->n_free_entries++] = i;
	return 0;
}

static int host_iter(struct kvt_tier *t, kvt_tier_iter_fn fn, void *ctx)
{
	struct host_tier *h = host(t);
	for (size_t i = 0; i < h->n_entries; i++) {
		if (!h->entries[i].used)
			continue;
		int rc = fn(ctx, &h->entries[i].key, &h->entries[i].meta);
		if (rc)
			return rc;
	}
	return 0;
}

static int host_usage(struct kvt_tier *t, struct kvt_tier_usage *out)
{
	struct host_tier *h = host(t);
	*out = (struct kvt_tier_usage){1, h->budget, h->used, h->index.n};
	return 0;
}

static int host_locate(struct kvt_tier *t, const struct kvt_block_key *key,
		       struct kvt_block_loc *loc)
{
	struct host_tier *h = host(t);
	struct entry *e = lookup(h, key);
	if (!e)
		return KVT_ENOTFOUND;
	*loc = (struct kvt_block_loc){extent_ptr(h, e->at),
				      h->arenas[e->at.arena].fd, e->at.offset,
				      e->meta.len};
	return 0;
}

static void host_destroy(struct kvt_tier *t)
{
	struct host_tier *h = host(t);
	for (uint32_t i = 0; i < h->n_arenas; i++) {
		struct arena *a = &h->arenas[i];
		if (a->gpu_registered)
			kvt_gpu_host_unregister(a->base);
		munmap(a->base, a->size);
		close(a->fd);
	}
	for (size_t i = 0; i < h->n_lists; i++)
		free(h->lists[i].v);
	kvt_hmap_free(&h->index);
	free(h->arenas);
	free(h->lists);
	free(h->entries);
	free(h->free_entries);
	free(h);
}

static const struct kvt_tier_ops host_ops = {
	.name = "host",
	.put = host_put,
	.get = host_get,
	.stat = host_stat,
	.del = host_del,
	.iter = host_iter,
	.usage = host_usage,
	.locate = host_locate,
	.destroy = host_destroy,
};

int kvt_host_tier_create(uint64_t budget, struct kvt_tier **out)
{
	struct host_tier *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->base = (struct kvt_tier){&host_ops, KVT_TIER_HOST};
	h->budget = budget;
	h->arena_bytes = budget && budget < ARENA_BYTES ? round_up(budget) : ARENA_BYTES;
	*out = &h->base;
	return 0;
}
