/* test_cli_retrieve.c - `kvtier retrieve` on a store written by the
 * library: a planted needle found, the index stored and reused, bad input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli_run.h"
#include "kvtier/retrieval.h"
#include "npy.h"
#include "retrieval/synth.h"

#define N 5000
#define NEEDLE 2345
static char dir[512];
static const struct kvt_shape shape = {2, 2, 64, 16, KVT_DTYPE_F16};

static char *p(const char *name)
{
	return cli_path(dir, name);
}

/* Runs kvtier retrieve with args; stdout+stderr into out. */
static int run(char *out, size_t cap, const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "%s retrieve %s >%s 2>&1", KVT_CLI, args, p("out"));
	int st = cli_system(cmd);
	cli_slurp(p("out"), out, cap);
	return st;
}

/* A store with cache "doc": synthetic keys, a needle at NEEDLE in both
 * layers along u; queries.npy asks for it, [2 layers, 4 q heads, 64]. */
static void setup(void)
{
	const char *t = getenv("KVT_TEST_TMP");
	mkdir(t ? t : "/tmp", 0755);
	snprintf(dir, sizeof dir, "%s/cli-retrieve-%d", t ? t : "/tmp", getpid());
	mkdir(dir, 0755);
	struct synth syn;
	synth_defaults(&syn);
	syn.n_tokens = N, syn.n_kv_heads = 2, syn.n_q_heads = 4, syn.head_dim = 64;
	uint64_t st = 5;
	float *dirs = synth_topics(&syn, &st), u[64], nrm = 0;
	uint16_t *k = malloc(2 * N * 64 * 2), *v = malloc(2 * N * 64 * 2);
	uint32_t *topic = malloc(N * sizeof *topic);
	synth_kv(&syn, dirs, KVT_DTYPE_F16, k, v, topic, &st);
	for (int e = 0; e < 64; e++)
		u[e] = synth_normal(&st), nrm += u[e] * u[e];
	for (int h = 0; h < 2; h++)
		for (int i = 0; i < 20; i++)
			for (int e = 0; e < 64; e++)
				k[((size_t)h * N + NEEDLE + i) * 64 + e] =
					kvt_f32_to_f16(8.0f * u[e] / sqrtf(nrm));
	struct kvt_store_config sc;
	struct kvt_store *s;
	struct kvt_cache *c;
	struct kvt_cache_config cc;
	kvt_store_config_init(&sc);
	sc.data_dir = p("store");
	cr_assert_eq(kvt_store_open(&sc, &s), 0);
	kvt_cache_config_init(&cc);
	cc.shape = shape;
	cr_assert_eq(kvt_cache_create(s, "doc", &cc, &c), 0);
	for (uint32_t l = 0; l < 2; l++)
		cr_assert_eq(kvt_cache_append(c, l, N, k, v), 0);
	kvt_cache_close(c);
	kvt_store_close(s);
	float q[2 * 4 * 64];
	for (int i = 0; i < 2 * 4; i++)
		for (int e = 0; e < 64; e++)
			q[i * 64 + e] = 12.0f * u[e] / sqrtf(nrm);
	uint64_t qs[3] = {2, 4, 64}, bad[2] = {3, 64};
	cr_assert_eq(kvt_npy_write(p("q.npy"), KVT_DTYPE_F32, 3, qs, q), 0);
	cr_assert_eq(kvt_npy_write(p("bad.npy"), KVT_DTYPE_F32, 2, bad, q), 0);
	free(dirs), free(k), free(v), free(topic);
}

TestSuite(cli_retrieve, .init = setup);

/* The recall figure printed for one layer. */
static double recall_of(const char *out)
{
	const char *at = strstr(out, "attention mass recall ");
	cr_assert_not_null(at, "%s", out);
	return strtod(at + strlen("attention mass recall "), NULL);
}

Test(cli_retrieve, finds_the_needle_and_reuses_the_stored_index)
{
	char out[16384], args[2048];
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --budget 0.05 --save-index",
		 p("store"), p("q.npy"));
	int rc = run(out, sizeof out, args);
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert(strstr(out, "index: built from the cache"), "%s", out);
	cr_assert(strstr(out, "index: stored with the cache"), "%s", out);
	char want[64];
	snprintf(want, sizeof want, " %u-%u", NEEDLE / 16, (NEEDLE + 19) / 16);
	cr_assert(strstr(out, want), "needle blocks%s missing: %s", want, out);
	cr_assert_gt(recall_of(out), 0.9, "%s", out);
	cr_assert(strstr(out, "mean over 2 layers"), "%s", out);

	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --mode rekv --layer 1",
		 p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 0, "%s", out);
	cr_assert(strstr(out, "index: stored with the cache, brought up to date"), "%s", out);
	cr_assert(strstr(out, "layer 1:") && !strstr(out, "layer 0:"), "%s", out);
	cr_assert_gt(recall_of(out), 0.9, "%s", out);
}

/* Quest, with the blocks made resident by kvt_cache_reload (a GPU tier
 * where a GPU is usable, host memory otherwise). */
Test(cli_retrieve, quest_with_the_reload_path)
{
	char out[16384], args[2048];
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --budget 0.05 "
		 "--mode quest --gpu-bytes 64M", p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 0, "%s", out);
	char want[64];
	snprintf(want, sizeof want, " %u-%u", NEEDLE / 16, (NEEDLE + 19) / 16);
	cr_assert(strstr(out, want), "needle blocks%s missing: %s", want, out);
	cr_assert(strstr(out, "quest: attention mass recall"), "%s", out);
	cr_assert_gt(recall_of(out), 0.9, "%s", out);
	cr_assert(strstr(out, "  reloaded "), "%s", out);
	cr_assert(strstr(out, "block oracle: recall"), "%s", out);
	if (strstr(out, "selected on the GPU")) /* a device: blocks go there */
		cr_assert(!strstr(out, " 0 in GPU memory"), "%s", out);
	else
		cr_assert(strstr(out, "GPU selection: ") && strstr(out, " 0 in GPU memory"),
			  "%s", out);
	/* one selection per query vector: the planted needle is found by each */
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --budget 0.05 "
		 "--mode quest --per-query --layer 0", p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 0, "%s", out);
	const char *pq = strstr(out, "per query (");
	cr_assert_not_null(pq, "%s", out);
	const char *r = strstr(pq, "recall ");
	cr_assert_not_null(r, "%s", out);
	cr_assert_gt(strtod(r + 7, NULL), 0.9, "%s", out);
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --gpu-bytes 0",
		 p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 2, "%s", out);
	cr_assert(strstr(out, "bad --gpu-bytes"), "%s", out);
}

Test(cli_retrieve, bad_input_is_reported)
{
	char out[16384], args[2048];
	cr_assert_eq(run(out, sizeof out, "--help"), 0);
	cr_assert(strstr(out, "usage: kvtier retrieve"));
	cr_assert_eq(run(out, sizeof out, "doc"), 2);
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s", p("store"), p("bad.npy"));
	cr_assert_eq(run(out, sizeof out, args), 1, "%s", out);
	cr_assert(strstr(out, "q_heads"), "%s", out);
	snprintf(args, sizeof args, "--data-dir %s nope --queries %s", p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 1, "%s", out);
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --budget 50", p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 1, "%s", out);
	cr_assert(strstr(out, "sink + recent"), "%s", out);
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --mode fast", p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 2, "%s", out);
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s", p("store"), p("missing.npy"));
	cr_assert_eq(run(out, sizeof out, args), 1, "%s", out);
}

Test(cli_retrieve, a_corrupt_stored_index_is_refused)
{
	struct kvt_store_config sc;
	struct kvt_store *s;
	struct kvt_cache *c;
	kvt_store_config_init(&sc);
	sc.data_dir = p("store");
	cr_assert_eq(kvt_store_open(&sc, &s), 0);
	cr_assert_eq(kvt_cache_open(s, "doc", &c), 0);
	uint8_t junk[100];
	memset(junk, 0xab, sizeof junk);
	memcpy(junk, "KVTRIDX", 8);
	junk[8] = 1;
	cr_assert_eq(kvt_cache_meta_put(c, KVT_RINDEX_META_KEY, junk, sizeof junk), 0);
	kvt_cache_close(c);
	kvt_store_close(s);
	char out[16384], args[2048];
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s", p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 1, "%s", out);
	cr_assert(strstr(out, "index:"), "%s", out);
	/* --rebuild-index recovers, --save-index replaces the damaged one */
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --rebuild-index --save-index",
		 p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 0, "%s", out);
	cr_assert(strstr(out, "index: built from the cache"), "%s", out);
	snprintf(args, sizeof args, "--data-dir %s doc --queries %s --no-quality",
		 p("store"), p("q.npy"));
	cr_assert_eq(run(out, sizeof out, args), 0, "%s", out);
	cr_assert(strstr(out, "index: stored with the cache"), "%s", out);
	cr_assert(!strstr(out, "attention mass recall"), "%s", out);
}
