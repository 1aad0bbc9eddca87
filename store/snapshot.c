/*
 * snapshot.c - the snapshot format's headers and kvt_snapshot_save.
 *
 * Save streams the cache block by block into ~4 MiB sections, written to
 * a temporary file next to the target (mkstemp). The header is written
 * last (pwrite at offset 0) once the totals are known; then the file is
 * fsynced, renamed over the target and the directory fsynced. Any error
 * unlinks the temporary file. Blocks are read under the store lock one at
 * a time, so other users of the store are never held up for long, and
 * without promotion, so a save does not churn the host tier.
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
#include "path.h"
#include "snapshot_internal.h"
#include "store_internal.h"

/* ---------------------------------------------------------------- format */

const char *kvt_snapshot_section_name(uint32_t type)
{
	switch (type) {
	case KVT_SNAP_NAME: return "name";
	case KVT_SNAP_BLOCKS: return "blocks";
	case KVT_SNAP_END: return "end";
	case KVT_SNAP_META: return "meta";
	default: return "?";
	}
}

void kvt_snap_header_encode(const struct kvt_cache_config *cfg,
			    const struct snap_totals *t, uint8_t *h)
{
	struct cache_rec c = {.cfg = *cfg};
	memset(h, 0, SNAP_HEADER_BYTES);
	memcpy(h, SNAP_MAGIC, 8);
	kvt_put_u32(h + 8, KVT_SNAPSHOT_VERSION);
	kvt_put_u32(h + 12, SNAP_HEADER_BYTES);
	kvt_catalog_encode(&c, h + 16); /* 64 bytes; its id is 0 */
	kvt_put_u64(h + 80, t->n_blocks);
	kvt_put_u64(h + 88, t->n_sections);
	kvt_put_u64(h + 96, t->payload_bytes);
	kvt_put_u64(h + 104, t->n_tokens);
	kvt_put_u64(h + 112, t->file_bytes);
	kvt_put_u64(h + 120, kvt_checksum(h, 120));
}

int kvt_snap_header_decode(const uint8_t *h, size_t len,
			   struct kvt_snapshot_info *info, struct snap_totals *t)
{
	struct cache_rec c = {0};
	if (len < 24 || memcmp(h, SNAP_MAGIC, 8) || kvt_get_u32(h + 12) != len)
		return KVT_EFORMAT;
	/* The checksum first: a flipped version byte is damage, not a newer
	 * format; every version ends its header with this checksum. */
	if (kvt_checksum(h, len - 8) != kvt_get_u64(h + len - 8))
		return KVT_ECORRUPT;
	info->version = kvt_get_u32(h + 8);
	if (info->version != KVT_SNAPSHOT_VERSION)
		return KVT_EVERSION;
	if (len != SNAP_HEADER_BYTES)
		return KVT_EFORMAT;
	int rc = kvt_catalog_decode(h + 16, 64, &c);
	if (rc)
		return rc;
	info->config = c.cfg;
	*t = (struct snap_totals){kvt_get_u64(h + 80), kvt_get_u64(h + 88),
				  kvt_get_u64(h + 96), kvt_get_u64(h + 104),
				  kvt_get_u64(h + 112)};
	return 0;
}

void kvt_snap_section_encode(uint8_t *h, uint32_t type, uint64_t raw,
			     uint64_t stored, uint64_t checksum, uint32_t codec)
{
	kvt_put_u32(h, SNAP_SECTION_MAGIC);
	kvt_put_u32(h + 4, type);
	kvt_put_u64(h + 8, raw);
	kvt_put_u64(h + 16, stored);
	kvt_put_u64(h + 24, checksum);
	kvt_put_u32(h + 32, codec);
	kvt_put_u32(h + 36, (uint32_t)kvt_checksum(h, 36));
}

int kvt_snap_section_decode(const uint8_t *h, struct kvt_snapshot_section *s,
			    uint64_t *checksum)
{
	if (kvt_get_u32(h + 36) != (uint32_t)kvt_checksum(h, 36))
		return KVT_ECORRUPT;
	s->type = kvt_get_u32(h + 4);
	s->raw_bytes = kvt_get_u64(h + 8);
	s->stored_bytes = kvt_get_u64(h + 16);
	s->codec = kvt_get_u32(h + 32);
	s->n_blocks = 0;
	*checksum = kvt_get_u64(h + 24);
	if (kvt_get_u32(h) != SNAP_SECTION_MAGIC || s->codec > SNAP_CODEC_ZSTD ||
	    (s->codec == SNAP_CODEC_NONE && s->raw_bytes != s->stored_bytes) ||
	    s->stored_bytes > s->raw_bytes)
		return KVT_EFORMAT;
	return 0;
}

uint64_t kvt_snap_section_max(const struct kvt_cache_config *cfg)
{
	/* A BLOCKS section is emitted once it reaches the target, so it holds
	 * at most the target plus one record and one block; END and NAME are
	 * far smaller (at most 32 + 8 * KVT_MAX_LAYERS bytes); a META section
	 * holds a prefix and at most the target. */
	return SNAP_SECTION_TARGET + SNAP_META_PREFIX_MAX + SNAP_RECORD_BYTES +
	       kvt_block_bytes(&cfg->shape);
}

/* ---------------------------------------------------------------- writer */

struct writer {
	int fd;
	uint8_t *rec; /* section content; for BLOCKS its prefix and records */
	size_t rec_len, rec_cap;
	uint8_t *pay; /* BLOCKS: the blocks, after the records */
	size_t pay_len, pay_cap;
	uint32_t n_recs;
	XXH3_state_t *xxh;
	ZSTD_CCtx *zc;
	uint8_t *zbuf;
	size_t zcap;
	uint64_t written, total;
	uint64_t flushed, settled; /* writeback started / done and dropped up to */
	uint64_t n_meta, meta_bytes;
	struct snap_totals t;
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

static int put_rec(struct writer *w, const void *p, size_t n)
{
	int rc = reserve(&w->rec, &w->rec_cap, w->rec_len + n);
	if (rc == 0) {
		memcpy(w->rec + w->rec_len, p, n);
		w->rec_len += n;
	}
	return rc;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t k = write(fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Compresses rec + pay into zbuf; *out_len 0 when it does not pay off. */
static int compress(struct writer *w, size_t raw, size_t *out_len)
{
	size_t bound = ZSTD_compressBound(raw);
	int rc = reserve(&w->zbuf, &w->zcap, bound);
	if (rc)
		return rc;
	ZSTD_CCtx_reset(w->zc, ZSTD_reset_session_only);
	ZSTD_CCtx_setPledgedSrcSize(w->zc, raw);
	ZSTD_outBuffer out = {w->zbuf, w->zcap, 0};
	ZSTD_inBuffer a = {w->rec, w->rec_len, 0}, b = {w->pay, w->pay_len, 0};
	size_t z = 0;
	while (!ZSTD_isError(z) && a.pos < a.size)
		z = ZSTD_compressStream2(w->zc, &out, &a, ZSTD_e_continue);
	do
		z = ZSTD_isError(z) ? z : ZSTD_compressStream2(w->zc, &out, &b, ZSTD_e_end);
	while (!ZSTD_isError(z) && z != 0);
	*out_len = !ZSTD_isError(z) && out.pos < raw ? out.pos : 0;
	return 0;
}

/* A BLOCKS section's checksum covers its index (prefix and records);
 * each block is covered by the checksum in its record, which both sides
 * verify anyway, so the bulk is hashed once, not twice. Other sections:
 * the whole content. */
static uint64_t content_checksum(struct writer *w, uint32_t type)
{
	XXH3_64bits_reset(w->xxh);
	XXH3_64bits_update(w->xxh, w->rec, w->rec_len);
	if (w->pay_len && type != KVT_SNAP_BLOCKS)
		XXH3_64bits_update(w->xxh, w->pay, w->pay_len);
	return XXH3_64bits_digest(w->xxh);
}

/* Starts writeback of what was just written and drops from the page
 * cache what was written SNAP_WRITE_BEHIND earlier (waiting for it, by
 * then mostly done), so a save of
 * any size holds a bounded amount of dirty and cached file data, and the
 * final fsync has little left to do. Failures here are harmless: the
 * fsync at the end reports real write errors. */
static void stream_out(struct writer *w)
{
	if (w->written - w->flushed < SNAP_SECTION_TARGET)
		return;
	sync_file_range(w->fd, (off_t)w->flushed, (off_t)(w->written - w->flushed),
			SYNC_FILE_RANGE_WRITE);
	if (w->flushed - w->settled >= SNAP_WRITE_BEHIND) {
		sync_file_range(w->fd, (off_t)w->settled, (off_t)(w->flushed - w->settled),
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				SYNC_FILE_RANGE_WAIT_AFTER);
		posix_fadvise(w->fd, (off_t)w->settled, (off_t)(w->flushed - w->settled),
			      POSIX_FADV_DONTNEED);
		w->settled = w->flushed;
	}
	w->flushed = w->written;
}

/* Writes the section built in rec (+ pay) and starts a new one. */
static int emit_section(struct writer *w, uint32_t type)
{
	uint8_t h[SNAP_SECTION_HEADER];
	size_t raw = w->rec_len + w->pay_len, z = 0;
	int rc = 0;
	if (type == KVT_SNAP_BLOCKS)
		kvt_put_u32(w->rec, w->n_recs);
	if (w->zc && raw)
		rc = compress(w, raw, &z);
	kvt_snap_section_encode(h, type, raw, z ? z : raw, content_checksum(w, type),
				z ? SNAP_CODEC_ZSTD : SNAP_CODEC_NONE);
	rc = rc ? rc : write_all(w->fd, h, sizeof h);
	if (rc == 0 && z)
		rc = write_all(w->fd, w->zbuf, z);
	if (rc == 0 && !z)
		rc = write_all(w->fd, w->rec, w->rec_len);
	if (rc == 0 && !z && w->pay_len)
		rc = write_all(w->fd, w->pay, w->pay_len);
	w->written += sizeof h + (z ? z : raw);
	if (rc == 0)
		stream_out(w);
	w->t.n_sections++;
	w->rec_len = w->pay_len = 0;
	w->n_recs = 0;
	if (rc == 0 && w->opts && w->opts->progress)
		rc = w->opts->progress(w->opts->progress_ctx, w->written,
				       w->total > w->written ? w->total : w->written);
	return rc;
}

/* Starts a BLOCKS section: the record count and a zero word. */
static int begin_blocks(struct writer *w)
{
	uint8_t z[SNAP_BLOCKS_PREFIX] = {0};
	return w->rec_len ? 0 : put_rec(w, z, sizeof z);
}

/* Records the block at pay + pay_len (already there); emits when full. */
static int add_block(struct writer *w, uint32_t layer, uint32_t block,
		     const struct kvt_block_meta *m)
{
	uint8_t r[SNAP_RECORD_BYTES] = {0};
	kvt_put_u32(r, layer);
	kvt_put_u32(r + 4, block);
	kvt_put_u32(r + 8, m->len);
	kvt_put_u32(r + 12, m->raw_len);
	r[16] = m->codec;
	kvt_put_u16(r + 18, m->n_tokens);
	kvt_put_u64(r + 24, m->checksum);
	int rc = put_rec(w, r, sizeof r);
	if (rc)
		return rc;
	w->pay_len += m->len;
	w->n_recs++;
	w->t.n_blocks++;
	w->t.payload_bytes += m->len;
	if (w->rec_len + w->pay_len >= SNAP_SECTION_TARGET)
		rc = emit_section(w, KVT_SNAP_BLOCKS);
	return rc;
}

/* Copies blocks [b, b + n) of a layer to dst back to back, their metas
 * to m, *got how many: stored blocks in one batch (disk-only ones in one
 * batched read, without promotion), then the in-memory tail if the run
 * reaches it. Checksums are verified by the caller. Caller holds the
 * store lock. */
static int export_run_locked(struct kvt_store *st, struct cache_rec *c,
			     uint32_t layer, uint64_t b, uint32_t n,
			     uint8_t *dst, struct kvt_block_meta *m, uint32_t *got)
{
	const struct layer_state *ls = &c->layers[layer];
	uint64_t tail = ls->n_tokens / c->cfg.shape.block_tokens;
	size_t bb = kvt_block_bytes(&c->cfg.shape), off = 0;
	struct kvt_block_key keys[KVT_PEEK_BATCH];
	void *dsts[KVT_PEEK_BATCH];
	uint32_t k = 0;
	for (; k < n && b + k < tail; k++) {
		keys[k] = (struct kvt_block_key){c->id, layer, (uint32_t)(b + k)};
		/* below n_tokens, a block must exist */
		if (kvt_block_stat_locked(st, &keys[k], &m[k]) || m[k].len > bb)
			return KVT_ECORRUPT;
		dsts[k] = dst + off;
		off += m[k].len;
	}
	int rc = k ? kvt_block_peek_many_locked(st, k, keys, dsts, bb) : 0;
	if (rc == KVT_ENOTFOUND)
		rc = KVT_ECORRUPT;
	if (rc == 0 && k < n && b + k == tail) {
		memcpy(dst + off, ls->tail, bb);
		m[k++] = (struct kvt_block_meta){.len = (uint32_t)bb,
						 .raw_len = (uint32_t)bb,
						 .codec = KVT_CODEC_RAW,
						 .n_tokens = (uint16_t)ls->tail_tokens,
						 .checksum = kvt_checksum(dst + off, bb)};
	}
	*got = k;
	return rc;
}

/* Blocks for the next run: as many as surely fit in the current section,
 * so only the run's last block can complete it (add_block emits a full
 * section, and the run's data lies back to back in pay). */
static uint32_t run_length(const struct writer *w, size_t bb, uint64_t left)
{
	size_t used = w->rec_len + w->pay_len;
	uint64_t room = used < SNAP_SECTION_TARGET
				? (SNAP_SECTION_TARGET - used) / (bb + SNAP_RECORD_BYTES)
				: 0;
	room = room ? room : 1;
	room = room < KVT_PEEK_BATCH ? room : KVT_PEEK_BATCH;
	return (uint32_t)(room < left ? room : left);
}

/* Adds the blocks of a run; *done when the layer ended (a partial block). */
static int add_run(struct writer *w, uint32_t l, uint64_t b, uint32_t got,
		   const struct kvt_block_meta *m, uint64_t bt, uint64_t *tokens,
		   int *done)
{
	int rc = 0;
	for (uint32_t i = 0; rc == 0 && i < got && !*done; i++) {
		if (m[i].n_tokens == 0) { /* the tail was empty after all */
			*done = 1;
			break;
		}
		if (kvt_checksum(w->pay + w->pay_len, m[i].len) != m[i].checksum)
			return KVT_ECORRUPT;
		*tokens += m[i].n_tokens;
		rc = add_block(w, l, (uint32_t)(b + i), &m[i]);
		*done = m[i].n_tokens < bt; /* a partial block ends the layer */
	}
	return rc;
}

/* Writes the blocks of one layer as they are now; *tokens gets the
 * tokens written (a consistent prefix even while appends go on). */
static int save_layer(struct kvt_store *st, struct cache_rec *c, uint32_t l,
		      struct writer *w, uint64_t *tokens)
{
	size_t bb = kvt_block_bytes(&c->cfg.shape);
	uint64_t bt = c->cfg.shape.block_tokens;
	pthread_mutex_lock(&st->lock);
	uint64_t nb = (c->layers[l].n_tokens + bt - 1) / bt;
	pthread_mutex_unlock(&st->lock);
	int rc = 0, done = 0;
	*tokens = 0;
	for (uint64_t b = 0; rc == 0 && !done && b < nb;) {
		struct kvt_block_meta m[KVT_PEEK_BATCH];
		uint32_t got = 0, n;
		rc = begin_blocks(w);
		n = run_length(w, bb, nb - b);
		rc = rc ? rc : reserve(&w->pay, &w->pay_cap, w->pay_len + n * bb);
		if (rc)
			break;
		pthread_mutex_lock(&st->lock);
		rc = export_run_locked(st, c, l, b, n, w->pay + w->pay_len, m, &got);
		pthread_mutex_unlock(&st->lock);
		rc = rc ? rc : add_run(w, l, b, got, m, bt, tokens, &done);
		b += got;
		done |= got == 0;
	}
	return rc;
}

/* One metadata blob as META sections of at most the target each. */
static int save_blob(struct writer *w, const char *key, const uint8_t *d,
		     size_t len)
{
	uint8_t h[SNAP_META_PREFIX_MAX];
	size_t off = 0, klen = strlen(key);
	int rc = 0;
	do {
		size_t piece = len - off < SNAP_SECTION_TARGET ? len - off
							       : SNAP_SECTION_TARGET;
		h[0] = (uint8_t)klen;
		memcpy(h + 1, key, klen);
		kvt_put_u64(h + 1 + klen, len);
		kvt_put_u64(h + 9 + klen, off);
		rc = put_rec(w, h, 17 + klen);
		rc = rc ? rc : put_rec(w, d + off, piece);
		rc = rc ? rc : emit_section(w, KVT_SNAP_META);
		off += piece;
	} while (rc == 0 && off < len);
	w->n_meta++;
	w->meta_bytes += len;
	return rc;
}

/* Every metadata blob of the cache, in key order. */
static int save_meta(struct kvt_cache *h, struct writer *w)
{
	char (*keys)[KVT_META_KEY_MAX + 1] = NULL;
	size_t n = 0;
	int rc = kvt_cache_meta_list(h, &keys, &n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		void *d = NULL;
		size_t len;
		rc = kvt_cache_meta_get(h, keys[i], &d, &len);
		if (rc == KVT_ENOTFOUND) { /* deleted meanwhile */
			rc = 0;
			continue;
		}
		rc = rc ? rc : save_blob(w, keys[i], d, len);
		free(d);
	}
	free(keys);
	return rc;
}

static int save_end(struct writer *w, const uint64_t *tokens, uint32_t layers)
{
	uint8_t b[32];
	kvt_put_u64(b, w->t.n_blocks);
	kvt_put_u64(b + 8, w->n_meta);
	kvt_put_u64(b + 16, w->meta_bytes);
	kvt_put_u64(b + 24, layers);
	int rc = put_rec(w, b, sizeof b);
	for (uint32_t l = 0; rc == 0 && l < layers; l++) {
		kvt_put_u64(b, tokens[l]);
		rc = put_rec(w, b, 8);
	}
	return rc ? rc : emit_section(w, KVT_SNAP_END);
}

static int save_sections(struct kvt_store *st, struct kvt_cache *h,
			 struct writer *w, uint64_t *tokens)
{
	struct cache_rec *c = h->rec;
	uint32_t layers = c->cfg.shape.n_layers;
	int rc = put_rec(w, c->name, strlen(c->name));
	rc = rc ? rc : emit_section(w, KVT_SNAP_NAME);
	for (uint32_t l = 0; rc == 0 && l < layers; l++)
		rc = save_layer(st, c, l, w, &tokens[l]);
	if (rc == 0 && w->rec_len)
		rc = emit_section(w, KVT_SNAP_BLOCKS);
	rc = rc ? rc : save_meta(h, w);
	return rc ? rc : save_end(w, tokens, layers);
}

static int writer_init(struct writer *w, int fd,
		       const struct kvt_snapshot_opts *opts, uint64_t total)
{
	*w = (struct writer){.fd = fd, .opts = opts, .total = total};
	w->written = SNAP_HEADER_BYTES;
	if (!(w->xxh = XXH3_createState()))
		return -ENOMEM;
	if (opts && opts->zstd_level) {
		if (opts->zstd_level < 1 || opts->zstd_level > ZSTD_maxCLevel())
			return -EINVAL;
		if (!(w->zc = ZSTD_createCCtx()))
			return -ENOMEM;
		ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel,
				       opts->zstd_level);
	}
	return 0;
}

static void writer_free(struct writer *w)
{
	XXH3_freeState(w->xxh);
	ZSTD_freeCCtx(w->zc);
	free(w->rec);
	free(w->pay);
	free(w->zbuf);
}

/* Writes the whole file on fd: a placeholder header, the sections, then
 * the real header with the totals. */
static void fill_info(const struct cache_rec *c, const struct writer *w,
		      struct kvt_snapshot_info *info)
{
	const struct snap_totals *t = &w->t;
	memset(info, 0, sizeof *info);
	strcpy(info->name, c->name);
	info->config = c->cfg;
	info->version = KVT_SNAPSHOT_VERSION;
	info->n_tokens = t->n_tokens;
	info->n_blocks = t->n_blocks;
	info->n_sections = t->n_sections;
	info->payload_bytes = t->payload_bytes;
	info->n_meta = w->n_meta;
	info->meta_bytes = w->meta_bytes;
	info->file_bytes = t->file_bytes;
}

static int save_to(struct kvt_store *st, struct kvt_cache *hc, int fd,
		   const struct kvt_snapshot_opts *opts,
		   struct kvt_snapshot_info *info)
{
	struct cache_rec *c = hc->rec;
	struct writer w;
	uint8_t h[SNAP_HEADER_BYTES] = {0};
	pthread_mutex_lock(&st->lock);
	uint64_t total = SNAP_HEADER_BYTES + c->stored_bytes;
	pthread_mutex_unlock(&st->lock);
	uint64_t *tokens = calloc(c->cfg.shape.n_layers, sizeof *tokens);
	int rc = tokens ? writer_init(&w, fd, opts, total) : -ENOMEM;
	rc = rc ? rc : write_all(fd, h, sizeof h);
	rc = rc ? rc : save_sections(st, hc, &w, tokens);
	if (rc == 0) {
		w.t.n_tokens = tokens[0];
		w.t.file_bytes = w.written;
		kvt_snap_header_encode(&c->cfg, &w.t, h);
		ssize_t k = pwrite(fd, h, sizeof h, 0);
		if (k != (ssize_t)sizeof h)
			rc = k < 0 ? -errno : -EIO;
		fill_info(c, &w, info);
	}
	if (tokens)
		writer_free(&w);
	free(tokens);
	return rc;
}

/* fsync of the directory holding path, so a rename in it is durable. */
static int sync_dir_of(const char *path)
{
	char dir[4096];
	kvt_path_dir(path, dir, sizeof dir);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/* Writes the snapshot to a fresh temporary file and renames it to path. */
static int save_file(struct kvt_store *st, struct kvt_cache *c,
		     const char *path, const struct kvt_snapshot_opts *opts,
		     struct kvt_snapshot_info *info)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = save_to(st, c, fd, opts, info);
	if (rc == 0 && fsync(fd))
		rc = -errno;
	if (close(fd) && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path))
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	if ((rc = sync_dir_of(path)))
		unlink(path); /* never report failure and leave a file */
	return rc;
}

int kvt_snapshot_save(struct kvt_store *st, const char *name, const char *path,
		      const struct kvt_snapshot_opts *opts,
		      struct kvt_snapshot_info *info)
{
	struct kvt_snapshot_info tmp;
	struct kvt_cache *h;
	if (!st || !name || !path || !path[0])
		return -EINVAL;
	int rc = kvt_cache_open(st, name, &h); /* keeps the cache from a drop */
	if (rc)
		return rc;
	rc = save_file(st, h, path, opts, info ? info : &tmp);
	kvt_cache_close(h);
	return rc;
}
