/*
 * meta.c - named metadata blobs kept with a cache (retrieval indexes, ...).
 *
 * In memory each cache holds a sorted list of blobs. With a disk tier every
 * blob is also a catalog record named "<cache>/<key>" (cache names cannot
 * contain '/'), value: magic, version, xxh3 of the data, the data. Records
 * whose cache no longer exists (a crash inside a drop) are deleted at open.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "checksum.h"
#include "store_internal.h"

#define META_MAGIC 0x4d54564bu /* "KVTM" */
#define META_VERSION 1u
#define META_HEAD 16

struct meta_rec {
	char key[KVT_META_KEY_MAX + 1];
	uint8_t *data;
	size_t len;
	int corrupt; /* failed its checksum when loaded */
	struct meta_rec *next;
};

static int key_ok(const char *key)
{
	size_t n = key ? strlen(key) : 0;
	if (n < 1 || n > KVT_META_KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (key[i] <= ' ' || key[i] == '/' || key[i] == 0x7f)
			return 0;
	return 1;
}

static void full_name(char *out, const char *cache, const char *key)
{
	strcpy(out, cache);
	strcat(out, "/");
	strcat(out, key);
}

static struct meta_rec **find(struct cache_rec *c, const char *key)
{
	struct meta_rec **pp = &c->meta;
	while (*pp && strcmp((*pp)->key, key) < 0)
		pp = &(*pp)->next;
	return pp;
}

static void rec_free(struct meta_rec *m)
{
	if (m) {
		free(m->data);
		free(m);
	}
}

void kvt_meta_free_all(struct cache_rec *c)
{
	while (c->meta) {
		struct meta_rec *m = c->meta;
		c->meta = m->next;
		rec_free(m);
	}
}

/* ---------------------------------------------------------------- disk */

static int persist_locked(struct kvt_store *st, const char *cache,
			  const struct meta_rec *m)
{
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	if (!d)
		return 0;
	uint8_t *rec = malloc(META_HEAD + m->len);
	if (!rec)
		return -ENOMEM;
	kvt_put_u32(rec, META_MAGIC);
	kvt_put_u32(rec + 4, META_VERSION);
	kvt_put_u64(rec + 8, kvt_checksum(m->data, m->len));
	memcpy(rec + META_HEAD, m->data, m->len);
	char name[KVT_NAME_MAX + KVT_META_KEY_MAX + 2];
	full_name(name, cache, m->key);
	int rc = d->ops->catalog_put(d, name, rec, META_HEAD + m->len);
	free(rec);
	return rc;
}

static int unpersist_locked(struct kvt_store *st, const char *cache,
			    const char *key)
{
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	char name[KVT_NAME_MAX + KVT_META_KEY_MAX + 2];
	if (!d)
		return 0;
	full_name(name, cache, key);
	int rc = d->ops->catalog_del(d, name);
	return rc == KVT_ENOTFOUND ? 0 : rc;
}

static int remember_orphan(struct kvt_store *st, const char *name)
{
	char **o = realloc(st->meta_orphans,
			   (st->n_meta_orphans + 1) * sizeof *o);
	if (!o)
		return -ENOMEM;
	st->meta_orphans = o;
	if (!(o[st->n_meta_orphans] = strdup(name)))
		return -ENOMEM;
	st->n_meta_orphans++;
	return 0;
}

static struct meta_rec *decode(const char *key, const uint8_t *rec,
			       size_t len)
{
	struct meta_rec *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	strcpy(m->key, key);
	if (len < META_HEAD || kvt_get_u32(rec) != META_MAGIC ||
	    kvt_get_u32(rec + 4) != META_VERSION) {
		m->corrupt = 1;
		return m;
	}
	m->len = len - META_HEAD;
	if (!(m->data = malloc(m->len ? m->len : 1))) {
		free(m);
		return NULL;
	}
	memcpy(m->data, rec + META_HEAD, m->len);
	m->corrupt = kvt_checksum(m->data, m->len) != kvt_get_u64(rec + 8);
	return m;
}

int kvt_meta_adopt_locked(struct kvt_store *st, const char *name,
			  const void *rec, size_t len)
{
	const char *slash = strchr(name, '/');
	char cache[KVT_NAME_MAX + 1];
	size_t n = (size_t)(slash - name);
	if (n == 0 || n > KVT_NAME_MAX || !key_ok(slash + 1))
		return remember_orphan(st, name);
	memcpy(cache, name, n);
	cache[n] = '\0';
	struct cache_rec *c = kvt_store_find_locked(st, cache);
	if (!c)
		return remember_orphan(st, name);
	struct meta_rec *m = decode(slash + 1, rec, len);
	if (!m)
		return -ENOMEM;
	struct meta_rec **pp = find(c, m->key);
	m->next = *pp;
	*pp = m;
	return 0;
}

int kvt_meta_reclaim_locked(struct kvt_store *st)
{
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	int rc = 0;
	for (size_t i = 0; i < st->n_meta_orphans; i++) {
		int r = d ? d->ops->catalog_del(d, st->meta_orphans[i]) : 0;
		if (r && r != KVT_ENOTFOUND && !rc)
			rc = r;
		free(st->meta_orphans[i]);
	}
	free(st->meta_orphans);
	st->meta_orphans = NULL;
	st->n_meta_orphans = 0;
	return rc;
}

int kvt_meta_drop_locked(struct kvt_store *st, struct cache_rec *c)
{
	int rc = 0;
	for (struct meta_rec *m = c->meta; m && rc == 0; m = m->next)
		rc = unpersist_locked(st, c->name, m->key);
	return rc;
}

int kvt_meta_rename_locked(struct kvt_store *st, struct cache_rec *c,
			   const char *old_name)
{
	int rc = 0;
	for (struct meta_rec *m = c->meta; m && rc == 0; m = m->next) {
		if (m->corrupt)
			continue;
		rc = persist_locked(st, c->name, m);
		if (rc == 0)
			rc = unpersist_locked(st, old_name, m->key);
	}
	return rc;
}

/* ---------------------------------------------------------------- API */

static int lock_cache(struct kvt_cache *cache, const char *key)
{
	if (!cache || !key_ok(key))
		return -EINVAL;
	pthread_mutex_lock(&cache->st->lock);
	return 0;
}

int kvt_cache_meta_put(struct kvt_cache *cache, const char *key,
		       const void *data, size_t len)
{
	if (len > KVT_META_MAX_BYTES)
		return KVT_ETOOBIG;
	if ((!data && len) || lock_cache(cache, key))
		return -EINVAL;
	struct kvt_store *st = cache->st;
	struct cache_rec *c = cache->rec;
	struct meta_rec *m = calloc(1, sizeof *m);
	int rc = m && (m->data = malloc(len ? len : 1)) ? 0 : -ENOMEM;
	if (rc == 0) {
		strcpy(m->key, key);
		m->len = len;
		if (len)
			memcpy(m->data, data, len);
		rc = persist_locked(st, c->name, m);
	}
	if (rc == 0) {
		struct meta_rec **pp = find(c, key);
		if (*pp && !strcmp((*pp)->key, key)) {
			struct meta_rec *old = *pp;
			m->next = old->next;
			rec_free(old);
		} else {
			m->next = *pp;
		}
		*pp = m;
		m = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	rec_free(m);
	return rc;
}

int kvt_cache_meta_get(struct kvt_cache *cache, const char *key, void **data,
		       size_t *len)
{
	if (!data || !len || lock_cache(cache, key))
		return -EINVAL;
	struct meta_rec *m = *find(cache->rec, key);
	int rc = !m || strcmp(m->key, key) ? KVT_ENOTFOUND
		 : m->corrupt		  ? KVT_ECORRUPT
					  : 0;
	if (rc == 0 && !(*data = malloc(m->len ? m->len : 1)))
		rc = -ENOMEM;
	if (rc == 0) {
		memcpy(*data, m->data, m->len);
		*len = m->len;
	}
	pthread_mutex_unlock(&cache->st->lock);
	return rc;
}

int kvt_cache_meta_del(struct kvt_cache *cache, const char *key)
{
	if (lock_cache(cache, key))
		return -EINVAL;
	struct cache_rec *c = cache->rec;
	struct meta_rec **pp = find(c, key), *m = *pp;
	int rc = !m || strcmp(m->key, key) ? KVT_ENOTFOUND : 0;
	if (rc == 0)
		rc = unpersist_locked(cache->st, c->name, key);
	if (rc == 0) {
		*pp = m->next;
		rec_free(m);
	}
	pthread_mutex_unlock(&cache->st->lock);
	return rc;
}

int kvt_cache_meta_list(struct kvt_cache *cache,
			char (**keys)[KVT_META_KEY_MAX + 1], size_t *n)
{
	if (!cache || !keys || !n)
		return -EINVAL;
	pthread_mutex_lock(&cache->st->lock);
	size_t count = 0;
	for (struct meta_rec *m = cache->rec->meta; m; m = m->next)
		count++;
	*keys = count ? malloc(count * sizeof **keys) : NULL;
	int rc = count && !*keys ? -ENOMEM : 0;
	*n = rc ? 0 : count;
	size_t i = 0;
	for (struct meta_rec *m = cache->rec->meta; rc == 0 && m; m = m->next)
		strcpy((*keys)[i++], m->key);
	pthread_mutex_unlock(&cache->st->lock);
	return rc;
}
