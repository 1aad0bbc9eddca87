/*
 * persist.c - the index as bytes, and as metadata blobs of its cache.
 *
 * Layout (little-endian):
 *   header  "KVTRIDX\0", u32 version, u32 flags (0), u64 body bytes,
 *           u64 XXH3-64 of the body                          (32 bytes)
 *   body    shape (5 x u32), config (4 x u32), then per layer:
 *           u64 tokens, u32 clusters, u32 frames, u32 pending, u32 0,
 *           cluster sizes u32[clusters][H],
 *           mean keys of closed clusters f16[closed][H][d],
 *           key sums of the open chunk's clusters f32[open][H][d],
 *           cluster ids u16[tokens][H], frame sizes u32[frames],
 *           unit mean keys of complete frames f16[full][H][d],
 *           key sums of a partial last frame f32[frames - full][H][d],
 *           (version 2) channel-wise key bounds of complete frames,
 *           largest then smallest, f16[full][H][d] each (rounded
 *           outward), those of a partial last frame f32[frames -
 *           full][H][d] each,
 *           pending keys f32[H][pending][d], their inverse norms
 *           f32[H][pending] and the unit-key sums of the open chunk's
 *           clusters f32[open][H][d], so a loaded index continues exactly
 *           as the saved one would.
 * closed = clusters of full chunks, open = clusters - closed; everything
 * else follows from the token count and the configuration. Everything
 * loaded is checked against everything else (counts, ids in range, sizes
 * summing to the token count), so a blob that passes the checksum yet is
 * inconsistent is refused too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "checksum.h"
#include "half.h"
#include "rindex_internal.h"

#define MAGIC "KVTRIDX"
#define HEADER_BYTES 32

/* Sizes of a layer's sections. */
struct lsizes {
	uint64_t n;           /* tokens */
	uint64_t nc, closed;  /* clusters, of which in full chunks */
	uint64_t nf, full;    /* frames, of which complete */
	uint64_t pend;
};

static struct lsizes sizes_of(const struct kvt_rindex *x, uint64_t n,
			      uint64_t nc, uint64_t nf, uint64_t pend)
{
	uint64_t closed = (n - pend) / x->cfg.chunk_tokens * x->k_chunk;
	uint64_t full = nf - (n % rl_frame_tokens(x) ? 1 : 0);
	return (struct lsizes){n, nc, closed, nf, full, pend};
}

static uint64_t body_bytes(const struct kvt_rindex *x, const struct lsizes *z)
{
	uint64_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	uint64_t open = z->nc - z->closed;
	return z->nc * H * 4 + z->closed * H * d * 2 + open * H * d * 8 +
	       z->n * H * 2 + z->nf * 4 + z->full * H * d * 6 +
	       (z->nf - z->full) * H * d * 12 + H * z->pend * (4 * d + 4);
}

static struct lsizes layer_sizes(const struct kvt_rindex *x,
				 const struct rlayer *l)
{
	return sizes_of(x, l->n_tokens, l->n_clusters, l->n_frames, l->pend_n);
}

/* ---------------------------------------------------------------- save */

struct wbuf {
	uint8_t *p;
	size_t at;
};

static void w32(struct wbuf *w, uint32_t v)
{
	kvt_put_u32(w->p + w->at, v);
	w->at += 4;
}

static void w64(struct wbuf *w, uint64_t v)
{
	kvt_put_u64(w->p + w->at, v);
	w->at += 8;
}

static void wf32s(struct wbuf *w, const float *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		w32(w, kvt_f32_to_bits(f[i]));
}

static void wu16s(struct wbuf *w, const uint16_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++, w->at += 2)
		kvt_put_u16(w->p + w->at, v[i]);
}

static void put_layer(const struct kvt_rindex *x, const struct rlayer *l,
		      struct wbuf *w)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	size_t ch = x->cfg.chunk_tokens;
	struct lsizes z = layer_sizes(x, l);
	size_t open = z.nc - z.closed, partial = z.nf - z.full;
	w64(w, l->n_tokens);
	w32(w, l->n_clusters);
	w32(w, l->n_frames);
	w32(w, l->pend_n);
	w32(w, 0);
	for (size_t i = 0; i < z.nc * H; i++)
		w32(w, l->ccount[i]);
	wu16s(w, l->cmean, z.closed * H * d);
	if (open)
		wf32s(w, l->csum, open * H * d);
	wu16s(w, l->assign, z.n * H);
	for (size_t i = 0; i < z.nf; i++)
		w32(w, l->fcount[i]);
	wu16s(w, l->fmean, z.full * H * d);
	if (partial)
		wf32s(w, l->fsum, H * d);
	wu16s(w, l->fhi, z.full * H * d);
	wu16s(w, l->flo, z.full * H * d);
	if (partial) {
		wf32s(w, l->bhi, H * d);
		wf32s(w, l->blo, H * d);
	}
	for (size_t h = 0; l->pend_n && h < H; h++)
		wf32s(w, l->pend + h * ch * d, (size_t)l->pend_n * d);
	for (size_t h = 0; l->pend_n && h < H; h++)
		wf32s(w, l->pend_inv + h * ch, l->pend_n);
	if (open)
		wf32s(w, l->usum, open * H * d);
}

int kvt_rindex_save(const struct kvt_rindex *idx, void **buf, size_t *len)
{
	if (!idx || !buf || !len)
		return -EINVAL;
	size_t body = 36;
	for (uint32_t i = 0; i < idx->shape.n_layers; i++) {
		struct lsizes z = layer_sizes(idx, &idx->layers[i]);
		body += 24 + body_bytes(idx, &z);
	}
	struct wbuf w = {malloc(HEADER_BYTES + body), HEADER_BYTES};
	if (!w.p)
		return -ENOMEM;
	const struct kvt_shape *s = &idx->shape;
	const struct kvt_rindex_config *c = &idx->cfg;
	uint32_t head[9] = {s->n_layers, s->n_kv_heads, s->head_dim,
			    s->block_tokens, (uint32_t)s->dtype,
			    c->cluster_tokens, c->chunk_tokens, c->iters,
			    c->frame_blocks};
	for (int i = 0; i < 9; i++)
		w32(&w, head[i]);
	for (uint32_t i = 0; i < s->n_layers; i++)
		put_layer(idx, &idx->layers[i], &w);
	memcpy(w.p, MAGIC, 8);
	kvt_put_u32(w.p + 8, KVT_RINDEX_VERSION);
	kvt_put_u32(w.p + 12, 0);
	kvt_put_u64(w.p + 16, body);
	kvt_put_u64(w.p + 24, kvt_checksum(w.p + HEADER_BYTES, body));
	*buf = w.p;
	*len = HEADER_BYTES + body;
	return 0;
}

/* ---------------------------------------------------------------- load */

struct rbuf {
	const uint8_t *p;
	size_t at, len;
};

static int need(const struct rbuf *r, uint64_t n)
{
	return n <= r->len - r->at ? 0 : KVT_ECORRUPT;
}

static uint32_t r32(struct rbuf *r)
{
	uint32_t v = kvt_get_u32(r->p + r->at);
	r->at += 4;
	return v;
}

static void rf32s(struct rbuf *r, float *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		f[i] = kvt_bits_to_f32(r32(r));
}

static void ru16s(struct rbuf *r, uint16_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++, r->at += 2)
		v[i] = kvt_get_u16(r->p + r->at);
}

/* Checks the counts of a layer against the configuration and the bytes
 * left, before anything is allocated. */
static int check_head(const struct kvt_rindex *x, const struct lsizes *z,
		      const struct rbuf *r)
{
	uint64_t ch = x->cfg.chunk_tokens, ct = x->cfg.cluster_tokens;
	uint64_t ft = rl_frame_tokens(x);
	size_t H = x->shape.n_kv_heads;
	if (z->n > r->len / (2 * H) || z->pend >= ch || z->pend > z->n ||
	    (z->n - z->pend) % ch)
		return KVT_ECORRUPT;
	if (z->nc != z->closed + (z->pend + ct - 1) / ct || z->nf != (z->n + ft - 1) / ft)
		return KVT_ECORRUPT;
	return need(r, body_bytes(x, z));
}

/* Every frame's smallest key must be at most its largest, channel by
 * channel (NaN fails too). */
static int check_bounds(const struct kvt_rindex *x, const struct rlayer *l)
{
	size_t n = (size_t)rl_full_frames(x, l) * x->shape.n_kv_heads *
		   x->shape.head_dim;
	size_t open = l->n_frames > rl_full_frames(x, l)
			      ? (size_t)x->shape.n_kv_heads * x->shape.head_dim : 0;
	for (size_t i = 0; i < n; i++)
		if (!(kvt_f16_to_f32(l->flo[i]) <= kvt_f16_to_f32(l->fhi[i])))
			return KVT_ECORRUPT;
	for (size_t i = 0; i < open; i++)
		if (!(l->blo[i] <= l->bhi[i]))
			return KVT_ECORRUPT;
	return 0;
}

/* Sizes must add up to the tokens, frames fill in order, ids must name a
 * cluster of the token's chunk, bounds must be ordered. */
static int check_layer(const struct kvt_rindex *x, const struct rlayer *l)
{
	size_t H = x->shape.n_kv_heads;
	uint64_t ch = x->cfg.chunk_tokens, sum_f = 0, ft = rl_frame_tokens(x);
	for (uint32_t f = 0; f < l->n_frames; f++) {
		if (l->fcount[f] == 0 || l->fcount[f] > ft ||
		    (f + 1 < l->n_frames && l->fcount[f] != ft))
			return KVT_ECORRUPT;
		sum_f += l->fcount[f];
	}
	if (sum_f != l->n_tokens || check_bounds(x, l))
		return KVT_ECORRUPT;
	for (size_t h = 0; h < H; h++) {
		uint64_t sum = 0;
		for (uint32_t c = 0; c < l->n_clusters; c++)
			sum += l->ccount[(size_t)c * H + h];
		if (sum != l->n_tokens)
			return KVT_ECORRUPT;
	}
	for (uint64_t t = 0; t < l->n_tokens; t++) {
		uint64_t c0 = t / ch * x->k_chunk;
		uint64_t k = l->n_clusters - c0 < x->k_chunk ? l->n_clusters - c0
							      : x->k_chunk;
		for (size_t h = 0; h < H; h++)
			if (l->assign[t * H + h] >= k)
				return KVT_ECORRUPT;
	}
	return 0;
}

static void get_arrays(const struct kvt_rindex *x, struct rlayer *l,
		       const struct lsizes *z, struct rbuf *r)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	size_t ch = x->cfg.chunk_tokens;
	size_t open = z->nc - z->closed, partial = z->nf - z->full;
	for (size_t i = 0; i < z->nc * H; i++)
		l->ccount[i] = r32(r);
	ru16s(r, l->cmean, z->closed * H * d);
	if (open)
		rf32s(r, l->csum, open * H * d);
	ru16s(r, l->assign, z->n * H);
	for (size_t i = 0; i < z->nf; i++)
		l->fcount[i] = r32(r);
	ru16s(r, l->fmean, z->full * H * d);
	if (partial)
		rf32s(r, l->fsum, H * d);
	ru16s(r, l->fhi, z->full * H * d);
	ru16s(r, l->flo, z->full * H * d);
	if (partial) {
		rf32s(r, l->bhi, H * d);
		rf32s(r, l->blo, H * d);
	}
	for (size_t h = 0; l->pend_n && h < H; h++)
		rf32s(r, l->pend + h * ch * d, (size_t)l->pend_n * d);
	for (size_t h = 0; l->pend_n && h < H; h++)
		rf32s(r, l->pend_inv + h * ch, l->pend_n);
	if (open)
		rf32s(r, l->usum, open * H * d);
}

static int get_layer(struct kvt_rindex *x, struct rlayer *l, struct rbuf *r)
{
	int rc = need(r, 24);
	if (rc)
		return rc;
	uint64_t n = kvt_get_u64(r->p + r->at);
	r->at += 8;
	uint32_t nc = r32(r), nf = r32(r), pend = r32(r);
	if (r32(r) != 0 || nf > n)
		return KVT_ECORRUPT;
	struct lsizes z = sizes_of(x, n, nc, nf, pend);
	if ((rc = check_head(x, &z, r)))
		return rc;
	/* The workspace only for a chunk or a frame being filled. */
	if (((pend || z.nf > z.full) && (rc = kvt_rl_alloc_chunk(x, l))) ||
	    (rc = kvt_rl_reserve(x, l, n, nc, nf)))
		return rc;
	l->n_tokens = n, l->n_clusters = nc, l->n_frames = nf, l->pend_n = pend;
	get_arrays(x, l, &z, r);
	if ((rc = check_layer(x, l)))
		return rc;
	if (l->pend_n)
		kvt_km_rebuild(x, l);
	return 0;
}

static int get_header(const uint8_t *p, size_t len, struct rbuf *r)
{
	if (len < HEADER_BYTES || memcmp(p, MAGIC, 8))
		return KVT_EFORMAT;
	if (kvt_get_u32(p + 8) != KVT_RINDEX_VERSION)
		return KVT_EVERSION;
	uint64_t body = kvt_get_u64(p + 16);
	if (body != len - HEADER_BYTES)
		return KVT_EFORMAT;
	if (kvt_checksum(p + HEADER_BYTES, body) != kvt_get_u64(p + 24))
		return KVT_ECORRUPT;
	*r = (struct rbuf){p + HEADER_BYTES, 0, body};
	return need(r, 36);
}

int kvt_rindex_load(const void *buf, size_t len, struct kvt_rindex **out)
{
	struct rbuf r;
	if (!buf || !out)
		return -EINVAL;
	int rc = get_header(buf, len, &r);
	if (rc)
		return rc;
	struct kvt_shape s;
	struct kvt_rindex_config c;
	s.n_layers = r32(&r), s.n_kv_heads = r32(&r), s.head_dim = r32(&r);
	s.block_tokens = r32(&r), s.dtype = (enum kvt_dtype)r32(&r);
	c.cluster_tokens = r32(&r), c.chunk_tokens = r32(&r);
	c.iters = r32(&r), c.frame_blocks = r32(&r);
	struct kvt_rindex *x;
	rc = kvt_rindex_create(&s, &c, &x);
	if (rc)
		return rc == -EINVAL ? KVT_ECORRUPT : rc;
	for (uint32_t i = 0; rc == 0 && i < s.n_layers; i++)
		rc = get_layer(x, &x->layers[i], &r);
	if (rc == 0 && r.at != r.len)
		rc = KVT_ECORRUPT;
	if (rc) {
		kvt_rindex_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

/* ---------------------------------------------------------------- with a cache */

static int same_shape(const struct kvt_shape *a, const struct kvt_shape *b)
{
	return a->n_layers == b->n_layers && a->n_kv_heads == b->n_kv_heads &&
	       a->head_dim == b->head_dim && a->block_tokens == b->block_tokens &&
	       a->dtype == b->dtype;
}

static int cache_shape(struct kvt_cache *cache, struct kvt_shape *s)
{
	struct kvt_cache_info *info = malloc(sizeof *info);
	if (!info)
		return -ENOMEM;
	int rc = kvt_cache_get_info(cache, info);
	if (rc == 0)
		*s = info->config.shape;
	free(info);
	return rc;
}

/*
 * With a cache the saved bytes are split into pieces of PIECE_BYTES (one
 * metadata blob is bounded by KVT_META_MAX_BYTES, a long multi-layer
 * index is not): blobs KVT_RINDEX_META_KEY ".0", ".1", ... and, written
 * last, KVT_RINDEX_META_KEY itself: "KVTRIDXP", u32 version, u32 pieces,
 * u64 bytes, u64 XXH3 of the bytes. A crash between the writes leaves
 * pieces that fail that checksum: KVT_ECORRUPT, never a mixed index.
 */
#define PIECE_BYTES (64u << 20)
#define PIECES_MAGIC "KVTRIDXP"

static void piece_key(char *key, size_t cap, uint32_t i)
{
	snprintf(key, cap, "%s.%u", KVT_RINDEX_META_KEY, i);
}

static int put_pieces(struct kvt_cache *cache, const uint8_t *buf, size_t len,
		      uint32_t *n)
{
	char key[KVT_META_KEY_MAX + 1];
	uint32_t i = 0;
	int rc = 0;
	for (size_t at = 0; rc == 0 && (at < len || i == 0); at += PIECE_BYTES, i++) {
		size_t m = len - at < PIECE_BYTES ? len - at : PIECE_BYTES;
		piece_key(key, sizeof key, i);
		rc = kvt_cache_meta_put(cache, key, buf + at, m);
	}
	*n = i;
	return rc;
}

/* Removes pieces from number `from` on, left by a longer earlier index. */
static void drop_pieces(struct kvt_cache *cache, uint32_t from)
{
	char key[KVT_META_KEY_MAX + 1];
	for (uint32_t i = from;; i++) {
		piece_key(key, sizeof key, i);
		if (kvt_cache_meta_del(cache, key))
			return;
	}
}

static int put_header(struct kvt_cache *cache, const uint8_t *buf, size_t len,
		      uint32_t n)
{
	uint8_t h[32];
	memcpy(h, PIECES_MAGIC, 8);
	kvt_put_u32(h + 8, KVT_RINDEX_VERSION);
	kvt_put_u32(h + 12, n);
	kvt_put_u64(h + 16, len);
	kvt_put_u64(h + 24, kvt_checksum(buf, len));
	return kvt_cache_meta_put(cache, KVT_RINDEX_META_KEY, h, sizeof h);
}

int kvt_rindex_persist(const struct kvt_rindex *idx, struct kvt_cache *cache)
{
	struct kvt_shape s;
	if (!idx || !cache)
		return -EINVAL;
	int rc = cache_shape(cache, &s);
	if (rc)
		return rc;
	if (!same_shape(&s, &idx->shape))
		return KVT_ESHAPE;
	void *buf;
	size_t len;
	uint32_t n = 0;
	if ((rc = kvt_rindex_save(idx, &buf, &len)))
		return rc;
	rc = put_pieces(cache, buf, len, &n);
	if (rc == 0)
		rc = put_header(cache, buf, len, n);
	if (rc == 0)
		drop_pieces(cache, n);
	free(buf);
	return rc;
}

/* Appends piece i to buf (len bytes in all, *at filled so far). */
static int get_piece(struct kvt_cache *cache, uint32_t i, uint8_t *buf,
		     size_t len, size_t *at)
{
	char key[KVT_META_KEY_MAX + 1];
	void *piece;
	size_t pl;
	piece_key(key, sizeof key, i);
	int rc = kvt_cache_meta_get(cache, key, &piece, &pl);
	if (rc)
		return rc == KVT_ENOTFOUND ? KVT_ECORRUPT : rc;
	if (pl <= len - *at) {
		memcpy(buf + *at, piece, pl);
		*at += pl;
	} else {
		rc = KVT_ECORRUPT;
	}
	free(piece);
	return rc;
}

/* Reads the header and the pieces into one malloc'd buffer. */
static int get_pieces(struct kvt_cache *cache, uint8_t **out, size_t *out_len)
{
	void *h;
	size_t hl;
	int rc = kvt_cache_meta_get(cache, KVT_RINDEX_META_KEY, &h, &hl);
	if (rc)
		return rc;
	const uint8_t *p = h;
	rc = hl != 32 || memcmp(p, PIECES_MAGIC, 8) ? KVT_EFORMAT
	     : kvt_get_u32(p + 8) != KVT_RINDEX_VERSION ? KVT_EVERSION : 0;
	uint32_t n = rc ? 0 : kvt_get_u32(p + 12);
	uint64_t len = rc ? 0 : kvt_get_u64(p + 16), sum = rc ? 0 : kvt_get_u64(p + 24);
	free(h);
	if (rc == 0 && (len > (uint64_t)n * PIECE_BYTES || len > SIZE_MAX / 2))
		rc = KVT_ECORRUPT;
	uint8_t *buf = rc ? NULL : malloc(len ? len : 1);
	if (rc == 0 && !buf)
		rc = -ENOMEM;
	size_t at = 0;
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		rc = get_piece(cache, i, buf, len, &at);
	if (rc == 0 && (at != len || kvt_checksum(buf, len) != sum))
		rc = KVT_ECORRUPT;
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*out_len = len;
	return 0;
}

int kvt_rindex_open(struct kvt_cache *cache, struct kvt_rindex **out)
{
	struct kvt_shape s;
	if (!cache || !out)
		return -EINVAL;
	int rc = cache_shape(cache, &s);
	uint8_t *buf = NULL;
	size_t len = 0;
	if (rc == 0)
		rc = get_pieces(cache, &buf, &len);
	if (rc)
		return rc;
	struct kvt_rindex *x;
	rc = kvt_rindex_load(buf, len, &x);
	free(buf);
	if (rc)
		return rc;
	if (!same_shape(&s, &x->shape)) {
		kvt_rindex_free(x);
		return KVT_ESHAPE;
	}
	*out = x;
	return 0;
}
