// kivi_plan.cu - host side of the KIVI and ZipCache kernels: geometry to
// launch plan, item checks.
#include "kivi.cuh"
#include "zip_quant.cuh"

int kvt_kivi_plan(const struct kvt_kivi_geom *g, int quant, struct kivi_plan *p)
{
	int rc = kvt_kivi_geom_check(g);
	if (rc)
		return rc;
	memset(p, 0, sizeof *p);
	p->g = *g;
	kvt_kivi_sect_of(g, 0, &p->k);
	kvt_kivi_sect_of(g, 1, &p->v);
	kvt_kivi_hdr_of(g, 0, &p->hk);
	kvt_kivi_hdr_of(g, 1, &p->hv);
	p->half_elems = g->heads * g->tokens * g->dim;
	p->k_len = p->k.end;
	p->enc_len = p->k.end + p->v.end;
	p->wk = g->heads * p->k.ng * g->dim;
	p->wv = quant ? g->heads * p->v.tq * p->v.nc
		      : g->heads * p->v.tq * (g->dim / (32u / g->bits));
	p->wr = 2 * g->heads * p->k.r * g->dim;
	p->work = p->wk + p->wv + p->wr + (quant ? 1 : 0);
	return 0;
}

int kvt_kivi_items_ok(const struct kvt_gpu_batch *b, uint32_t n)
{
	if (!b || n > b->cap)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		const struct kvt_gpu_item *it = &b->host[i];
		if (!it->src || !it->dst ||
		    (((uintptr_t)it->src | (uintptr_t)it->dst) & 3u))
			return -EINVAL;
	}
	return 0;
}

int kvt_zip_items_ok(const struct kvt_gpu_batch *b, uint32_t n)
{
	int rc = kvt_kivi_items_ok(b, n);
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		if (b->host[i].len == 0 || b->host[i].len > (1u << 30))
			rc = -EINVAL;
	return rc;
}

int kvt_zipq_plan(const struct kvt_zip_geom *g, int tokenwise, uint32_t n_sal,
		  struct zipq_plan *p)
{
	int rc = kvt_zip_geom_check(g);
	if (rc)
		return rc;
	if (g->dim > ZIPQ_MAX_DIM || n_sal > g->tokens || (tokenwise & ~1))
		return -EINVAL;
	memset(p, 0, sizeof *p);
	p->g = *g;
	p->norms = !tokenwise;
	zip_layout(g, n_sal, p->norms, &p->z);
	p->bm_words = (g->tokens + 31) / 32;
	p->half_elems = g->heads * g->tokens * g->dim;
	return 0;
}
