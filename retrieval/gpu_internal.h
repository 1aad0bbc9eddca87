/*
 * gpu_internal.h - the device copy of an index and its scratch, shared by
 * gpu_select.c (Quest, the request path) and gpu_ckv.c (ClusterKV).
 */
#ifndef KVTIER_RETRIEVAL_GPU_INTERNAL_H
#define KVTIER_RETRIEVAL_GPU_INTERNAL_H

#include "kvt_kernels.h"
#include "rindex_internal.h"

struct glayer {
	/* Quest */
	uint16_t *hi, *lo; /* device */
	uint32_t *cnt;     /* device */
	uint32_t cap;      /* frames */
	uint32_t closed;   /* complete frames uploaded */
	/* ClusterKV (gpu_ckv.c) */
	uint16_t *mean;    /* device fp16 [cap_c][H][d] */
	uint32_t *ccount;  /* device [cap_c][H] */
	uint16_t *assign;  /* device [cap_t][H] */
	uint32_t cap_c, closed_c; /* clusters: room, closed ones uploaded */
	uint64_t cap_t, closed_t; /* tokens: room, closed-chunk ones uploaded */
};

/* A device buffer that only grows; its content is not kept. */
struct dbuf {
	void *p;
	size_t cap;
};

struct kvt_rindex_gpu {
	struct kvt_stream *s;
	struct kvt_shape shape;
	struct glayer *layers;
	struct dbuf q, lg, stats, key, sel, w; /* device scratch */
	void *host;                         /* pinned staging */
	size_t host_cap;
};

/* Grows a device buffer to len bytes (content not kept). */
int kvt_rg_dbuf_need(struct dbuf *b, size_t len);

/* Grows the pinned staging to len bytes (content not kept). */
int kvt_rg_host_need(struct kvt_rindex_gpu *g, size_t len);

/* Moves *p (device, elem bytes x old items kept) into cap items. */
int kvt_rg_regrow(struct kvt_rindex_gpu *g, void **p, size_t elem, size_t old,
		  size_t cap);

/* The request a selection makes of the device. */
struct request {
	uint32_t rows, per_head, nf, nb;
	uint64_t k;
};

/* ClusterKV: enqueues what the device copy of the layer's clusters and
 * cluster ids lacks (aux: pinned staging of kvt_rg_ckv_staging bytes,
 * free again after the request's final sync). */
int kvt_rg_ckv_sync(struct kvt_rindex_gpu *g, const struct kvt_rindex *x,
		    uint32_t layer, void *aux);
size_t kvt_rg_ckv_staging(const struct kvt_rindex *x, uint32_t layer);

/* ClusterKV block keys into g->key (queries already in g->q, raw). */
int kvt_rg_ckv_keys(struct kvt_rindex_gpu *g, const struct kvt_rindex *x,
		    uint32_t layer, const struct kvt_rt_layout *lay,
		    const struct kvt_retrieve_params *p, const struct request *r);

#endif
