/*
 * fake_store.c - a minimal in-memory implementation of the kvtier.h store
 * API (raw blocks only), plus kvt_daemon_locate over two memfd arenas
 * (even blocks in one, odd blocks in the other, as a host tier with
 * several arenas), so the daemon can be tested on its own. Blocks are
 * full-size raw blocks bump-allocated in the arenas, which are mapped
 * back to back; nothing is freed (only the test hook moves blocks).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "checksum.h"
#include "kvtier/kvtier.h"
#include "kvtier/snapshot.h"
#include "locate.h"
#include "retrieve.h"

#define ARENA_BYTES (512ull << 20) /* both arenas */
#define HALF (ARENA_BYTES / 2)
#define MAX_CACHES 64
#define MAX_BLOCKS 4096

struct entry {
	char name[KVT_NAME_MAX + 1];
	uint64_t id;
	struct kvt_cache_config cfg;
	uint64_t *tokens;          /* per layer */
	uint64_t (*blocks)[MAX_BLOCKS]; /* per layer: arena offset + 1, 0 = none */
	int handles;
	int live;
};

struct kvt_store {
	pthread_mutex_t lock;
	int fd[2];
	uint8_t *arena;   /* arena a at arena + a * HALF */
	uint64_t used[2];
	uint64_t next_id;
	struct entry e[MAX_CACHES];
};

struct kvt_cache {
	struct kvt_store *st;
	struct entry *e;
};

void kvt_store_config_init(struct kvt_store_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->host_bytes = 1ull << 30;
}

void kvt_cache_config_init(struct kvt_cache_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->shape.block_tokens = 16;
	cfg->shape.dtype = KVT_DTYPE_F16;
	cfg->recent_tokens = 128;
}

int kvt_store_open(const struct kvt_store_config *cfg, struct kvt_store **out)
{
	(void)cfg;
	struct kvt_store *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->arena = mmap(NULL, ARENA_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	for (int a = 0; a < 2; a++) {
		s->fd[a] = memfd_create("fake-arena", MFD_CLOEXEC);
		if (s->fd[a] < 0 || ftruncate(s->fd[a], HALF) ||
		    mmap(s->arena + a * HALF, HALF, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, s->fd[a], 0) == MAP_FAILED)
			return -errno;
	}
	pthread_mutex_init(&s->lock, NULL);
	*out = s;
	return 0;
}

void kvt_store_close(struct kvt_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < MAX_CACHES; i++) {
		free(s->e[i].tokens);
		free(s->e[i].blocks);
	}
	munmap(s->arena, ARENA_BYTES);
	close(s->fd[0]);
	close(s->fd[1]);
	free(s);
}

int kvt_store_flush(struct kvt_store *s)
{
	(void)s;
	return 0;
}

static struct entry *find(struct kvt_store *s, const char *name)
{
	for (int i = 0; i < MAX_CACHES; i++)
		if (s->e[i].live && !strcmp(s->e[i].name, name))
			return &s->e[i];
	return NULL;
}

static int handle(struct kvt_store *s, struct entry *e, struct kvt_cache **out)
{
	struct kvt_cache *c = malloc(sizeof *c);
	if (!c)
		return -ENOMEM;
	c->st = s;
	c->e = e;
	e->handles++;
	*out = c;
	return 0;
}

int kvt_cache_create(struct kvt_store *s, const char *name,
		     const struct kvt_cache_config *cfg, struct kvt_cache **out)
{
	if (!name[0] || strchr(name, '/') || kvt_shape_check(&cfg->shape) ||
	    cfg->shape.n_layers > 64)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	int rc = find(s, name) ? KVT_EEXIST : -ENOSPC;
	for (int i = 0; rc == -ENOSPC && i < MAX_CACHES; i++) {
		struct entry *e = &s->e[i];
		if (e->live)
			continue;
		free(e->tokens);
		free(e->blocks);
		memset(e, 0, sizeof *e);
		strcpy(e->name, name);
		e->id = ++s->next_id;
		e->cfg = *cfg;
		e->tokens = calloc(cfg->shape.n_layers, sizeof *e->tokens);
		e->blocks = calloc(cfg->shape.n_layers, sizeof *e->blocks);
		e->live = 1;
		rc = handle(s, e, out);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int kvt_cache_open(struct kvt_store *s, const char *name, struct kvt_cache **out)
{
	pthread_mutex_lock(&s->lock);
	struct entry *e = find(s, name);
	int rc = e ? handle(s, e, out) : KVT_ENOTFOUND;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void kvt_cache_close(struct kvt_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->st->lock);
	c->e->handles--;
	pthread_mutex_unlock(&c->st->lock);
	free(c);
}

int kvt_cache_drop(struct kvt_store *s, const char *name)
{
	pthread_mutex_lock(&s->lock);
	struct entry *e = find(s, name);
	int rc = !e ? KVT_ENOTFOUND : e->handles ? KVT_EBUSY : 0;
	if (!rc)
		e->live = 0;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static size_t row(const struct kvt_shape *sh)
{
	return sh->head_dim * kvt_dtype_size(sh->dtype);
}

/* Takes len bytes of arena a into *slot (offset + 1); 0 when full. */
static int alloc_slot(struct kvt_store *s, int a, size_t len, int alloc,
		      uint64_t *slot)
{
	if (!alloc || s->used[a] + len > HALF)
		return 0;
	*slot = a * HALF + s->used[a] + 1;
	s->used[a] += len;
	return 1;
}

/* Address of token t of head h, K (kv = 0) or V (kv = 1), allocating. */
static uint8_t *at(struct kvt_store *s, struct entry *e, uint32_t layer,
		   uint64_t t, uint32_t h, int kv, int alloc)
{
	const struct kvt_shape *sh = &e->cfg.shape;
	uint64_t b = t / sh->block_tokens;
	if (b >= MAX_BLOCKS)
		return NULL;
	uint64_t *slot = &e->blocks[layer][b];
	if (!*slot && !alloc_slot(s, b % 2, kvt_block_bytes(sh), alloc, slot))
		return NULL;
	size_t half = kvt_block_bytes(sh) / 2;
	return s->arena + *slot - 1 + kv * half +
	       ((size_t)h * sh->block_tokens + t % sh->block_tokens) * row(sh);
}

int kvt_cache_append(struct kvt_cache *c, uint32_t layer, uint32_t n,
		     const void *k, const void *v)
{
	struct entry *e = c->e;
	const struct kvt_shape *sh = &e->cfg.shape;
	if (layer >= sh->n_layers || !k || !v)
		return -EINVAL;
	pthread_mutex_lock(&c->st->lock);
	uint64_t first = e->tokens[layer];
	int rc = 0;
	for (uint32_t h = 0; h < sh->n_kv_heads && !rc; h++) {
		for (uint32_t t = 0; t < n; t++) {
			uint8_t *dk = at(c->st, e, layer, first + t, h, 0, 1);
			uint8_t *dv = at(c->st, e, layer, first + t, h, 1, 1);
			if (!dk || !dv) {
				rc = KVT_ENOSPACE;
				break;
			}
			size_t src = ((size_t)h * n + t) * row(sh);
			memcpy(dk, (const uint8_t *)k + src, row(sh));
			memcpy(dv, (const uint8_t *)v + src, row(sh));
		}
	}
	if (!rc)
		e->tokens[layer] += n;
	pthread_mutex_unlock(&c->st->lock);
	return rc;
}

int kvt_cache_read(struct kvt_cache *c, uint32_t layer, uint64_t first,
		   uint32_t n, void *k, void *v)
{
	struct entry *e = c->e;
	const struct kvt_shape *sh = &e->cfg.shape;
	if (layer >= sh->n_layers)
		return -EINVAL;
	pthread_mutex_lock(&c->st->lock);
	int rc = first + n > e->tokens[layer] ? KVT_ENOTFOUND : 0;
	for (uint32_t h = 0; h < sh->n_kv_heads && !rc; h++) {
		for (uint32_t t = 0; t < n; t++) {
			size_t dst = ((size_t)h * n + t) * row(sh);
			memcpy((uint8_t *)k + dst, at(c->st, e, layer, first + t, h, 0, 0), row(sh));
			memcpy((uint8_t *)v + dst, at(c->st, e, layer, first + t, h, 1, 0), row(sh));
		}
	}
	pthread_mutex_unlock(&c->st->lock);
	return rc;
}

static int block_of(struct kvt_cache *c, uint32_t layer, uint64_t block,
		    uint64_t *off, uint32_t *n_tokens)
{
	struct entry *e = c->e;
	const struct kvt_shape *sh = &e->cfg.shape;
	if (layer >= sh->n_layers)
		return -EINVAL;
	uint64_t first = block * sh->block_tokens;
	if (block >= MAX_BLOCKS || first >= e->tokens[layer])
		return KVT_ENOTFOUND;
	uint64_t left = e->tokens[layer] - first;
	*n_tokens = left < sh->block_tokens ? (uint32_t)left : sh->block_tokens;
	*off = e->blocks[layer][block] - 1;
	return 0;
}

int kvt_cache_read_block(struct kvt_cache *c, uint32_t layer, uint64_t block,
			 void *dst, size_t dst_len, uint32_t *n_tokens)
{
	size_t len = kvt_block_bytes(&c->e->cfg.shape);
	if (dst_len < len)
		return -ENOBUFS;
	pthread_mutex_lock(&c->st->lock);
	uint64_t off;
	uint32_t n;
	int rc = block_of(c, layer, block, &off, &n);
	if (!rc) {
		memcpy(dst, c->st->arena + off, len);
		if (n_tokens)
			*n_tokens = n;
	}
	pthread_mutex_unlock(&c->st->lock);
	return rc;
}

int kvt_daemon_locate(struct kvt_cache *c, uint32_t layer, uint64_t block,
		      struct kvt_block_loc *loc, struct kvt_block_meta *meta)
{
	size_t len = kvt_block_bytes(&c->e->cfg.shape);
	pthread_mutex_lock(&c->st->lock);
	uint64_t off;
	uint32_t n;
	int rc = block_of(c, layer, block, &off, &n);
	if (!rc) {
		*loc = (struct kvt_block_loc){c->st->arena + off,
					      c->st->fd[off / HALF], off % HALF,
					      (uint32_t)len};
		memset(meta, 0, sizeof *meta);
		meta->len = meta->raw_len = (uint32_t)len;
		meta->codec = KVT_CODEC_RAW;
		meta->n_tokens = (uint16_t)n;
		meta->checksum = kvt_checksum(c->st->arena + off, len);
	}
	pthread_mutex_unlock(&c->st->lock);
	return rc;
}

static void info_of(struct entry *e, struct kvt_cache_info *out)
{
	memset(out, 0, sizeof *out);
	strcpy(out->name, e->name);
	out->id = e->id;
	out->config = e->cfg;
	out->n_tokens = e->tokens[0];
	size_t bb = kvt_block_bytes(&e->cfg.shape);
	for (uint32_t l = 0; l < e->cfg.shape.n_layers; l++)
		for (int b = 0; b < MAX_BLOCKS; b++)
			out->n_blocks += e->blocks[l][b] != 0;
	out->raw_bytes = out->stored_bytes = out->n_blocks * bb;
}

int kvt_cache_get_info(struct kvt_cache *c, struct kvt_cache_info *out)
{
	pthread_mutex_lock(&c->st->lock);
	info_of(c->e, out);
	pthread_mutex_unlock(&c->st->lock);
	return 0;
}

int kvt_store_list(struct kvt_store *s, struct kvt_cache_info **out, size_t *n)
{
	pthread_mutex_lock(&s->lock);
	struct kvt_cache_info *a = calloc(MAX_CACHES, sizeof *a);
	size_t k = 0;
	for (int i = 0; a && i < MAX_CACHES; i++)
		if (s->e[i].live)
			info_of(&s->e[i], &a[k++]);
	pthread_mutex_unlock(&s->lock);
	if (!a)
		return -ENOMEM;
	if (!k) {
		free(a);
		a = NULL;
	}
	*out = a;
	*n = k;
	return 0;
}

int kvt_store_stats(struct kvt_store *s, struct kvt_stats *out)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < MAX_CACHES; i++)
		out->n_caches += s->e[i].live;
	out->tier[KVT_TIER_HOST].present = 1;
	out->tier[KVT_TIER_HOST].capacity = ARENA_BYTES;
	out->tier[KVT_TIER_HOST].used_bytes = s->used[0] + s->used[1];
	out->compression_ratio = 1.0;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Test hook: moves a block to a fresh arena slot and scribbles over the
 * old one, as a store does when it evicts a block and reuses its slot. */
int fake_store_move_block(struct kvt_store *s, const char *name,
			  uint32_t layer, uint64_t block)
{
	pthread_mutex_lock(&s->lock);
	struct entry *e = find(s, name);
	size_t len = e ? kvt_block_bytes(&e->cfg.shape) : 0;
	uint64_t slot;
	int rc = !e || !e->blocks[layer][block] ? KVT_ENOTFOUND
		 : !alloc_slot(s, block % 2, len, 1, &slot) ? KVT_ENOSPACE : 0;
	if (!rc) {
		uint64_t old = e->blocks[layer][block] - 1;
		memcpy(s->arena + slot - 1, s->arena + old, len);
		e->blocks[layer][block] = slot;
		memset(s->arena + old, 0xa5, len);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* The stand-in store has no retrieval index. */
int kvt_daemon_retrieve(struct kvt_cache *c, struct kvt_rindex **index,
			uint32_t layer, const struct kvt_retrieve_params *p,
			const float *q, struct kvt_selection *out)
{
	(void)c, (void)index, (void)layer, (void)p, (void)q, (void)out;
	return -ENOTSUP;
}

void kvt_daemon_retrieve_free(struct kvt_rindex *index)
{
	(void)index;
}

/* Snapshots are the real store's business (tests/store, test_kvtierd_store). */
int kvt_snapshot_save(struct kvt_store *st, const char *name, const char *path,
		      const struct kvt_snapshot_opts *opts,
		      struct kvt_snapshot_info *info)
{
	(void)st, (void)name, (void)path, (void)opts, (void)info;
	return -ENOTSUP;
}

int kvt_snapshot_load(struct kvt_store *st, const char *path,
		      const char *as_name, const struct kvt_snapshot_opts *opts,
		      struct kvt_snapshot_info *info)
{
	(void)st, (void)path, (void)as_name, (void)opts, (void)info;
	return -ENOTSUP;
}
