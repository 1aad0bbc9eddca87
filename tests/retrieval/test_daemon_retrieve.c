/* test_daemon_retrieve.c - the RETRIEVE op: kvtierd's server (in a thread,
 * over the real store) selects the same blocks as a local index, follows
 * appends, and refuses bad requests; the protocol messages round-trip and
 * malformed ones are refused; a second process retrieves by name while the
 * first keeps appending. */
#include <errno.h>
#include <sys/wait.h>

#include "bytes.h"
#include "daemon/daemon_test.h"
#include "kvtier/retrieval.h"
#include "protocol.h"
#include "retrieval/synth.h"

#define N 4000
static const struct kvt_shape shape = {1, 2, 64, 16, KVT_DTYPE_F16};

struct data {
	struct synth syn;
	float *dirs, q[4 * 64];
	uint32_t topic[N];
	uint16_t *k, *v;
};

static void data_make(struct data *g)
{
	synth_defaults(&g->syn);
	g->syn.n_tokens = N, g->syn.n_kv_heads = 2, g->syn.n_q_heads = 4;
	g->syn.head_dim = 64, g->syn.n_topics = 32;
	uint64_t st = 21;
	g->dirs = synth_topics(&g->syn, &st);
	g->k = malloc((size_t)2 * N * 64 * 2), g->v = malloc((size_t)2 * N * 64 * 2);
	synth_kv(&g->syn, g->dirs, KVT_DTYPE_F16, g->k, g->v, g->topic, &st);
	synth_queries(&g->syn, g->dirs, g->topic, 1, N, g->q, &st);
}

/* Tokens [first, first + n) as [H][n][d]. */
static uint16_t *slice(const uint16_t *src, uint64_t first, uint32_t n)
{
	uint16_t *d = malloc((size_t)2 * n * 64 * 2);
	for (int h = 0; h < 2; h++)
		memcpy(d + (size_t)h * n * 64, src + ((size_t)h * N + first) * 64,
		       (size_t)n * 64 * 2);
	return d;
}

static void append(struct kvt_client_cache *c, struct kvt_rindex *x,
		   const struct data *g, uint64_t first, uint32_t n)
{
	uint16_t *k = slice(g->k, first, n), *v = slice(g->v, first, n);
	cr_assert_eq(kvt_client_cache_append(c, 0, n, k, v), 0);
	cr_assert_eq(kvt_rindex_add(x, 0, k, n), 0);
	free(k), free(v);
}

static void same_selection(const struct kvt_selection *a,
			   const struct kvt_selection *b)
{
	cr_assert_eq(a->n_blocks, b->n_blocks);
	cr_assert_eq(a->n_tokens, b->n_tokens);
	cr_assert_eq(a->total_tokens, b->total_tokens);
	cr_assert_eq(memcmp(a->blocks, b->blocks, a->n_blocks * 4), 0);
	cr_assert_eq(memcmp(a->n_valid, b->n_valid, a->n_blocks * 4), 0);
}

Test(daemon_retrieve, selects_what_a_local_index_selects_and_follows_appends)
{
	struct test_daemon d;
	struct kvt_server_config sc;
	kvt_server_config_init(&sc);
	test_daemon_start(&d, &sc, "retrieve");
	struct kvt_client *cl;
	cr_assert_eq(kvt_client_connect(d.path, &cl), 0);
	struct kvt_cache_config cfg;
	struct kvt_client_cache *c;
	kvt_cache_config_init(&cfg);
	cfg.shape = shape;
	cr_assert_eq(kvt_client_cache_create(cl, "doc", &cfg, &c), 0);
	struct data g;
	data_make(&g);
	struct kvt_rindex *x;
	cr_assert_eq(kvt_rindex_create(&shape, NULL, &x), 0);
	append(c, x, &g, 0, 3000);

	struct kvt_retrieve_params p;
	kvt_retrieve_params_init(&p);
	p.n_q_heads = 4, p.budget_tokens = 400;
	for (int mode = 0; mode < KVT_RETRIEVE_N_MODES; mode++) {
		struct kvt_selection remote, local;
		p.mode = (enum kvt_retrieval_mode)mode;
		int rc = kvt_client_cache_retrieve(c, 0, &p, g.q, &remote);
		cr_assert_eq(rc, 0, "%s", kvt_strerror(rc));
		cr_assert_eq(kvt_retrieve(x, 0, &p, g.q, &local), 0);
		same_selection(&remote, &local);
		kvt_selection_free(&remote), kvt_selection_free(&local);
	}
	/* the daemon's index takes in what was appended since */
	append(c, x, &g, 3000, 1000);
	struct kvt_selection remote, local;
	p.mode = KVT_RETRIEVE_CLUSTERKV;
	cr_assert_eq(kvt_client_cache_retrieve(c, 0, &p, g.q, &remote), 0);
	cr_assert_eq(kvt_retrieve(x, 0, &p, g.q, &local), 0);
	cr_assert_eq(remote.total_tokens, N);
	same_selection(&remote, &local);
	kvt_selection_free(&remote), kvt_selection_free(&local);

	/* errors come back as codes; the connection stays usable */
	p.n_q_heads = 3;
	cr_assert_eq(kvt_client_cache_retrieve(c, 0, &p, g.q, &remote), -EINVAL);
	p.n_q_heads = 4, p.budget_tokens = 10;
	cr_assert_eq(kvt_client_cache_retrieve(c, 0, &p, g.q, &remote), -EINVAL);
	p.budget_tokens = 400;
	cr_assert_eq(kvt_client_cache_retrieve(c, 1, &p, g.q, &remote), -EINVAL);
	cr_assert_eq(kvt_client_cache_retrieve(c, 0, &p, g.q, &remote), 0);
	kvt_selection_free(&remote);

	/* a damaged stored index is rebuilt for a new handle, not fatal */
	struct kvt_cache *sc_cache;
	cr_assert_eq(kvt_cache_open(d.store, "doc", &sc_cache), 0);
	cr_assert_eq(kvt_cache_meta_put(sc_cache, KVT_RINDEX_META_KEY, "junk", 4), 0);
	kvt_cache_close(sc_cache);
	struct kvt_client_cache *c2;
	cr_assert_eq(kvt_client_cache_open(cl, "doc", &c2), 0);
	cr_assert_eq(kvt_client_cache_retrieve(c2, 0, &p, g.q, &remote), 0);
	cr_assert_eq(kvt_retrieve(x, 0, &p, g.q, &local), 0);
	same_selection(&remote, &local);
	kvt_selection_free(&remote), kvt_selection_free(&local);
	kvt_client_cache_close(c2);

	kvt_rindex_free(x);
	kvt_client_cache_close(c);
	kvt_client_close(cl);
	test_daemon_stop(&d);
	free(g.dirs), free(g.k), free(g.v);
}

Test(daemon_retrieve, messages_round_trip_and_malformed_ones_are_refused)
{
	float q[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct kvt_msg_retrieve_req req = {3, 1, KVT_RETRIEVE_REKV, 2, 1, 99, 16, 32,
					   sizeof q, (const uint8_t *)q}, rq;
	struct kvt_wbuf w;
	kvt_wbuf_init(&w);
	cr_assert_eq(kvt_enc_retrieve_req(&w, &req), 0);
	cr_assert_eq(kvt_dec_retrieve_req(w.data, w.len, &rq), 0);
	cr_assert(rq.handle == 3 && rq.layer == 1 && rq.mode == KVT_RETRIEVE_REKV);
	cr_assert(rq.budget_tokens == 99 && rq.sink_tokens == 16 && rq.recent_tokens == 32);
	cr_assert_eq(memcmp(rq.q, q, sizeof q), 0);
	cr_assert_eq(kvt_dec_retrieve_req(w.data, w.len - 1, &rq), KVT_EPROTO);
	kvt_put_u32(w.data + 33, 12); /* q_len not a multiple of heads x queries x 4 */
	cr_assert_eq(kvt_dec_retrieve_req(w.data, w.len, &rq), KVT_EPROTO);

	uint32_t blocks[3] = {0, 5, 9}, nv[3] = {16, 16, 3};
	struct kvt_msg_retrieve_rep rep = {16, 3, 35, 147, blocks, nv}, rr;
	kvt_wbuf_free(&w);
	cr_assert_eq(kvt_enc_retrieve_rep(&w, &rep), 0);
	cr_assert_eq(kvt_dec_retrieve_rep(w.data, w.len, &rr), 0);
	cr_assert(rr.n_blocks == 3 && rr.n_tokens == 35 && rr.total_tokens == 147);
	cr_assert_eq(memcmp(rr.blocks, blocks, sizeof blocks), 0);
	cr_assert_eq(memcmp(rr.n_valid, nv, sizeof nv), 0);
	free(rr.blocks), free(rr.n_valid);
	cr_assert_eq(kvt_dec_retrieve_rep(w.data, w.len - 8, &rr), KVT_EPROTO);
	kvt_put_u32(w.data + 24 + 8, 0); /* blocks out of order */
	cr_assert_eq(kvt_dec_retrieve_rep(w.data, w.len, &rr), KVT_EPROTO);
	kvt_put_u32(w.data + 24 + 8, 5);
	kvt_put_u32(w.data + 24 + 20, 17); /* more valid tokens than a block */
	cr_assert_eq(kvt_dec_retrieve_rep(w.data, w.len, &rr), KVT_EPROTO);
	cr_assert_str_eq(kvt_op_name(KVT_OP_RETRIEVE), "retrieve");
	kvt_wbuf_free(&w);
}

/* The writer process: appends the document in 40 pieces, pausing between. */
static int write_doc(const char *path, const struct data *g)
{
	struct kvt_client *cl;
	struct kvt_client_cache *c;
	struct kvt_cache_config cfg;
	kvt_cache_config_init(&cfg);
	cfg.shape = shape;
	if (kvt_client_connect(path, &cl) ||
	    kvt_client_cache_create(cl, "shared-doc", &cfg, &c))
		return 1;
	for (uint64_t t = 0; t < N; t += 100) {
		uint16_t *k = slice(g->k, t, 100), *v = slice(g->v, t, 100);
		int rc = kvt_client_cache_append(c, 0, 100, k, v);
		free(k), free(v);
		if (rc)
			return 2;
		usleep(2000);
	}
	kvt_client_cache_close(c);
	kvt_client_close(cl);
	return 0;
}

static struct kvt_client_cache *open_when_there(struct kvt_client *cl)
{
	struct kvt_client_cache *c = NULL;
	for (int i = 0; i < 5000; i++, usleep(1000))
		if (kvt_client_cache_open(cl, "shared-doc", &c) == 0)
			return c;
	cr_assert_fail("the writer never created shared-doc");
	return NULL;
}

static void check_live(const struct kvt_selection *s, uint64_t *last,
		       uint32_t budget)
{
	cr_assert_geq(s->total_tokens, *last, "the index went backwards");
	cr_assert_leq(s->total_tokens, N);
	cr_assert_leq(s->n_tokens, s->total_tokens > budget ? budget : s->total_tokens);
	for (uint32_t i = 0; i < s->n_blocks; i++) {
		cr_assert_lt((uint64_t)s->blocks[i] * 16, s->total_tokens);
		if (i)
			cr_assert_gt(s->blocks[i], s->blocks[i - 1]);
	}
	*last = s->total_tokens;
}

Test(daemon_retrieve, another_process_retrieves_while_the_writer_appends)
{
	struct test_daemon d;
	struct kvt_server_config sc;
	kvt_server_config_init(&sc);
	test_daemon_start(&d, &sc, "retrieve2");
	struct data g;
	data_make(&g);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(write_doc(d.path, &g));

	struct kvt_client *cl;
	cr_assert_eq(kvt_client_connect(d.path, &cl), 0);
	struct kvt_client_cache *c = open_when_there(cl);
	struct kvt_retrieve_params p;
	kvt_retrieve_params_init(&p);
	p.n_q_heads = 4, p.budget_tokens = 400;
	uint64_t last = 0;
	int during = 0, st;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		struct kvt_selection s;
		int rc = kvt_client_cache_retrieve(c, 0, &p, g.q, &s);
		if (rc == 0) { /* an empty cache may refuse: nothing indexed yet */
			check_live(&s, &last, p.budget_tokens);
			during += s.total_tokens > 0 && s.total_tokens < N;
			kvt_selection_free(&s);
		}
		usleep(500);
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer failed: %d", st);
	cr_assert_gt(during, 0, "no retrieval ran while the writer appended");

	/* Once the writer is done the reader sees exactly the whole document. */
	struct kvt_rindex *x;
	struct kvt_selection remote, local;
	cr_assert_eq(kvt_rindex_create(&shape, NULL, &x), 0);
	cr_assert_eq(kvt_rindex_add(x, 0, g.k, N), 0);
	cr_assert_eq(kvt_client_cache_retrieve(c, 0, &p, g.q, &remote), 0);
	cr_assert_eq(kvt_retrieve(x, 0, &p, g.q, &local), 0);
	cr_assert_eq(remote.total_tokens, N);
	check_live(&remote, &last, p.budget_tokens);
	same_selection(&remote, &local);
	kvt_selection_free(&remote), kvt_selection_free(&local);
	kvt_rindex_free(x);
	kvt_client_cache_close(c);
	kvt_client_close(cl);
	test_daemon_stop(&d);
	free(g.dirs), free(g.k), free(g.v);
}
