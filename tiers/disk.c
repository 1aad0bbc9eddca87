/*
 * disk.c - the disk tier: LMDB index + append-only segment files.
 *
 * put writes the payload (zstd-compressed when that saves at least 5%) to
 * the active segment at a 4 KiB aligned offset and records the index entry
 * as pending; get sees pending entries. sync makes everything durable in
 * the order the crash guarantees need: fdatasync of the segments written,
 * then one LMDB commit of every pending entry together with the write
 * position. A crash before the commit loses only unacknowledged puts; their
 * payload lies past the committed write position and is reclaimed (the
 * segment is truncated back) at the next open.
 *
 * Segments whose live ratio falls below GC_LIVE_RATIO are compacted during
 * sync: live extents are copied to the active segment, the index updated
 * and committed, then the old file deleted.
 *
 * Index records (LMDB db "blocks", key = cache id, layer, block big-endian):
 *   u32 seg, u32 disk_len (bytes on disk before page rounding),
 *   u64 offset, u8 flags (1 = zstd), 3 pad, then the block meta:
 *   u32 len, u32 raw_len, u8 codec, u8 flags, u16 n_tokens, u32 reserved,
 *   u64 checksum (XXH3 of the len bytes the store gave).
 * db "catalog": name -> the store's record. db "state": "version", "pos".
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "bytes.h"
#include "checksum.h"
#include "disk_io.h"
#include "hmap.h"
#include "tier.h"

#define DISK_VERSION 1u
#define SEG_MAX (256ull << 20)
#define GC_LIVE_RATIO 0.5
#define REC_BYTES 56
#define MAP_INITIAL (64ull << 20)
#define F_ZSTD 1u
#define RUN_BYTES (8ull << 20) /* largest single write of put_many */

struct loc {
	uint32_t seg, disk_len;
	uint64_t off;
	uint8_t flags;
	struct kvt_block_meta meta;
};

struct pending {
	struct kvt_block_key key;
	struct loc loc;
	int del; /* 1: a delete */
};

struct disk_tier {
	struct kvt_tier base;
	uint64_t budget;
	int zstd_level;
	MDB_env *env;
	MDB_dbi blocks, catalog, state;
	size_t map_size;
	struct kvt_disk_io io;
	int io_ready;
	uint32_t active;     /* segment id being appended to */
	uint64_t used;       /* page-rounded bytes of live extents */
	uint64_t n_blocks;
	struct pending *pend;
	size_t n_pend, cap_pend;
	struct kvt_hmap pend_index; /* key -> latest pending op */
	uint32_t *dirty_segs;
	size_t n_dirty;
	void *bounce;
	size_t bounce_cap;
	void *rbuf; /* read buffer of get_many, reused */
	size_t rbuf_cap;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
};

static struct disk_tier *disk(struct kvt_tier *t)
{
	return (struct disk_tier *)t;
}

static struct kvt_hkey hkey(const struct kvt_block_key *k)
{
	return (struct kvt_hkey){k->cache_id, (uint64_t)k->layer << 32 | k->block};
}

static int mdb_err(int rc)
{
	switch (rc) {
	case 0: return 0;
	case MDB_NOTFOUND: return KVT_ENOTFOUND;
	case MDB_MAP_FULL: return KVT_ENOSPACE;
	case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_INVALID:
		return KVT_ECORRUPT;
	case MDB_VERSION_MISMATCH: return KVT_EVERSION;
	default: return rc > 0 ? -rc : KVT_ECORRUPT;
	}
}

/* ---------------------------------------------------------------- records */

static void key_encode(const struct kvt_block_key *k, uint8_t o[16])
{
	for (int i = 0; i < 8; i++)
		o[i] = (uint8_t)(k->cache_id >> (56 - 8 * i));
	for (int i = 0; i < 4; i++) {
		o[8 + i] = (uint8_t)(k->layer >> (24 - 8 * i));
		o[12 + i] = (uint8_t)(k->block >> (24 - 8 * i));
	}
}

static void key_decode(const uint8_t s[16], struct kvt_block_key *k)
{
	*k = (struct kvt_block_key){0};
	for (int i = 0; i < 8; i++)
		k->cache_id = k->cache_id << 8 | s[i];
	for (int i = 0; i < 4; i++) {
		k->layer = k->layer << 8 | s[8 + i];
		k->block = k->block << 8 | s[12 + i];
	}
}

static void rec_encode(const struct loc *l, uint8_t o[REC_BYTES])
{
	memset(o, 0, REC_BYTES);
	kvt_put_u32(o, l->seg);
	kvt_put_u32(o + 4, l->disk_len);
	kvt_put_u64(o + 8, l->off);
	o[16] = l->flags;
	kvt_put_u32(o + 20, l->meta.len);
	kvt_put_u32(o + 24, l->meta.raw_len);
	o[28] = l->meta.codec;
	o[29] = l->meta.flags;
	kvt_put_u16(o + 30, l->meta.n_tokens);
	kvt_put_u32(o + 32, l->meta.reserved);
	kvt_put_u64(o + 36, l->meta.checksum);
}

static int rec_decode(const MDB_val *v, struct loc *l)
{
	const uint8_t *s = v->mv_data;
	if (v->mv_size != REC_BYTES)
		return KVT_ECORRUPT;
	l->seg = kvt_get_u32(s);
	l->disk_len = kvt_get_u32(s + 4);
	l->off = kvt_get_u64(s + 8);
	l->flags = s[16];
	l->meta.len = kvt_get_u32(s + 20);
	l->meta.raw_len = kvt_get_u32(s + 24);
	l->meta.codec = s[28];
	l->meta.flags = s[29];
	l->meta.n_tokens = kvt_get_u16(s + 30);
	l->meta.reserved = kvt_get_u32(s + 32);
	l->meta.checksum = kvt_get_u64(s + 36);
	return 0;
}

/* ---------------------------------------------------------------- lookup */

static int committed_get(struct disk_tier *d, const struct kvt_block_key *k,
			 struct loc *l)
{
	MDB_txn *txn;
	uint8_t kb[16];
	MDB_val key = {16, kb}, val;
	key_encode(k, kb);
	int rc = mdb_err(mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn));
	if (rc)
		return rc;
	rc = mdb_err(mdb_get(txn, d->blocks, &key, &val));
	if (rc == 0)
		rc = rec_decode(&val, l);
	mdb_txn_abort(txn);
	return rc;
}

/* The current location of k: pending ops first, then the index. */
static int lookup(struct disk_tier *d, const struct kvt_block_key *k,
		  struct loc *l)
{
	uint32_t i;
	if (kvt_hmap_get(&d->pend_index, hkey(k), &i) == 0) {
		if (d->pend[i].del)
			return KVT_ENOTFOUND;
		*l = d->pend[i].loc;
		return 0;
	}
	return committed_get(d, k, l);
}

static int pend_add(struct disk_tier *d, const struct kvt_block_key *k,
		    const struct loc *l, int del)
{
	if (d->n_pend == d->cap_pend) {
		size_t cap = d->cap_pend ? d->cap_pend * 2 : 256;
		struct pending *p = realloc(d->pend, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		d->pend = p;
		d->cap_pend = cap;
	}
	int rc = kvt_hmap_put(&d->pend_index, hkey(k), (uint32_t)d->n_pend);
	if (rc)
		return rc;
	d->pend[d->n_pend++] = (struct pending){*k, l ? *l : (struct loc){0}, del};
	return 0;
}

/* ---------------------------------------------------------------- space */

static void release(struct disk_tier *d, const struct loc *l)
{
	struct kvt_seg *s = kvt_disk_seg(&d->io, l->seg);
	uint64_t n = kvt_disk_round(l->disk_len);
	if (s)
		s->live -= n < s->live ? n : s->live;
	d->used -= n < d->used ? n : d->used;
	d->n_blocks--;
}

static int mark_dirty(struct disk_tier *d, uint32_t seg)
{
	for (size_t i = 0; i < d->n_dirty; i++)
		if (d->dirty_segs[i] == seg)
			return 0;
	uint32_t *v = realloc(d->dirty_segs, (d->n_dirty + 1) * sizeof *v);
	if (!v)
		return -ENOMEM;
	d->dirty_segs = v;
	v[d->n_dirty++] = seg;
	return 0;
}

static int bounce(struct disk_tier *d, size_t n)
{
	if (d->bounce_cap >= n)
		return 0;
	void *p;
	if (posix_memalign(&p, KVT_DISK_PAGE, n))
		return -ENOMEM;
	free(d->bounce);
	d->bounce = p;
	d->bounce_cap = n;
	return 0;
}

/* Appends len bytes from the bounce buffer; fills l's seg/off. */
static int append_extent(struct disk_tier *d, size_t len, struct loc *l)
{
	size_t n = kvt_disk_round(len);
	struct kvt_seg *s = kvt_disk_seg(&d->io, d->active);
	int rc = 0;
	if (!s || s->end + n > SEG_MAX) {
		uint32_t next = s ? d->active + 1 : d->active;
		if ((rc = kvt_disk_seg_create(&d->io, next, &s)))
			return rc;
		d->active = next;
	}
	memset((uint8_t *)d->bounce + len, 0, n - len);
	rc = kvt_disk_write(&d->io, s, d->bounce, n, s->end);
	if (rc)
		return rc == -ENOSPC || rc == -EFBIG ? KVT_ENOSPACE : rc;
	if ((rc = mark_dirty(d, s->id)))
		return rc;
	l->seg = s->id;
	l->off = s->end;
	s->end += n;
	s->live += n;
	return 0;
}

/* Puts data into the bounce buffer, zstd-compressed when it pays. */
static int stage(struct disk_tier *d, const void *data, size_t len,
		 size_t *out_len, uint8_t *flags)
{
	size_t bound = d->zstd_level ? ZSTD_compressBound(len) : 0;
	int rc = bounce(d, kvt_disk_round((bound > len ? bound : len) + 1));
	if (rc)
		return rc;
	*flags = 0;
	if (d->zstd_level) {
		size_t z = ZSTD_compressCCtx(d->cctx, d->bounce, d->bounce_cap,
					     data, len, d->zstd_level);
		if (!ZSTD_isError(z) && z < len - len / 20) {
			*out_len = z;
			*flags = F_ZSTD;
			return 0;
		}
	}
	memcpy(d->bounce, data, len);
	*out_len = len;
	return 0;
}

/* ---------------------------------------------------------------- ops */

static int disk_put(struct kvt_tier *t, const struct kvt_block_key *key,
		    const void *data, const struct kvt_block_meta *meta)
{
	struct disk_tier *d = disk(t);
	struct loc old, l = {.meta = *meta};
	size_t len;
	int had = lookup(d, key, &old) == 0;
	int rc = stage(d, data, meta->len, &len, &l.flags);
	if (rc)
		return rc;
	uint64_t n = kvt_disk_round(len);
	uint64_t freed = had ? kvt_disk_round(old.disk_len) : 0;
	if (d->budget && d->used - freed + n > d->budget)
		return KVT_ENOSPACE;
	l.disk_len = (uint32_t)len;
	if ((rc = append_extent(d, len, &l)))
		return rc;
	if ((rc = pend_add(d, key, &l, 0)))
		return rc;
	if (had)
		release(d, &old);
	d->used += n;
	d->n_blocks++;
	return 0;
}

/* Stages items [i, j) of a batch back to back in d->bounce (one write). */
static int put_run(struct disk_tier *d, size_t i, size_t j,
		   const struct kvt_block_key *keys, const void *const *datas,
		   const struct kvt_block_meta *metas, int *results);

static int disk_put_many(struct kvt_tier *t, size_t n,
			 const struct kvt_block_key *keys, const void *const *datas,
			 const struct kvt_block_meta *metas, int *results)
{
	struct disk_tier *d = disk(t);
	/* Runs of up to RUN_BYTES go out as one write each. */
	size_t i = 0;
	int first = 0;
	while (i < n) {
		size_t j = i, bytes = 0;
		while (j < n && (j == i || bytes + kvt_disk_round(metas[j].len) <= RUN_BYTES))
			bytes += kvt_disk_round(metas[j++].len);
		int rc = d->zstd_level ? 0 : put_run(d, i, j, keys, datas, metas, results);
		if (d->zstd_level)
			for (size_t k = i; k < j; k++)
				results[k] = disk_put(t, &keys[k], datas[k], &metas[k]);
		for (size_t k = i; k < j; k++) {
			if (rc)
				results[k] = rc;
			if (results[k] && !first)
				first = results[k];
		}
		i = j;
	}
	return first;
}

static int put_run(struct disk_tier *d, size_t i, size_t j,
		   const struct kvt_block_key *keys, const void *const *datas,
		   const struct kvt_block_meta *metas, int *results)
{
	size_t total = 0;
	uint64_t freed = 0;
	for (size_t k = i; k < j; k++) {
		struct loc old;
		total += kvt_disk_round(metas[k].len);
		if (lookup(d, &keys[k], &old) == 0)
			freed += kvt_disk_round(old.disk_len);
	}
	if (d->budget && d->used - freed + total > d->budget)
		return KVT_ENOSPACE;
	int rc = bounce(d, total);
	if (rc)
		return rc;
	size_t off = 0;
	for (size_t k = i; k < j; k++) {
		size_t len = metas[k].len, r = kvt_disk_round(len);
		memcpy((uint8_t *)d->bounce + off, datas[k], len);
		memset((uint8_t *)d->bounce + off + len, 0, r - len);
		off += r;
	}
	struct loc first = {0};
	if ((rc = append_extent(d, total, &first)))
		return rc;
	off = 0;
	for (size_t k = i; k < j && rc == 0; k++) {
		struct loc l = {.seg = first.seg, .off = first.off + off,
				.disk_len = metas[k].len, .meta = metas[k]}, old;
		int had = lookup(d, &keys[k], &old) == 0;
		off += kvt_disk_round(metas[k].len);
		rc = pend_add(d, &keys[k], &l, 0);
		if (rc == 0 && had)
			release(d, &old);
		if (rc == 0) {
			d->n_blocks++;
			results[k] = 0;
		}
	}
	/* append_extent counted the run as one extent; the releases above
	 * and the per-block accounting below keep used exact. */
	d->used += total;
	return rc;
}

/* Checks and unpacks an extent read from disk into dst. */
static int finish_read(struct disk_tier *d, const struct loc *l,
		       const void *buf, void *dst, size_t cap)
{
	if (cap < l->meta.len)
		return -ENOBUFS;
	if (l->flags & F_ZSTD) {
		size_t n = ZSTD_decompressDCtx(d->dctx, dst, cap, buf, l->disk_len);
		if (ZSTD_isError(n) || n != l->meta.len)
			return KVT_ECORRUPT;
	} else {
		if (l->disk_len != l->meta.len)
			return KVT_ECORRUPT;
		memcpy(dst, buf, l->meta.len);
	}
	return kvt_checksum(dst, l->meta.len) == l->meta.checksum ? 0 : KVT_ECORRUPT;
}

static int disk_get(struct kvt_tier *t, const struct kvt_block_key *key,
		    void *dst, size_t cap, struct kvt_block_meta *meta)
{
	struct disk_tier *d = disk(t);
	void *dsts[1] = {dst};
	size_t caps[1] = {cap};
	int res;
	int rc = t->ops->get_many(t, 1, key, dsts, caps, &res);
	if (rc == 0 && meta) {
		struct loc l = {0};
		rc = lookup(d, key, &l);
		*meta = l.meta;
	}
	return rc ? rc : res;
}

/* Grows the aligned buffer *p to at least n bytes. */
static int grow_aligned(void **p, size_t *cap, size_t n)
{
	if (*cap >= n)
		return 0;
	void *q;
	if (posix_memalign(&q, KVT_DISK_PAGE, n))
		return -ENOMEM;
	free(*p);
	*p = q;
	*cap = n;
	return 0;
}

/* Finds every key and lays out one read per block in d->rbuf. */
static int plan_reads(struct disk_tier *d, size_t n,
		      const struct kvt_block_key *keys, struct loc *l,
		      struct kvt_disk_read *q, size_t *m, int *results)
{
	size_t total = 0;
	*m = 0;
	for (size_t i = 0; i < n; i++) {
		results[i] = lookup(d, &keys[i], &l[i]);
		struct kvt_seg *s = results[i] ? NULL : kvt_disk_seg(&d->io, l[i].seg);
		if (results[i] == 0 && !s)
			results[i] = KVT_ECORRUPT;
		if (results[i])
			continue;
		q[(*m)++] = (struct kvt_disk_read){s, l[i].off,
						   kvt_disk_round(l[i].disk_len),
						   (void *)(uintptr_t)total, 0};
		total += kvt_disk_round(l[i].disk_len);
	}
	int rc = grow_aligned(&d->rbuf, &d->rbuf_cap, total ? total : 1);
	for (size_t j = 0; rc == 0 && j < *m; j++)
		q[j].buf = (uint8_t *)d->rbuf + (uintptr_t)q[j].buf;
	return rc;
}

static int disk_get_many(struct kvt_tier *t, size_t n,
			 const struct kvt_block_key *keys, void *const *dsts,
			 const size_t *caps, int *results)
{
	struct disk_tier *d = disk(t);
	struct kvt_disk_read *q = calloc(n ? n : 1, sizeof *q);
	struct loc *l = calloc(n ? n : 1, sizeof *l);
	size_t m = 0;
	int rc = q && l ? 0 : -ENOMEM;
	/* One read per block found; all submitted as one batch. */
	if (rc == 0)
		rc = plan_reads(d, n, keys, l, q, &m, results);
	if (rc == 0)
		rc = kvt_disk_read_many(&d->io, q, m);
	int first = 0;
	for (size_t i = 0, j = 0; rc == 0 && i < n; i++) {
		if (results[i] == 0) {
			results[i] = q[j].result ? q[j].result
				     : finish_read(d, &l[i], q[j].buf, dsts[i], caps[i]);
			j++;
		}
		if (results[i] && !first)
			first = results[i];
	}
	free(q);
	free(l);
	return rc ? rc : first;
}

static int disk_stat(struct kvt_tier *t, const struct kvt_block_key *key,
		     struct kvt_block_meta *meta)
{
	struct loc l;
	int rc = lookup(disk(t), key, &l);
	if (rc == 0)
		*meta = l.meta;
	return rc;
}

static int disk_del(struct kvt_tier *t, const struct kvt_block_key *key)
{
	struct disk_tier *d = disk(t);
	struct loc l;
	int rc = lookup(d, key, &l);
	if (rc == 0 && (rc = pend_add(d, key, NULL, 1)) == 0)
		release(d, &l);
	return rc;
}

static int disk_usage(struct kvt_tier *t, struct kvt_tier_usage *out)
{
	struct disk_tier *d = disk(t);
	*out = (struct kvt_tier_usage){1, d->budget, d->used, d->n_blocks};
	return 0;
}

/* ---------------------------------------------------------------- iteration */

struct iter_ctx {
	kvt_tier_iter_fn fn;
	void *ctx;
};

static int disk_iter(struct kvt_tier *t, kvt_tier_iter_fn fn, void *ctx)
{
	struct disk_tier *d = disk(t);
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_err(mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn));
	if (rc)
		return rc;
	if ((rc = mdb_err(mdb_cursor_open(txn, d->blocks, &cur)))) {
		mdb_txn_abort(txn);
		return rc;
	}
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0 && mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct kvt_block_key key;
		struct loc l;
		uint32_t i;
		if (k.mv_size != 16 || rec_decode(&v, &l)) {
			rc = KVT_ECORRUPT;
			break;
		}
		key_decode(k.mv_data, &key);
		if (kvt_hmap_get(&d->pend_index, hkey(&key), &i) == 0)
			continue; /* superseded by a pending op */
		rc = fn(ctx, &key, &l.meta);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	for (size_t i = 0; rc == 0 && i < d->n_pend; i++) {
		uint32_t latest;
		struct pending *p = &d->pend[i];
		kvt_hmap_get(&d->pend_index, hkey(&p->key), &latest);
		if (latest == i && !p->del)
			rc = fn(ctx, &p->key, &p->loc.meta);
	}
	return rc;
}

/* ---------------------------------------------------------------- commit */

static int grow_map(struct disk_tier *d)
{
	size_t size = d->map_size * 2;
	int rc = mdb_err(mdb_env_set_mapsize(d->env, size));
	if (rc == 0)
		d->map_size = size;
	return rc;
}

static int write_pos(struct disk_tier *d, MDB_txn *txn)
{
	uint8_t b[12];
	struct kvt_seg *s = kvt_disk_seg(&d->io, d->active);
	MDB_val k = {3, "pos"}, v = {sizeof b, b};
	kvt_put_u32(b, d->active);
	kvt_put_u64(b + 4, s ? s->end : 0);
	return mdb_err(mdb_put(txn, d->state, &k, &v, 0));
}

static int apply_pending(struct disk_tier *d, MDB_txn *txn)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < d->n_pend; i++) {
		struct pending *p = &d->pend[i];
		uint8_t kb[16], vb[REC_BYTES];
		MDB_val k = {16, kb}, v = {REC_BYTES, vb};
		key_encode(&p->key, kb);
		if (p->del) {
			rc = mdb_err(mdb_del(txn, d->blocks, &k, NULL));
			if (rc == KVT_ENOTFOUND)
				rc = 0;
		} else {
			rec_encode(&p->loc, vb);
			rc = mdb_err(mdb_put(txn, d->blocks, &k, &v, 0));
		}
	}
	return rc ? rc : write_pos(d, txn);
}

/* One transaction with every pending op; grows the map when it is full. */
static int commit_pending(struct disk_tier *d)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		MDB_txn *txn;
		int rc = mdb_err(mdb_txn_begin(d->env, NULL, 0, &txn));
		if (rc == 0)
			rc = apply_pending(d, txn);
		if (rc == 0)
			rc = mdb_err(mdb_txn_commit(txn));
		else
			mdb_txn_abort(txn);
		if (rc != KVT_ENOSPACE)
			return rc;
		if ((rc = grow_map(d)))
			return rc;
	}
	return KVT_ENOSPACE;
}

static int flush_pending(struct disk_tier *d)
{
	if (!d->n_pend && !d->n_dirty)
		return 0;
	int rc = kvt_disk_sync(&d->io, d->dirty_segs, d->n_dirty);
	if (rc == 0)
		rc = commit_pending(d);
	if (rc)
		return rc;
	d->n_pend = 0;
	d->n_dirty = 0;
	kvt_hmap_free(&d->pend_index);
	return 0;
}

/* ---------------------------------------------------------------- gc */

struct gc_ctx {
	struct disk_tier *d;
	uint32_t seg;
	struct kvt_block_key *keys;
	size_t n, cap;
};

static int gc_collect(void *ctx, const struct kvt_block_key *key,
		      const struct kvt_block_meta *meta)
{
	struct gc_ctx *g = ctx;
	struct loc l;
	(void)meta;
	if (lookup(g->d, key, &l) || l.seg != g->seg)
		return 0;
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		struct kvt_block_key *k = realloc(g->keys, cap * sizeof *k);
		if (!k)
			return -ENOMEM;
		g->keys = k;
		g->cap = cap;
	}
	g->keys[g->n++] = *key;
	return 0;
}

/* Copies the live extents of seg forward, then deletes it. */
static int gc_segment(struct disk_tier *d, uint32_t seg)
{
	struct gc_ctx g = {d, seg, NULL, 0, 0};
	int rc = disk_iter(&d->base, gc_collect, &g);
	void *buf = NULL;
	size_t cap = 0;
	for (size_t i = 0; rc == 0 && i < g.n; i++) {
		struct kvt_block_meta m;
		if ((rc = disk_stat(&d->base, &g.keys[i], &m)))
			break;
		if (cap < m.len) {
			free(buf);
			cap = m.len;
			if (!(buf = malloc(cap)))
				rc = -ENOMEM;
		}
		rc = rc ? rc : disk_get(&d->base, &g.keys[i], buf, cap, &m);
		rc = rc ? rc : disk_put(&d->base, &g.keys[i], buf, &m);
	}
	free(buf);
	free(g.keys);
	if (rc == 0)
		rc = flush_pending(d);
	if (rc == 0)
		kvt_disk_seg_remove(&d->io, seg);
	return rc;
}

static void gc(struct disk_tier *d)
{
	for (size_t i = 0; i < d->io.n_segs; i++) {
		struct kvt_seg *s = &d->io.segs[i];
		if (s->id == d->active || s->end == 0 ||
		    (double)s->live >= GC_LIVE_RATIO * (double)s->end)
			continue;
		if (gc_segment(d, s->id))
			return; /* try again at the next sync */
		i = (size_t)-1; /* the segment array changed */
	}
}

static int disk_sync(struct kvt_tier *t)
{
	struct disk_tier *d = disk(t);
	int rc = flush_pending(d);
	if (rc == 0)
		gc(d);
	return rc;
}

/* ---------------------------------------------------------------- catalog */

static int catalog_txn(struct disk_tier *d, const char *name, const void *rec,
		       size_t len, int del)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		MDB_txn *txn;
		MDB_val k = {strlen(name), (void *)name}, v = {len, (void *)rec};
		int rc = mdb_err(mdb_txn_begin(d->env, NULL, 0, &txn));
		if (rc)
			return rc;
		rc = del ? mdb_err(mdb_del(txn, d->catalog, &k, NULL))
			 : mdb_err(mdb_put(txn, d->catalog, &k, &v, 0));
		if (rc == 0)
			rc = mdb_err(mdb_txn_commit(txn));
		else
			mdb_txn_abort(txn);
		if (rc != KVT_ENOSPACE)
			return rc;
		if ((rc = grow_map(d)))
			return rc;
	}
	return KVT_ENOSPACE;
}

static int disk_catalog_put(struct kvt_tier *t, const char *name,
			    const void *rec, size_t len)
{
	if (!name || !*name || strlen(name) > 511)
		return -EINVAL;
	return catalog_txn(disk(t), name, rec, len, 0);
}

static int disk_catalog_del(struct kvt_tier *t, const char *name)
{
	return catalog_txn(disk(t), name, NULL, 0, 1);
}

static int disk_catalog_iter(struct kvt_tier *t, kvt_catalog_iter_fn fn,
			     void *ctx)
{
	struct disk_tier *d = disk(t);
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_err(mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn));
	if (rc)
		return rc;
	if ((rc = mdb_err(mdb_cursor_open(txn, d->catalog, &cur)))) {
		mdb_txn_abort(txn);
		return rc;
	}
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0 && mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char name[512];
		if (k.mv_size == 0 || k.mv_size >= sizeof name) {
			rc = KVT_ECORRUPT;
			break;
		}
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = 0;
		rc = fn(ctx, name, v.mv_data, v.mv_size);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rc;
}

/* ---------------------------------------------------------------- open */

static void disk_destroy(struct kvt_tier *t)
{
	struct disk_tier *d = disk(t);
	if (d->io_ready) {
		(void)flush_pending(d);
		kvt_disk_io_close(&d->io);
	}
	if (d->env)
		mdb_env_close(d->env);
	kvt_hmap_free(&d->pend_index);
	ZSTD_freeCCtx(d->cctx);
	ZSTD_freeDCtx(d->dctx);
	free(d->pend);
	free(d->dirty_segs);
	free(d->bounce);
	free(d->rbuf);
	free(d);
}

static const struct kvt_tier_ops disk_ops = {
	.name = "disk",
	.put = disk_put,
	.get = disk_get,
	.get_many = disk_get_many,
	.put_many = disk_put_many,
	.stat = disk_stat,
	.del = disk_del,
	.iter = disk_iter,
	.usage = disk_usage,
	.locate = NULL,
	.sync = disk_sync,
	.catalog_put = disk_catalog_put,
	.catalog_del = disk_catalog_del,
	.catalog_iter = disk_catalog_iter,
	.destroy = disk_destroy,
};

static int open_env(struct disk_tier *d, const char *dir)
{
	char path[4096];
	int dead;
	if (snprintf(path, sizeof path, "%s/index.lmdb", dir) >= (int)sizeof path)
		return -ENAMETOOLONG;
	int rc = mdb_err(mdb_env_create(&d->env));
	if (rc)
		return rc;
	d->map_size = MAP_INITIAL;
	rc = mdb_err(mdb_env_set_maxdbs(d->env, 4));
	rc = rc ? rc : mdb_err(mdb_env_set_mapsize(d->env, d->map_size));
	rc = rc ? rc : mdb_err(mdb_env_open(d->env, path, MDB_NOSUBDIR | MDB_NOTLS, 0600));
	if (rc)
		return rc;
	MDB_envinfo info;
	if (mdb_env_info(d->env, &info) == 0 && info.me_mapsize > d->map_size)
		d->map_size = info.me_mapsize;
	/* Readers left behind by a crashed process would pin old pages.
	 * MDB_NOTLS: iteration nests a lookup (a second read txn) per key. */
	mdb_reader_check(d->env, &dead);
	return 0;
}

static int open_dbs(struct disk_tier *d, uint32_t *active, uint64_t *end,
		    int *have_pos)
{
	MDB_txn *txn;
	MDB_val k = {7, "version"}, v;
	uint8_t vb[4];
	int rc = mdb_err(mdb_txn_begin(d->env, NULL, 0, &txn));
	if (rc)
		return rc;
	rc = mdb_err(mdb_dbi_open(txn, "blocks", MDB_CREATE, &d->blocks));
	rc = rc ? rc : mdb_err(mdb_dbi_open(txn, "catalog", MDB_CREATE, &d->catalog));
	rc = rc ? rc : mdb_err(mdb_dbi_open(txn, "state", MDB_CREATE, &d->state));
	int g = rc ? rc : mdb_err(mdb_get(txn, d->state, &k, &v));
	if (g == KVT_ENOTFOUND) {
		kvt_put_u32(vb, DISK_VERSION);
		v = (MDB_val){4, vb};
		rc = mdb_err(mdb_put(txn, d->state, &k, &v, 0));
	} else if (g == 0 && (v.mv_size != 4 || kvt_get_u32(v.mv_data) != DISK_VERSION)) {
		rc = KVT_EVERSION;
	} else {
		rc = g;
	}
	MDB_val pk = {3, "pos"};
	*have_pos = 0;
	if (rc == 0 && mdb_get(txn, d->state, &pk, &v) == 0 && v.mv_size == 12) {
		*active = kvt_get_u32(v.mv_data);
		*end = kvt_get_u64((const uint8_t *)v.mv_data + 4);
		*have_pos = 1;
	}
	if (rc == 0)
		rc = mdb_err(mdb_txn_commit(txn));
	else
		mdb_txn_abort(txn);
	return rc;
}

static int count_block(void *ctx, const struct kvt_block_key *key,
		       const struct kvt_block_meta *meta)
{
	struct disk_tier *d = ctx;
	struct loc l;
	(void)meta;
	if (committed_get(d, key, &l))
		return KVT_ECORRUPT;
	struct kvt_seg *s = kvt_disk_seg(&d->io, l.seg);
	uint64_t n = kvt_disk_round(l.disk_len);
	if (s)
		s->live += n;
	d->used += n;
	d->n_blocks++;
	return 0;
}

/* Drops payload written after the last commit: segments newer than the
 * committed write position go, the active one is cut back to it. */
static int reclaim(struct disk_tier *d, uint32_t active, uint64_t end,
		   int have_pos)
{
	for (size_t i = d->io.n_segs; i-- > 0;)
		if (!have_pos || d->io.segs[i].id > active)
			kvt_disk_seg_remove(&d->io, d->io.segs[i].id);
	d->active = have_pos ? active : 1;
	struct kvt_seg *s = kvt_disk_seg(&d->io, d->active);
	if (!s)
		return 0;
	if (s->end > end && ftruncate(s->fd, (off_t)end))
		return -errno;
	s->end = end < s->end ? end : s->end;
	return 0;
}

int kvt_disk_tier_create(const char *dir, uint64_t budget, int zstd_level,
			 struct kvt_tier **out)
{
	if (!dir || !out || zstd_level < 0 || zstd_level > ZSTD_maxCLevel())
		return -EINVAL;
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	struct disk_tier *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->base = (struct kvt_tier){&disk_ops, KVT_TIER_DISK};
	d->budget = budget;
	d->zstd_level = zstd_level;
	d->cctx = ZSTD_createCCtx();
	d->dctx = ZSTD_createDCtx();
	uint32_t active = 0;
	uint64_t end = 0;
	int have_pos = 0;
	int rc = d->cctx && d->dctx ? 0 : -ENOMEM;
	rc = rc ? rc : open_env(d, dir);
	rc = rc ? rc : open_dbs(d, &active, &end, &have_pos);
	rc = rc ? rc : kvt_disk_io_open(&d->io, dir);
	d->io_ready = rc == 0;
	rc = rc ? rc : reclaim(d, active, end, have_pos);
	rc = rc ? rc : disk_iter(&d->base, count_block, d);
	if (rc) {
		disk_destroy(&d->base);
		return rc;
	}
	*out = &d->base;
	return 0;
}
