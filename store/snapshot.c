/*
 * snapshot.c - one cache to one file and back (format in kvtier/snapshot.h
 * and docs/snapshot-format.md).
 *
 * Save streams the cache block by block into ~4 MiB sections. Load streams
 * the file into a hidden cache (".load-<id>"), verifying every section as
 * it goes, and renames it to its final name only after the END section
 * checked out; any failure drops the hidden cache, so the store is left as
 * it was. Hidden caches left by a crash are dropped at the next open.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "bytes.h"
#include "checksum.h"
#include "kvtier/snapshot.h"
#include "store_internal.h"

#define MAGIC "KVTSNAP"
#define HEADER_BYTES 88
#define SECTION_HEADER 40
#define SECTION_MAGIC 0x54434553u /* "SECT" */
#define SECTION_TARGET (4u << 20)
#define SECTION_MAX (64u << 20)
#define RECORD_BYTES 32

enum { SEC_NAME = 1, SEC_BLOCKS = 2, SEC_END = 3 };

/* ---------------------------------------------------------------- writing */

struct writer {
	FILE *f;
	uint8_t *buf;  /* section content being built */
	size_t len, cap;
	void *zbuf;
	size_t zcap;
	int zstd;
	uint64_t written, total, n_sections, n_blocks;
	const struct kvt_snapshot_opts *opts;
};

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (*cap >= need)
		return 0;
	size_t n = *cap ? *cap : 1 << 16;
	while (n < need)
		n *= 2;
	uint8_t *p = realloc(*buf, n);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

static int put_bytes(struct writer *w, const void *p, size_t n)
{
	int rc = reserve(&w->buf, &w->cap, w->len + n);
	if (rc == 0) {
		memcpy(w->buf + w->len, p, n);
		w->len += n;
	}
	return rc;
}

static int write_all(FILE *f, const void *p, size_t n)
{
	return fwrite(p, 1, n, f) == n ? 0 : -(errno ? errno : EIO);
}

static int emit_section(struct writer *w, uint32_t type)
{
	uint8_t h[SECTION_HEADER] = {0};
	const void *out = w->buf;
	size_t out_len = w->len;
	uint32_t codec = 0;
	if (w->zstd && w->len) {
		size_t bound = ZSTD_compressBound(w->len);
		if (w->zcap < bound) {
			free(w->zbuf);
			w->zcap = 0;
			if (!(w->zbuf = malloc(bound)))
				return -ENOMEM;
			w->zcap = bound;
		}
		size_t z = ZSTD_compress(w->zbuf, w->zcap, w->buf, w->len, w->zstd);
		if (!ZSTD_isError(z) && z < w->len) {
			out = w->zbuf;
			out_len = z;
			codec = 1;
		}
	}
	kvt_put_u32(h, SECTION_MAGIC);
	kvt_put_u32(h + 4, type);
	kvt_put_u64(h + 8, w->len);
	kvt_put_u64(h + 16, out_len);
	kvt_put_u64(h + 24, kvt_checksum(w->buf, w->len));
	kvt_put_u32(h + 32, codec);
	int rc = write_all(w->f, h, sizeof h);
	rc = rc ? rc : write_all(w->f, out, out_len);
	w->written += sizeof h + out_len;
	w->n_sections++;
	w->len = 0;
	if (w->opts && w->opts->progress)
		w->opts->progress(w->opts->progress_ctx, w->written,
				  w->total > w->written ? w->total : w->written);
	return rc;
}

static void header_encode(const struct cache_rec *c, uint8_t h[HEADER_BYTES])
{
	memset(h, 0, HEADER_BYTES);
	memcpy(h, MAGIC, 8);
	kvt_put_u32(h + 8, KVT_SNAPSHOT_VERSION);
	kvt_put_u32(h + 12, HEADER_BYTES);
	kvt_catalog_encode(c, h + 16); /* 64 bytes */
	kvt_put_u64(h + 80, kvt_checksum(h, 80));
}

/* Appends one block record; emits a section when it is full. */
static int add_block(struct writer *w, uint32_t layer, uint32_t block,
		     const struct kvt_block_meta *m, const void *data)
{
	uint8_t r[RECORD_BYTES] = {0};
	kvt_put_u32(r, layer);
	kvt_put_u32(r + 4, block);
	kvt_put_u32(r + 8, m->len);
	kvt_put_u32(r + 12, m->raw_len);
	r[16] = m->codec;
	kvt_put_u16(r + 18, m->n_tokens);
	kvt_put_u64(r + 24, m->checksum);
	int rc = put_bytes(w, r, sizeof r);
	rc = rc ? rc : put_bytes(w, data, m->len);
	w->n_blocks++;
	if (rc == 0 && w->len >= SECTION_TARGET)
		rc = emit_section(w, SEC_BLOCKS);
	return rc;
}

/* Copies one stored block (or the in-memory tail) out under the lock. */
static int export_block(struct kvt_store *st, struct cache_rec *c,
			uint32_t layer, uint64_t b, uint8_t *buf, size_t cap,
			struct kvt_block_meta *m)
{
	struct layer_state *ls = &c->layers[layer];
	uint32_t bb = (uint32_t)kvt_block_bytes(&c->cfg.shape);
	if (b == ls->n_tokens / c->cfg.shape.block_tokens) {
		memcpy(buf, ls->tail, bb);
		*m = (struct kvt_block_meta){.len = bb, .raw_len = bb,
					     .codec = KVT_CODEC_RAW,
					     .n_tokens = (uint16_t)ls->tail_tokens,
					     .checksum = kvt_checksum(buf, bb)};
		return 0;
	}
	struct kvt_block_key k = {c->id, layer, (uint32_t)b};
	int rc = kvt_block_get_locked(st, &k, buf, cap, m);
	if (rc == 0 && kvt_checksum(buf, m->len) != m->checksum)
		rc = KVT_ECORRUPT;
	return rc;
}

static int save_blocks(struct kvt_store *st, struct cache_rec *c,
		       struct writer *w, uint64_t *tokens)
{
	size_t bb = kvt_block_bytes(&c->cfg.shape);
	uint8_t *buf = malloc(bb);
	int rc = buf ? 0 : -ENOMEM;
	for (uint32_t l = 0; rc == 0 && l < c->cfg.shape.n_layers; l++) {
		pthread_mutex_lock(&st->lock);
		tokens[l] = c->layers[l].n_tokens;
		pthread_mutex_unlock(&st->lock);
		uint64_t nb = (tokens[l] + c->cfg.shape.block_tokens - 1) /
			      c->cfg.shape.block_tokens;
		for (uint64_t b = 0; rc == 0 && b < nb; b++) {
			struct kvt_block_meta m;
			pthread_mutex_lock(&st->lock);
			rc = export_block(st, c, l, b, buf, bb, &m);
			pthread_mutex_unlock(&st->lock);
			rc = rc ? rc : add_block(w, l, (uint32_t)b, &m, buf);
		}
	}
	free(buf);
	return rc;
}

static int save_end(struct writer *w, const uint64_t *tokens, uint32_t layers)
{
	uint8_t b[16];
	kvt_put_u64(b, w->n_blocks);
	kvt_put_u64(b + 8, layers);
	int rc = put_bytes(w, b, sizeof b);
	for (uint32_t l = 0; rc == 0 && l < layers; l++) {
		kvt_put_u64(b, tokens[l]);
		rc = put_bytes(w, b, 8);
	}
	return rc ? rc : emit_section(w, SEC_END);
}

static int save_to(struct kvt_store *st, struct cache_rec *c, FILE *f,
		   const struct kvt_snapshot_opts *opts)
{
	struct writer w = {.f = f, .zstd = opts ? opts->zstd_level : 0,
			   .opts = opts, .total = c->stored_bytes};
	uint8_t h[HEADER_BYTES];
	uint64_t *tokens = calloc(c->cfg.shape.n_layers, sizeof *tokens);
	int rc = tokens ? 0 : -ENOMEM;
	header_encode(c, h);
	rc = rc ? rc : write_all(f, h, sizeof h);
	rc = rc ? rc : put_bytes(&w, c->name, strlen(c->name));
	rc = rc ? rc : emit_section(&w, SEC_NAME);
	rc = rc ? rc : save_blocks(st, c, &w, tokens);
	if (rc == 0 && w.len)
		rc = emit_section(&w, SEC_BLOCKS);
	rc = rc ? rc : save_end(&w, tokens, c->cfg.shape.n_layers);
	free(tokens);
	free(w.buf);
	free(w.zbuf);
	return rc;
}

int kvt_snapshot_save(struct kvt_store *st, const char *name, const char *path,
		      const struct kvt_snapshot_opts *opts)
{
	char tmp[4096];
	struct kvt_cache *h;
	if (!st || !name || !path)
		return -EINVAL;
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	int rc = kvt_cache_open(st, name, &h); /* keeps the cache from a drop */
	if (rc)
		return rc;
	FILE *f = fopen(tmp, "wb");
	if (!f) {
		rc = -errno;
		kvt_cache_close(h);
		return rc;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 22);
	rc = save_to(st, h->rec, f, opts);
	if (fflush(f) && !rc)
		rc = -errno;
	if (!rc && fsync(fileno(f)))
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc)
		unlink(tmp);
	kvt_cache_close(h);
	return rc;
}

/* ---------------------------------------------------------------- reading */

struct reader {
	FILE *f;
	uint8_t *buf, *zbuf;
	size_t cap, zcap;
	uint64_t offset, size;
	const struct kvt_snapshot_opts *opts;
};

static int read_exact(struct reader *r, void *p, size_t n)
{
	if (fread(p, 1, n, r->f) != n)
		return ferror(r->f) ? -EIO : KVT_EFORMAT; /* EOF: truncated */
	r->offset += n;
	return 0;
}

/* Reads, decompresses and verifies the next section into r->buf. */
static int read_section(struct reader *r, uint32_t *type, size_t *len)
{
	uint8_t h[SECTION_HEADER];
	int rc = read_exact(r, h, sizeof h);
	if (rc)
		return rc;
	uint64_t raw = kvt_get_u64(h + 8), stored = kvt_get_u64(h + 16);
	uint32_t codec = kvt_get_u32(h + 32);
	if (kvt_get_u32(h) != SECTION_MAGIC || raw > SECTION_MAX ||
	    stored > SECTION_MAX || codec > 1 || (codec == 0 && raw != stored))
		return KVT_EFORMAT;
	if ((rc = reserve(&r->buf, &r->cap, raw + 1)))
		return rc;
	if (codec == 0) {
		rc = read_exact(r, r->buf, raw);
	} else {
		rc = reserve(&r->zbuf, &r->zcap, stored + 1);
		rc = rc ? rc : read_exact(r, r->zbuf, stored);
		if (rc == 0) {
			size_t n = ZSTD_decompress(r->buf, raw, r->zbuf, stored);
			if (ZSTD_isError(n) || n != raw)
				rc = KVT_ECORRUPT;
		}
	}
	if (rc == 0 && kvt_checksum(r->buf, raw) != kvt_get_u64(h + 24))
		rc = KVT_ECORRUPT;
	*type = kvt_get_u32(h + 4);
	*len = raw;
	if (rc == 0 && r->opts && r->opts->progress)
		r->opts->progress(r->opts->progress_ctx, r->offset, r->size);
	return rc;
}

static int read_header(struct reader *r, struct cache_rec *c,
		       struct kvt_snapshot_info *info)
{
	uint8_t h[HEADER_BYTES];
	int rc = read_exact(r, h, sizeof h);
	if (rc || memcmp(h, MAGIC, 8))
		return rc == -EIO ? rc : KVT_EFORMAT;
	if (kvt_get_u32(h + 8) != KVT_SNAPSHOT_VERSION)
		return KVT_EVERSION;
	if (kvt_get_u32(h + 12) != HEADER_BYTES ||
	    kvt_checksum(h, 80) != kvt_get_u64(h + 80))
		return KVT_ECORRUPT;
	rc = kvt_catalog_decode(h + 16, 64, c);
	if (rc)
		return rc;
	info->version = KVT_SNAPSHOT_VERSION;
	info->config = c->cfg;
	return 0;
}

/* Sink for the block records of a verified section: a store or nothing. */
struct sink {
	struct kvt_store *st;
	struct cache_rec *c; /* the hidden cache being filled, or NULL */
	struct kvt_snapshot_info *info;
};

static int take_blocks(struct sink *s, const struct kvt_cache_config *cfg,
		       const uint8_t *p, size_t len)
{
	size_t bb = kvt_block_bytes(&cfg->shape);
	for (size_t at = 0; at < len;) {
		if (len - at < RECORD_BYTES)
			return KVT_EFORMAT;
		const uint8_t *r = p + at;
		struct kvt_block_meta m = {.len = kvt_get_u32(r + 8),
					   .raw_len = kvt_get_u32(r + 12),
					   .codec = r[16],
					   .n_tokens = kvt_get_u16(r + 18),
					   .checksum = kvt_get_u64(r + 24)};
		struct kvt_block_key k = {s->c ? s->c->id : 0, kvt_get_u32(r),
					  kvt_get_u32(r + 4)};
		at += RECORD_BYTES;
		if (m.len > bb || m.len > len - at || k.layer >= cfg->shape.n_layers ||
		    m.n_tokens > cfg->shape.block_tokens || m.codec > KVT_CODEC_ZIPCACHE)
			return KVT_EFORMAT;
		if (kvt_checksum(p + at, m.len) != m.checksum)
			return KVT_ECORRUPT;
		if (s->c) {
			pthread_mutex_lock(&s->st->lock);
			int rc = kvt_block_put_locked(s->st, &k, p + at, &m);
			pthread_mutex_unlock(&s->st->lock);
			if (rc)
				return rc;
		}
		at += m.len;
		s->info->n_blocks++;
		s->info->payload_bytes += m.len;
	}
	return 0;
}

static int check_end(const struct kvt_snapshot_info *info, uint32_t layers,
		     const uint8_t *p, size_t len, uint64_t *tokens)
{
	if (len != 16 + 8ull * layers || kvt_get_u64(p) != info->n_blocks ||
	    kvt_get_u64(p + 8) != layers)
		return KVT_EFORMAT;
	for (uint32_t l = 0; l < layers; l++)
		tokens[l] = kvt_get_u64(p + 16 + 8ull * l);
	return 0;
}

/* Reads every section after the header into the sink; checks END. */
static int read_body(struct reader *r, struct sink *s, const struct cache_rec *c,
		     uint64_t *tokens)
{
	uint32_t type;
	size_t len;
	int rc = read_section(r, &type, &len);
	if (rc == 0 && (type != SEC_NAME || len == 0 || len > KVT_NAME_MAX))
		rc = KVT_EFORMAT;
	if (rc)
		return rc;
	memcpy(s->info->name, r->buf, len);
	s->info->name[len] = 0;
	s->info->n_sections = 1;
	for (;;) {
		if ((rc = read_section(r, &type, &len)))
			return rc;
		s->info->n_sections++;
		if (type == SEC_END)
			break;
		if (type != SEC_BLOCKS)
			return KVT_EFORMAT;
		if ((rc = take_blocks(s, &c->cfg, r->buf, len)))
			return rc;
	}
	rc = check_end(s->info, c->cfg.shape.n_layers, r->buf, len, tokens);
	if (rc == 0 && fgetc(r->f) != EOF)
		rc = KVT_EFORMAT; /* trailing bytes */
	s->info->file_bytes = r->offset;
	return rc;
}

static int open_reader(struct reader *r, const char *path,
		       const struct kvt_snapshot_opts *opts)
{
	memset(r, 0, sizeof *r);
	r->opts = opts;
	r->f = fopen(path, "rb");
	if (!r->f)
		return -errno;
	setvbuf(r->f, NULL, _IOFBF, 1 << 22);
	if (fseeko(r->f, 0, SEEK_END) == 0)
		r->size = (uint64_t)ftello(r->f);
	rewind(r->f);
	return 0;
}

static void close_reader(struct reader *r)
{
	if (r->f)
		fclose(r->f);
	free(r->buf);
	free(r->zbuf);
}

int kvt_snapshot_inspect(const char *path, struct kvt_snapshot_info *info)
{
	struct kvt_snapshot_info tmp;
	struct cache_rec c = {0};
	struct reader r;
	if (!path)
		return -EINVAL;
	info = info ? info : &tmp;
	memset(info, 0, sizeof *info);
	int rc = open_reader(&r, path, NULL);
	rc = rc ? rc : read_header(&r, &c, info);
	uint64_t *tokens = rc ? NULL : calloc(c.cfg.shape.n_layers, sizeof *tokens);
	if (rc == 0 && !tokens)
		rc = -ENOMEM;
	struct sink s = {NULL, NULL, info};
	rc = rc ? rc : read_body(&r, &s, &c, tokens);
	if (rc == 0)
		info->n_tokens = tokens[0];
	free(tokens);
	close_reader(&r);
	return rc;
}

/* ---------------------------------------------------------------- load */

/* Checks the loaded blocks against END's token counts. */
static int tokens_match(const struct cache_rec *c, const uint64_t *tokens)
{
	for (uint32_t l = 0; l < c->cfg.shape.n_layers; l++)
		if (c->layers[l].n_tokens != tokens[l])
			return KVT_EFORMAT;
	return 0;
}

static int finish_load(struct kvt_store *st, struct kvt_cache *h,
		       const char *final_name, const uint64_t *tokens)
{
	pthread_mutex_lock(&st->lock);
	int rc = kvt_cache_recover_locked(st, h->rec);
	rc = rc ? rc : tokens_match(h->rec, tokens);
	rc = rc ? rc : kvt_cache_rename_locked(st, h->rec, final_name);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int kvt_snapshot_load(struct kvt_store *st, const char *path,
		      const char *as_name, const struct kvt_snapshot_opts *opts,
		      struct kvt_snapshot_info *info)
{
	struct kvt_snapshot_info tmp;
	struct cache_rec c = {0};
	struct reader r;
	struct kvt_cache *h = NULL;
	char hidden[64];
	if (!st || !path)
		return -EINVAL;
	info = info ? info : &tmp;
	memset(info, 0, sizeof *info);
	int rc = open_reader(&r, path, opts);
	rc = rc ? rc : read_header(&r, &c, info);
	if (rc == 0) {
		pthread_mutex_lock(&st->lock);
		snprintf(hidden, sizeof hidden, ".load-%llu",
			 (unsigned long long)st->next_id);
		pthread_mutex_unlock(&st->lock);
		rc = kvt_cache_create_hidden(st, hidden, &c.cfg, &h);
	}
	uint64_t *tokens = rc ? NULL : calloc(c.cfg.shape.n_layers, sizeof *tokens);
	if (rc == 0 && !tokens)
		rc = -ENOMEM;
	struct sink s = {st, h ? h->rec : NULL, info};
	rc = rc ? rc : read_body(&r, &s, &c, tokens);
	const char *final_name = as_name ? as_name : info->name;
	rc = rc ? rc : finish_load(st, h, final_name, tokens);
	if (rc == 0)
		info->n_tokens = tokens[0];
	close_reader(&r);
	free(tokens);
	if (h) {
		kvt_cache_close(h);
		if (rc)
			kvt_cache_drop(st, hidden);
	}
	return rc;
}
