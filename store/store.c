/*
 * store.c - opening and closing a store, its catalog of caches, restart
 * recovery, statistics and listing.
 *
 * The catalog record of a cache (its id and configuration) is kept on the
 * disk tier under the cache's name; blocks carry the cache id in their key.
 * At open, caches come back from the catalog and blocks from the disk
 * tier's index; blocks whose cache is gone (a drop interrupted by a crash)
 * are deleted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "store_internal.h"

#define CATALOG_MAGIC 0x43545654u /* "TVTC" */
#define CATALOG_VERSION 1
#define CATALOG_BYTES 64

struct cache_rec *kvt_store_find_locked(struct kvt_store *st, const char *name)
{
	for (struct cache_rec *c = st->caches; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

struct cache_rec *kvt_store_find_id_locked(struct kvt_store *st, uint64_t id)
{
	for (struct cache_rec *c = st->caches; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/* ---------------------------------------------------------------- catalog */

void kvt_catalog_encode(const struct cache_rec *c, uint8_t *o)
{
	const struct kvt_cache_config *k = &c->cfg;
	uint32_t ratio;
	memset(o, 0, CATALOG_BYTES);
	memcpy(&ratio, &k->cold.salient_ratio, 4);
	kvt_put_u32(o + 0, CATALOG_MAGIC);
	kvt_put_u16(o + 4, CATALOG_VERSION);
	kvt_put_u64(o + 8, c->id);
	kvt_put_u32(o + 16, k->shape.n_layers);
	kvt_put_u32(o + 20, k->shape.n_kv_heads);
	kvt_put_u32(o + 24, k->shape.head_dim);
	kvt_put_u32(o + 28, k->shape.block_tokens);
	o[32] = (uint8_t)k->shape.dtype;
	o[33] = (uint8_t)k->cold.id;
	o[34] = k->cold.bits;
	o[35] = k->cold.high_bits;
	kvt_put_u16(o + 36, k->cold.group);
	kvt_put_u32(o + 40, k->cold.residual);
	kvt_put_u32(o + 44, ratio);
	kvt_put_u32(o + 48, k->recent_tokens);
}

int kvt_catalog_decode(const uint8_t *s, size_t len, struct cache_rec *c)
{
	struct kvt_cache_config *k = &c->cfg;
	uint32_t ratio;
	if (len != CATALOG_BYTES || kvt_get_u32(s) != CATALOG_MAGIC)
		return KVT_ECORRUPT;
	if (kvt_get_u16(s + 4) != CATALOG_VERSION)
		return KVT_EVERSION;
	memset(k, 0, sizeof *k);
	c->id = kvt_get_u64(s + 8);
	k->shape.n_layers = kvt_get_u32(s + 16);
	k->shape.n_kv_heads = kvt_get_u32(s + 20);
	k->shape.head_dim = kvt_get_u32(s + 24);
	k->shape.block_tokens = kvt_get_u32(s + 28);
	k->shape.dtype = s[32];
	k->cold.id = s[33];
	k->cold.bits = s[34];
	k->cold.high_bits = s[35];
	k->cold.group = kvt_get_u16(s + 36);
	k->cold.residual = kvt_get_u32(s + 40);
	ratio = kvt_get_u32(s + 44);
	memcpy(&k->cold.salient_ratio, &ratio, 4);
	k->recent_tokens = kvt_get_u32(s + 48);
	return kvt_cache_config_check(k) ? KVT_ECORRUPT : 0;
}

int kvt_catalog_put_locked(struct kvt_store *st, const struct cache_rec *c)
{
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	uint8_t rec[CATALOG_BYTES];
	if (!d)
		return 0;
	kvt_catalog_encode(c, rec);
	return d->ops->catalog_put(d, c->name, rec, sizeof rec);
}

int kvt_catalog_del_locked(struct kvt_store *st, const char *name)
{
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	return d ? d->ops->catalog_del(d, name) : 0;
}

/* ---------------------------------------------------------------- restart */

static int load_cache(void *ctx, const char *name, const void *rec, size_t len)
{
	struct kvt_store *st = ctx;
	if (strchr(name, '/'))
		return kvt_meta_adopt_locked(st, name, rec, len);
	struct cache_rec *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	int rc = strlen(name) > KVT_NAME_MAX ? KVT_ECORRUPT
					     : kvt_catalog_decode(rec, len, c);
	if (rc == 0) {
		strcpy(c->name, name);
		rc = kvt_cache_rec_init(c);
	}
	if (rc) {
		free(c);
		return rc;
	}
	c->next = st->caches;
	st->caches = c;
	if (c->id >= st->next_id)
		st->next_id = c->id + 1;
	return 0;
}

struct orphans {
	struct kvt_block_key *keys;
	size_t n, cap;
	int rc;
};

static int load_block(void *ctx, const struct kvt_block_key *key,
		      const struct kvt_block_meta *meta)
{
	struct kvt_store *st = ((void **)ctx)[0];
	struct orphans *o = ((void **)ctx)[1];
	struct cache_rec *c = kvt_store_find_id_locked(st, key->cache_id);
	if (c && key->layer < c->cfg.shape.n_layers)
		return kvt_block_adopt_locked(st, key, meta, BLOCK_ON_DISK);
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 64;
		struct kvt_block_key *k = realloc(o->keys, cap * sizeof *k);
		if (!k)
			return -ENOMEM;
		o->keys = k;
		o->cap = cap;
	}
	o->keys[o->n++] = *key;
	return 0;
}

/* Caches named ".load-*" are half-loaded snapshots of a crashed process. */
static int drop_hidden(struct kvt_store *st)
{
	for (struct cache_rec *c = st->caches; c; c = c->next) {
		if (strncmp(c->name, ".load-", 6))
			continue;
		char name[KVT_NAME_MAX + 1];
		strcpy(name, c->name);
		pthread_mutex_unlock(&st->lock);
		int rc = kvt_cache_drop(st, name);
		pthread_mutex_lock(&st->lock);
		if (rc)
			return rc;
		c = st->caches; /* the list changed: start over */
		if (!c)
			break;
	}
	return 0;
}

static int recover(struct kvt_store *st)
{
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	struct orphans o = {0};
	void *ctx[2] = {st, &o};
	int rc = d->ops->catalog_iter(d, load_cache, st);
	if (rc == 0)
		rc = d->ops->iter(d, load_block, ctx);
	for (size_t i = 0; rc == 0 && i < o.n; i++)
		d->ops->del(d, &o.keys[i]);
	free(o.keys);
	for (struct cache_rec *c = st->caches; rc == 0 && c; c = c->next)
		rc = kvt_cache_recover_locked(st, c);
	if (rc == 0)
		rc = kvt_meta_reclaim_locked(st);
	return rc ? rc : drop_hidden(st);
}

/* ---------------------------------------------------------------- open/close */

/* One process at a time per data directory: an exclusive flock on
 * DIR/lock, released by the kernel when the process dies. */
static int lock_data_dir(struct kvt_store *st)
{
	char path[4096];
	if (mkdir(st->data_dir, 0700) && errno != EEXIST)
		return -errno;
	if (snprintf(path, sizeof path, "%s/lock", st->data_dir) >= (int)sizeof path)
		return -ENAMETOOLONG;
	st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lock_fd < 0)
		return -errno;
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB))
		return errno == EWOULDBLOCK ? KVT_EBUSY : -errno;
	return 0;
}

static int open_tiers(struct kvt_store *st)
{
	int rc = st->data_dir ? lock_data_dir(st) : 0;
	rc = rc ? rc : kvt_host_tier_create(st->cfg.host_bytes, &st->tier[KVT_TIER_HOST]);
	if (rc == 0 && st->data_dir)
		rc = kvt_disk_tier_create(st->data_dir, st->cfg.disk_bytes,
					  st->cfg.zstd_level,
					  &st->tier[KVT_TIER_DISK]);
	/* The GPU tier serves reloads (reload.c); without CUDA or a device
	 * it is simply absent, other failures (device memory) are errors. */
	if (rc == 0 && st->cfg.gpu_bytes) {
		rc = kvt_gpu_tier_create(st->cfg.gpu_bytes, &st->tier[KVT_TIER_GPU]);
		if (rc == KVT_ENOGPU) {
			st->tier[KVT_TIER_GPU] = NULL;
			rc = 0;
		}
	}
	return rc;
}

static void free_store(struct kvt_store *st)
{
	while (st->caches) {
		struct cache_rec *c = st->caches;
		st->caches = c->next;
		kvt_cache_rec_free(c);
	}
	for (int t = 0; t < KVT_TIER_COUNT; t++)
		kvt_tier_destroy(st->tier[t]);
	kvt_gpu_dir_free(st);
	kvt_reload_spare_free(st);
	kvt_append_device_free(st);
	kvt_blocks_free(st);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	for (size_t i = 0; i < st->n_meta_orphans; i++)
		free(st->meta_orphans[i]);
	free(st->meta_orphans);
	pthread_mutex_destroy(&st->lock);
	free(st->data_dir);
	free(st);
}

int kvt_store_open(const struct kvt_store_config *cfg, struct kvt_store **out)
{
	if (!cfg || !out || cfg->zstd_level < 0 || cfg->zstd_level > 22)
		return -EINVAL;
	struct kvt_store *st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	st->cfg = *cfg;
	st->cfg.data_dir = NULL;
	st->next_id = 1;
	st->lru_head = st->lru_tail = KVT_NIL;
	st->gpu_head = st->gpu_tail = KVT_NIL;
	st->lock_fd = -1;
	pthread_mutex_init(&st->lock, NULL);
	int rc = 0;
	if (cfg->data_dir && !(st->data_dir = strdup(cfg->data_dir)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = open_tiers(st);
	if (rc == 0 && st->tier[KVT_TIER_DISK]) {
		pthread_mutex_lock(&st->lock);
		rc = recover(st);
		pthread_mutex_unlock(&st->lock);
	}
	if (rc) {
		free_store(st);
		return rc;
	}
	*out = st;
	return 0;
}

static int flush_locked(struct kvt_store *st)
{
	int rc = 0;
	if (!st->tier[KVT_TIER_DISK])
		return 0;
	for (struct cache_rec *c = st->caches; c && rc == 0; c = c->next)
		rc = kvt_cache_flush_tails_locked(st, c);
	if (rc == 0)
		rc = kvt_blocks_flush_locked(st);
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	if (rc == 0 && d->ops->sync)
		rc = d->ops->sync(d);
	return rc;
}

int kvt_store_flush(struct kvt_store *st)
{
	if (!st)
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	int rc = flush_locked(st);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

void kvt_store_close(struct kvt_store *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	(void)flush_locked(st);
	pthread_mutex_unlock(&st->lock);
	free_store(st);
}

/* ---------------------------------------------------------------- queries */

static void fill_info(const struct cache_rec *c, struct kvt_cache_info *o)
{
	memset(o, 0, sizeof *o);
	strcpy(o->name, c->name);
	o->id = c->id;
	o->config = c->cfg;
	o->n_tokens = c->layers[0].n_tokens;
	o->n_blocks = c->n_blocks;
	o->raw_bytes = c->raw_bytes;
	o->stored_bytes = c->stored_bytes;
}

int kvt_cache_get_info(struct kvt_cache *cache, struct kvt_cache_info *out)
{
	if (!cache || !out)
		return -EINVAL;
	pthread_mutex_lock(&cache->st->lock);
	fill_info(cache->rec, out);
	pthread_mutex_unlock(&cache->st->lock);
	return 0;
}

int kvt_store_list(struct kvt_store *st, struct kvt_cache_info **out, size_t *n)
{
	if (!st || !out || !n)
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	size_t count = 0;
	/* Hidden caches (a snapshot being loaded) are not listed. */
	for (struct cache_rec *c = st->caches; c; c = c->next)
		count += c->name[0] != '.';
	struct kvt_cache_info *v = count ? malloc(count * sizeof *v) : NULL;
	if (count && !v) {
		pthread_mutex_unlock(&st->lock);
		return -ENOMEM;
	}
	size_t i = 0;
	for (struct cache_rec *c = st->caches; c; c = c->next)
		if (c->name[0] != '.')
			fill_info(c, &v[i++]);
	pthread_mutex_unlock(&st->lock);
	*out = v;
	*n = count;
	return 0;
}

int kvt_store_stats(struct kvt_store *st, struct kvt_stats *out)
{
	if (!st || !out)
		return -EINVAL;
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&st->lock);
	for (int t = 0; t < KVT_TIER_COUNT; t++)
		if (st->tier[t])
			st->tier[t]->ops->usage(st->tier[t], &out->tier[t]);
	for (struct cache_rec *c = st->caches; c; c = c->next)
		out->n_caches++;
	out->n_blocks = st->dir.n;
	out->raw_bytes = st->raw_bytes;
	out->stored_bytes = st->stored_bytes;
	out->compression_ratio = st->stored_bytes
		? (double)st->raw_bytes / (double)st->stored_bytes : 1.0;
	out->demotions = st->demotions;
	out->promotions = st->promotions;
	pthread_mutex_unlock(&st->lock);
	return 0;
}
