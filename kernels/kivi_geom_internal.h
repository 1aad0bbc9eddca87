/*
 * kivi_geom_internal.h - section offsets of a KIVI (and ZipCache) stream, from the layout
 * specified in kvtier/codec.h, usable from C and from CUDA device code.
 * Kept apart from codec/ on purpose (kernels do not depend on codecs); the
 * kernel tests compare every byte with the CPU codec, so the two cannot
 * drift silently.
 */
#ifndef KVTIER_KIVI_GEOM_INTERNAL_H
#define KVTIER_KIVI_GEOM_INTERNAL_H

#include <stdint.h>

#include "kvt_kernels.h"

#ifdef __CUDACC__
#define KVT_HD static inline __host__ __device__
#else
#define KVT_HD static inline
#endif

#define KVT_KIVI_HEADER_BYTES 40u
#define KVT_KIVI_MAGIC 0x5154564bu

/* One stream (K or V) of a block; byte offsets are relative to the stream
 * start (header included). */
struct kvt_kivi_sect {
	uint32_t tq;       /* quantized tokens */
	uint32_t r;        /* residual tokens (tokens - tq) */
	uint32_t ng;       /* key groups per head */
	uint32_t nc;       /* value groups per token */
	uint32_t wpg;      /* code words per group */
	uint32_t n_groups; /* scale/min pairs */
	uint32_t codes, scales, mins, residual, end;
};

KVT_HD uint32_t kvt_kg_align4(uint32_t n)
{
	return (n + 3u) & ~3u;
}

KVT_HD uint32_t kvt_kg_esize(uint32_t dtype)
{
	return dtype == KVT_DTYPE_F32 ? 4u : 2u;
}

KVT_HD uint32_t kvt_kg_tq(const struct kvt_kivi_geom *g)
{
	uint32_t t = g->tokens > g->residual ? g->tokens - g->residual : 0;
	return t / g->group * g->group;
}

/* kind: 0 keys, 1 values. */
KVT_HD void kvt_kivi_sect_of(const struct kvt_kivi_geom *g, int kind,
			     struct kvt_kivi_sect *s)
{
	s->tq = kvt_kg_tq(g);
	s->r = g->tokens - s->tq;
	s->wpg = (uint32_t)g->group * g->bits / 32u;
	if (kind == 0) {
		s->ng = s->tq / g->group;
		s->nc = 0;
		s->n_groups = g->heads * s->ng * g->dim;
	} else {
		s->ng = 0;
		s->nc = g->dim / g->group;
		s->n_groups = g->heads * s->tq * s->nc;
	}
	s->codes = KVT_KIVI_HEADER_BYTES;
	s->scales = s->codes + s->n_groups * s->wpg * 4u;
	s->mins = s->scales + kvt_kg_align4(s->n_groups * 2u);
	s->residual = s->mins + kvt_kg_align4(s->n_groups * 2u);
	s->end = s->residual + kvt_kg_align4(g->heads * s->r * g->dim *
					     kvt_kg_esize(g->dtype));
}

/* The 40-byte header of one stream, as ten little-endian words. */
struct kvt_kivi_hdr {
	uint32_t w[10];
};

KVT_HD void kvt_kivi_hdr_of(const struct kvt_kivi_geom *g, int kind,
			    struct kvt_kivi_hdr *h)
{
	struct kvt_kivi_sect s;
	kvt_kivi_sect_of(g, kind, &s);
	h->w[0] = KVT_KIVI_MAGIC;
	/* version 1, codec KIVI (1), kind, dtype */
	h->w[1] = 1u | 1u << 8 | (uint32_t)kind << 16 | (uint32_t)g->dtype << 24;
	h->w[2] = (uint32_t)g->bits | (uint32_t)g->group << 16; /* high_bits 0 */
	h->w[3] = g->heads;
	h->w[4] = g->tokens;
	h->w[5] = g->dim;
	h->w[6] = s.r;
	h->w[7] = 0; /* n_salient */
	h->w[8] = s.end - KVT_KIVI_HEADER_BYTES;
	h->w[9] = 0;
}

/* ZipCache: one stream (K or V) of a block; offsets from the stream start. */
struct zip_sect {
	uint32_t n_sal, n_low, wl, wh, norms;
	uint32_t bitmap, norm, scales, mins, low, high, end;
};

KVT_HD uint32_t zip_row_words(uint32_t dim, uint32_t bits)
{
	return (dim * bits + 31u) / 32u;
}

/* codec/zipcache.c kvt_zip_layout, offsets shifted by the header. */
KVT_HD void zip_layout(const struct kvt_zip_geom *g, uint32_t n_sal,
			  uint32_t norms, struct zip_sect *z)
{
	const uint32_t heads = g->heads, t = g->tokens;
	z->n_sal = n_sal;
	z->n_low = t - n_sal;
	z->wl = zip_row_words(g->dim, g->bits);
	z->wh = zip_row_words(g->dim, g->high_bits);
	z->norms = norms;
	z->bitmap = KVT_KIVI_HEADER_BYTES + 4;
	z->norm = z->bitmap + (t + 31) / 32 * 4;
	z->scales = z->norm + (norms ? kvt_kg_align4(heads * g->dim * 2) : 0);
	z->mins = z->scales + kvt_kg_align4(heads * t * 2);
	z->low = z->mins + kvt_kg_align4(heads * t * 2);
	z->high = z->low + heads * z->n_low * z->wl * 4;
	z->end = z->high + heads * n_sal * z->wh * 4;
}

#endif
