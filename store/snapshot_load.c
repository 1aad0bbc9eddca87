/*
 * snapshot_load.c - kvt_snapshot_inspect and kvt_snapshot_load.
 *
 * Both stream the file one section at a time and verify everything: the
 * header checksum and its totals against the file size (a truncated file
 * fails before any work), each section header's own checksum, each
 * section's content checksum (after zstd), every block record (layer and
 * index in order, sizes, codec headers, the block's own checksum), the
 * metadata pieces (keys in order, each blob whole), the END
 * section against what was read and the header, and that nothing follows.
 * Load streams the blocks into a hidden cache (".load-<id>") and renames it
 * only once all of that checked out (after a flush on a disk store, so the
 * loaded cache is durable); any failure drops the hidden cache, and one
 * left by a crash is dropped at the next open (store.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "bytes.h"
#include "checksum.h"
#include "kvtier/codec.h"
#include "snapshot_internal.h"
#include "store_internal.h"

struct reader {
	int fd;
	uint8_t *buf, *zbuf; /* content of the current section */
	size_t cap, zcap;
	uint64_t offset, size, max_section;
	const struct kvt_snapshot_opts *opts;
};

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (*cap >= need)
		return 0;
	uint8_t *p = realloc(*buf, need);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = need;
	return 0;
}

static int read_exact(struct reader *r, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t k = read(r->fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return KVT_EFORMAT; /* truncated */
		b += k;
		n -= (size_t)k;
		r->offset += (uint64_t)k;
	}
	return 0;
}

static int read_content(struct reader *r, const struct kvt_snapshot_section *s)
{
	if (s->codec == SNAP_CODEC_NONE)
		return read_exact(r, r->buf, s->raw_bytes);
	int rc = reserve(&r->zbuf, &r->zcap, s->stored_bytes + 1);
	rc = rc ? rc : read_exact(r, r->zbuf, s->stored_bytes);
	if (rc)
		return rc;
	size_t n = ZSTD_decompress(r->buf, s->raw_bytes, r->zbuf, s->stored_bytes);
	return ZSTD_isError(n) || n != s->raw_bytes ? KVT_ECORRUPT : 0;
}

/* Bytes the section checksum covers: a BLOCKS section's index only (its
 * blocks carry their own checksums, verified one by one), else all. */
static uint64_t checked_bytes(const uint8_t *p, const struct kvt_snapshot_section *s)
{
	if (s->type != KVT_SNAP_BLOCKS || s->raw_bytes < SNAP_BLOCKS_PREFIX)
		return s->raw_bytes;
	uint64_t n = SNAP_BLOCKS_PREFIX + (uint64_t)kvt_get_u32(p) * SNAP_RECORD_BYTES;
	return n < s->raw_bytes ? n : s->raw_bytes; /* a bad count: mismatch */
}

/* Reads, decompresses and verifies the next section into r->buf. */
static int read_section(struct reader *r, struct kvt_snapshot_section *s)
{
	uint8_t h[SNAP_SECTION_HEADER];
	uint64_t sum;
	s->offset = r->offset;
	int rc = read_exact(r, h, sizeof h);
	rc = rc ? rc : kvt_snap_section_decode(h, s, &sum);
	if (rc)
		return rc;
	if (s->raw_bytes > r->max_section ||
	    s->stored_bytes > r->size - r->offset)
		return KVT_EFORMAT;
	rc = reserve(&r->buf, &r->cap, s->raw_bytes + 1);
	rc = rc ? rc : read_content(r, s);
	if (rc == 0 && kvt_checksum(r->buf, checked_bytes(r->buf, s)) != sum)
		rc = KVT_ECORRUPT;
	return rc;
}

static int report(struct reader *r, const struct kvt_snapshot_section *s)
{
	const struct kvt_snapshot_opts *o = r->opts;
	int rc = o && o->section ? o->section(o->section_ctx, s) : 0;
	if (rc == 0 && o && o->progress)
		rc = o->progress(o->progress_ctx, r->offset, r->size);
	return rc;
}

static int read_header(struct reader *r, struct kvt_snapshot_info *info,
		       struct snap_totals *t)
{
	uint8_t h[SNAP_HEADER_MAX];
	int rc = read_exact(r, h, 16);
	if (rc == KVT_EFORMAT || (rc == 0 && memcmp(h, SNAP_MAGIC, 8)))
		return KVT_EFORMAT;
	uint32_t len = kvt_get_u32(h + 12);
	if (rc == 0 && (len < 24 || len > SNAP_HEADER_MAX))
		return KVT_EFORMAT;
	rc = rc ? rc : read_exact(r, h + 16, len - 16);
	rc = rc ? rc : kvt_snap_header_decode(h, len, info, t);
	if (rc == 0 && t->file_bytes != r->size)
		rc = KVT_EFORMAT; /* truncated, or bytes after the end */
	if (rc == 0)
		r->max_section = kvt_snap_section_max(&info->config);
	return rc;
}

static int open_reader(struct reader *r, const char *path,
		       const struct kvt_snapshot_opts *opts)
{
	struct stat sb;
	memset(r, 0, sizeof *r);
	r->opts = opts;
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0)
		return -errno;
	if (fstat(r->fd, &sb))
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -EINVAL;
	r->size = (uint64_t)sb.st_size;
	posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return 0;
}

static void close_reader(struct reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	free(r->zbuf);
}

/* ---------------------------------------------------------------- blocks */

/* Where the blocks of a verified section go, and what came before. */
struct sink {
	struct kvt_store *st;  /* NULL: inspect */
	struct cache_rec *c;   /* the hidden cache being filled */
	const struct kvt_cache_config *cfg;
	uint64_t *next;        /* per layer: the next block index expected */
	uint64_t *tokens;      /* per layer: tokens so far */
	uint8_t *closed;       /* per layer: a partial block ended it */
	struct kvt_snapshot_info *info;
	struct kvt_cache *h;   /* handle of c, for its metadata */
	/* the metadata blob being reassembled, and the one before */
	char key[KVT_META_KEY_MAX + 1], last_key[KVT_META_KEY_MAX + 1];
	int in_blob;
	uint8_t *blob;         /* NULL when inspecting */
	uint64_t blob_len, got;
};

/* A quantized block is two codec streams (K then V) for this shape. */
static int check_encoded(const struct kvt_cache_config *cfg, const uint8_t *p,
			 uint32_t len, unsigned codec)
{
	const struct kvt_shape *s = &cfg->shape;
	struct kvt_codec_header k, v;
	if (codec != (unsigned)cfg->cold.id || len < 2 * KVT_CODEC_HEADER_BYTES)
		return KVT_EFORMAT;
	uint64_t klen = KVT_CODEC_HEADER_BYTES + (uint64_t)kvt_get_u32(p + 32);
	if (klen > len - KVT_CODEC_HEADER_BYTES ||
	    kvt_codec_read_header(p, klen, &k) ||
	    kvt_codec_read_header(p + klen, len - klen, &v))
		return KVT_EFORMAT;
	int ok = k.codec == codec && v.codec == codec && k.kind == KVT_KIND_KEY &&
		 v.kind == KVT_KIND_VALUE &&
		 KVT_CODEC_HEADER_BYTES + (uint64_t)v.payload_len == len - klen;
	const struct kvt_codec_header *hs[2] = {&k, &v};
	for (int i = 0; i < 2; i++)
		ok = ok && hs[i]->heads == s->n_kv_heads &&
		     hs[i]->tokens == s->block_tokens && hs[i]->dim == s->head_dim &&
		     hs[i]->dtype == (uint8_t)s->dtype;
	return ok ? 0 : KVT_EFORMAT;
}

/* Checks one block record against the configuration and what came before. */
static int check_record(struct sink *s, const struct kvt_block_key *k,
			const struct kvt_block_meta *m, const uint8_t *data)
{
	const struct kvt_shape *sh = &s->cfg->shape;
	uint32_t bb = (uint32_t)kvt_block_bytes(sh);
	if (k->layer >= sh->n_layers || k->block != s->next[k->layer] ||
	    s->closed[k->layer] || m->n_tokens == 0 ||
	    m->n_tokens > sh->block_tokens || m->raw_len != bb || m->len > bb)
		return KVT_EFORMAT;
	if (kvt_checksum(data, m->len) != m->checksum)
		return KVT_ECORRUPT;
	if (m->codec == KVT_CODEC_RAW)
		return m->len == bb ? 0 : KVT_EFORMAT;
	return check_encoded(s->cfg, data, m->len, m->codec);
}

static int put_block(struct sink *s, struct kvt_block_key *k,
		     const struct kvt_block_meta *m, const uint8_t *data)
{
	int rc = 0;
	if (s->c) {
		k->cache_id = s->c->id;
		pthread_mutex_lock(&s->st->lock);
		rc = kvt_block_put_locked(s->st, k, data, m);
		pthread_mutex_unlock(&s->st->lock);
	}
	if (rc == 0) {
		s->next[k->layer]++;
		s->tokens[k->layer] += m->n_tokens;
		s->closed[k->layer] = m->n_tokens < s->cfg->shape.block_tokens;
		s->info->n_blocks++;
		s->info->payload_bytes += m->len;
	}
	return rc;
}

/* A BLOCKS section: prefix, n records, then the n blocks back to back. */
static int take_blocks(struct sink *s, const uint8_t *p, size_t len,
		       uint64_t *n_blocks)
{
	if (len < SNAP_BLOCKS_PREFIX || kvt_get_u32(p + 4))
		return KVT_EFORMAT;
	uint64_t n = kvt_get_u32(p);
	if (n > (len - SNAP_BLOCKS_PREFIX) / SNAP_RECORD_BYTES)
		return KVT_EFORMAT;
	size_t at = SNAP_BLOCKS_PREFIX + n * SNAP_RECORD_BYTES;
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *r = p + SNAP_BLOCKS_PREFIX + i * SNAP_RECORD_BYTES;
		struct kvt_block_key k = {0, kvt_get_u32(r), kvt_get_u32(r + 4)};
		struct kvt_block_meta m = {.len = kvt_get_u32(r + 8),
					   .raw_len = kvt_get_u32(r + 12),
					   .codec = r[16],
					   .n_tokens = kvt_get_u16(r + 18),
					   .checksum = kvt_get_u64(r + 24)};
		if (r[17] || kvt_get_u32(r + 20) || m.len > len - at)
			return KVT_EFORMAT;
		int rc = check_record(s, &k, &m, p + at);
		rc = rc ? rc : put_block(s, &k, &m, p + at);
		if (rc)
			return rc;
		at += m.len;
	}
	*n_blocks = n;
	return at == len ? 0 : KVT_EFORMAT;
}

static int check_end(const struct sink *s, const uint8_t *p, size_t len)
{
	const struct kvt_snapshot_info *i = s->info;
	uint32_t layers = s->cfg->shape.n_layers;
	if (len != 32 + 8ull * layers || s->in_blob ||
	    kvt_get_u64(p) != i->n_blocks || kvt_get_u64(p + 8) != i->n_meta ||
	    kvt_get_u64(p + 16) != i->meta_bytes || kvt_get_u64(p + 24) != layers)
		return KVT_EFORMAT;
	for (uint32_t l = 0; l < layers; l++)
		if (kvt_get_u64(p + 32 + 8ull * l) != s->tokens[l])
			return KVT_EFORMAT;
	return 0;
}

/* ---------------------------------------------------------------- metadata */

static int meta_key_ok(const uint8_t *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (k[i] <= ' ' || k[i] == '/' || k[i] == 0x7f)
			return 0;
	return n >= 1 && n <= KVT_META_KEY_MAX;
}

/* The first piece of a blob: keys strictly increasing, sizes bounded. */
static int blob_begin(struct sink *s, const char *key, uint64_t total)
{
	if (s->in_blob || strcmp(key, s->last_key) <= 0 ||
	    total > KVT_META_MAX_BYTES)
		return KVT_EFORMAT;
	if (s->h && !(s->blob = malloc(total ? total : 1)))
		return -ENOMEM;
	strcpy(s->key, key);
	s->in_blob = 1;
	s->blob_len = total;
	s->got = 0;
	return 0;
}

static int blob_end(struct sink *s)
{
	int rc = s->h ? kvt_cache_meta_put(s->h, s->key, s->blob, s->blob_len) : 0;
	free(s->blob);
	s->blob = NULL;
	s->in_blob = 0;
	strcpy(s->last_key, s->key);
	s->info->n_meta++;
	s->info->meta_bytes += s->blob_len;
	return rc;
}

/* A META section: one piece of a blob, in order. */
static int take_meta(struct sink *s, const uint8_t *p, size_t len)
{
	char key[KVT_META_KEY_MAX + 1];
	size_t klen = len ? p[0] : 0;
	if (len < 17 + klen || !meta_key_ok(p + 1, klen))
		return KVT_EFORMAT;
	memcpy(key, p + 1, klen);
	key[klen] = 0;
	uint64_t total = kvt_get_u64(p + 1 + klen), off = kvt_get_u64(p + 9 + klen);
	size_t piece = len - 17 - klen;
	int rc = off == 0 ? blob_begin(s, key, total) : 0;
	if (rc)
		return rc;
	if (!s->in_blob || strcmp(key, s->key) || off != s->got ||
	    total != s->blob_len || piece > total - off || (piece == 0 && total))
		return KVT_EFORMAT;
	if (s->blob)
		memcpy(s->blob + off, p + 17 + klen, piece);
	s->got += piece;
	return s->got == total ? blob_end(s) : 0;
}

/* ---------------------------------------------------------------- body */

static int read_name(struct reader *r, struct kvt_snapshot_info *info)
{
	struct kvt_snapshot_section sec;
	int rc = read_section(r, &sec);
	if (rc == 0 && (sec.type != KVT_SNAP_NAME || sec.raw_bytes == 0 ||
			sec.raw_bytes > KVT_NAME_MAX ||
			memchr(r->buf, 0, sec.raw_bytes)))
		rc = KVT_EFORMAT;
	if (rc)
		return rc;
	memcpy(info->name, r->buf, sec.raw_bytes);
	info->name[sec.raw_bytes] = 0;
	info->n_sections = 1;
	return report(r, &sec);
}

/* Everything after NAME: the BLOCKS sections and END, then the totals. */
static int read_rest(struct reader *r, struct sink *s,
		     const struct snap_totals *t)
{
	struct kvt_snapshot_section sec;
	int rc;
	for (;;) {
		if ((rc = read_section(r, &sec)))
			return rc;
		s->info->n_sections++;
		if (sec.type == KVT_SNAP_END)
			break;
		if (sec.type == KVT_SNAP_BLOCKS)
			rc = take_blocks(s, r->buf, sec.raw_bytes, &sec.n_blocks);
		else if (sec.type == KVT_SNAP_META)
			rc = take_meta(s, r->buf, sec.raw_bytes);
		else
			rc = KVT_EFORMAT;
		rc = rc ? rc : report(r, &sec);
		if (rc)
			return rc;
	}
	struct kvt_snapshot_info *i = s->info;
	rc = check_end(s, r->buf, sec.raw_bytes);
	if (rc == 0 && (r->offset != r->size || t->n_blocks != i->n_blocks ||
			t->n_sections != i->n_sections ||
			t->payload_bytes != i->payload_bytes ||
			t->n_tokens != s->tokens[0]))
		rc = KVT_EFORMAT;
	i->n_tokens = s->tokens[0];
	i->file_bytes = r->offset;
	return rc ? rc : report(r, &sec);
}

static int sink_init(struct sink *s, const struct kvt_cache_config *cfg,
		     struct kvt_snapshot_info *info)
{
	uint32_t l = cfg->shape.n_layers;
	*s = (struct sink){.cfg = cfg, .info = info};
	s->next = calloc(l, sizeof *s->next);
	s->tokens = calloc(l, sizeof *s->tokens);
	s->closed = calloc(l, 1);
	return s->next && s->tokens && s->closed ? 0 : -ENOMEM;
}

static void sink_free(struct sink *s)
{
	free(s->blob);
	free(s->next);
	free(s->tokens);
	free(s->closed);
}

/* Opens path and reads the header and the NAME section into info. */
static int begin(struct reader *r, const char *path,
		 const struct kvt_snapshot_opts *opts,
		 struct kvt_snapshot_info *info, struct snap_totals *t)
{
	memset(info, 0, sizeof *info);
	int rc = open_reader(r, path, opts);
	rc = rc ? rc : read_header(r, info, t);
	return rc ? rc : read_name(r, info);
}

int kvt_snapshot_inspect(const char *path, const struct kvt_snapshot_opts *opts,
			 struct kvt_snapshot_info *info)
{
	struct kvt_snapshot_info tmp;
	struct snap_totals t;
	struct reader r;
	struct sink s = {0};
	if (!path)
		return -EINVAL;
	info = info ? info : &tmp;
	int rc = begin(&r, path, opts, info, &t);
	rc = rc ? rc : sink_init(&s, &info->config, info);
	rc = rc ? rc : read_rest(&r, &s, &t);
	sink_free(&s);
	close_reader(&r);
	return rc;
}

/* ---------------------------------------------------------------- load */

static int public_name_ok(const char *name)
{
	size_t n = strlen(name);
	return n >= 1 && n <= KVT_NAME_MAX && !strchr(name, '/') && name[0] != '.';
}

/* Creates the hidden cache; retried when a concurrent load took the id. */
static int create_hidden(struct kvt_store *st, const struct kvt_cache_config *cfg,
			 char *hidden, size_t cap, struct kvt_cache **h)
{
	int rc = KVT_EEXIST;
	for (int i = 0; i < 16 && rc == KVT_EEXIST; i++) {
		pthread_mutex_lock(&st->lock);
		snprintf(hidden, cap, ".load-%llu", (unsigned long long)st->next_id);
		pthread_mutex_unlock(&st->lock);
		rc = kvt_cache_create_hidden(st, hidden, cfg, h);
	}
	return rc;
}

/* Checks the loaded blocks against END's token counts. */
static int tokens_match(const struct cache_rec *c, const uint64_t *tokens)
{
	for (uint32_t l = 0; l < c->cfg.shape.n_layers; l++)
		if (c->layers[l].n_tokens != tokens[l])
			return KVT_EFORMAT;
	return 0;
}

/* Without a disk tier a partial tail lives only in the cache's memory
 * (as after appends); the short block it was loaded from goes. */
static void drop_stored_tails_locked(struct kvt_store *st, struct cache_rec *c)
{
	if (st->tier[KVT_TIER_DISK])
		return;
	for (uint32_t l = 0; l < c->cfg.shape.n_layers; l++) {
		const struct layer_state *ls = &c->layers[l];
		struct kvt_block_key k = {c->id, l,
			(uint32_t)(ls->n_tokens / c->cfg.shape.block_tokens)};
		if (ls->tail_tokens)
			kvt_block_del_locked(st, &k);
	}
}

/* Rebuilds the hidden cache's state from its blocks, makes it durable and
 * gives it its final name. */
static int finish_load(struct kvt_store *st, struct cache_rec *c,
		       const char *final_name, const uint64_t *tokens)
{
	pthread_mutex_lock(&st->lock);
	int rc = kvt_cache_recover_locked(st, c);
	rc = rc ? rc : tokens_match(c, tokens);
	if (rc == 0)
		drop_stored_tails_locked(st, c);
	pthread_mutex_unlock(&st->lock);
	if (rc == 0 && st->tier[KVT_TIER_DISK])
		rc = kvt_store_flush(st);
	if (rc)
		return rc;
	pthread_mutex_lock(&st->lock);
	rc = kvt_cache_rename_locked(st, c, final_name);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

static int name_free(struct kvt_store *st, const char *name)
{
	if (!public_name_ok(name))
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	int rc = kvt_store_find_locked(st, name) ? KVT_EEXIST : 0;
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* Deletes the blocks a failed load put: the hidden cache's token counts
 * (what kvt_cache_drop goes by) may not cover them yet. */
static void drop_loaded(struct kvt_store *st, struct cache_rec *c,
			const uint64_t *next)
{
	pthread_mutex_lock(&st->lock);
	for (uint32_t l = 0; l < c->cfg.shape.n_layers; l++)
		for (uint64_t b = 0; b < next[l]; b++) {
			struct kvt_block_key k = {c->id, l, (uint32_t)b};
			kvt_block_del_locked(st, &k);
		}
	pthread_mutex_unlock(&st->lock);
}

/* Streams the blocks into a hidden cache and renames it on success. */
static int load_into(struct kvt_store *st, struct reader *r,
		     const struct snap_totals *t, const char *final_name,
		     struct kvt_snapshot_info *info)
{
	struct sink s;
	struct kvt_cache *h = NULL;
	char hidden[KVT_NAME_MAX + 1];
	int rc = sink_init(&s, &info->config, info);
	rc = rc ? rc : create_hidden(st, &info->config, hidden, sizeof hidden, &h);
	if (rc == 0) {
		s.st = st;
		s.c = h->rec;
		s.h = h;
		rc = read_rest(r, &s, t);
	}
	rc = rc ? rc : finish_load(st, h->rec, final_name, s.tokens);
	if (h) {
		if (rc) { /* by its current name: a rename may have half failed */
			drop_loaded(st, h->rec, s.next);
			pthread_mutex_lock(&st->lock);
			snprintf(hidden, sizeof hidden, "%s", h->rec->name);
			pthread_mutex_unlock(&st->lock);
		}
		kvt_cache_close(h);
		if (rc)
			kvt_cache_drop(st, hidden);
	}
	sink_free(&s);
	return rc;
}

int kvt_snapshot_load(struct kvt_store *st, const char *path,
		      const char *as_name, const struct kvt_snapshot_opts *opts,
		      struct kvt_snapshot_info *info)
{
	struct kvt_snapshot_info tmp;
	struct snap_totals t;
	struct reader r;
	if (!st || !path)
		return -EINVAL;
	if (as_name && !public_name_ok(as_name))
		return -EINVAL;
	info = info ? info : &tmp;
	int rc = begin(&r, path, opts, info, &t);
	const char *final_name = as_name ? as_name : info->name;
	rc = rc ? rc : name_free(st, final_name);
	rc = rc ? rc : load_into(st, &r, &t, final_name, info);
	close_reader(&r);
	return rc;
}
