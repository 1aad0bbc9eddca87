/*
 * The real SmolLM2-135M-Instruct against llama.cpp (an independent
 * implementation; reference in fixtures/smollm2_ref.txt, written by
 * scripts/make_llm_fixture.py):
 *  - tokenization: the same ids for every reference text, special tokens
 *    parsed; decode(encode(text)) == text for those and for the Debian FAQ;
 *  - logits of the last positions of a short chat prompt: same argmax, the
 *    reference top-5 inside our top-10, and log-probs (logits minus their
 *    logsumexp, since a constant shift of a row changes nothing) of the
 *    reference top-64 within the tolerances below. (Measured: 0.244 on the
 *    head, 0.772 on the tail, |dp| 0.0104; a float64 numpy forward over the
 *    same dequantised weights agrees with this code to 1e-4 on the head,
 *    so the gap is llama.cpp's 8-bit activations and f16 KV cache.) llama.cpp quantises activations to 8 bits for its Q4_1
 *    and Q8_0 dot products while we keep them in fp32, hence a tolerance.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvbuf.h"
#include "model_set.h"
#include "tokenizer.h"

/* Tolerances on log-probabilities (see the top of the file): tokens the
 * reference gives at least e^-8 (p >= 3.4e-4), the rest of its top-64 (the
 * far tail, where 8-bit activations in llama.cpp move log-probs most), and
 * the absolute difference of probabilities. */
#define HEAD_LOGPROB -8.0f
#define HEAD_TOL 0.35f
#define TAIL_TOL 1.0f
#define PROB_TOL 0.02f
#define MAX_IDS 256

struct ref_tok {
	char text[512];
	size_t n;
	int32_t ids[MAX_IDS];
};

struct ref_logits {
	uint32_t pos, k;
	float lse;
	int32_t id[64];
	float logit[64];
};

struct ref {
	struct ref_tok tok[16];
	int n_tok;
	int32_t prompt[MAX_IDS];
	uint32_t n_prompt;
	struct ref_logits lg[8];
	int n_lg;
};

static struct llm_gguf *g;
static struct llm_model *model;
static struct llm_tok *tok;
static struct llm_pool *pool;
static struct ref R;

static void unhex(const char *h, char *out)
{
	size_t n = strlen(h) / 2;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (char)v;
	}
	out[n] = 0;
}

static int32_t *read_ids(char **save, size_t n, int32_t *ids)
{
	for (size_t i = 0; i < n; i++)
		ids[i] = (int32_t)strtol(strtok_r(NULL, " \n", save), NULL, 10);
	return ids;
}

static void parse_line(char *line)
{
	char *save, *kind = strtok_r(line, " \n", &save);
	if (!kind || kind[0] == '#')
		return;
	if (strcmp(kind, "tok") == 0) {
		struct ref_tok *t = &R.tok[R.n_tok++];
		unhex(strtok_r(NULL, " \n", &save), t->text);
		t->n = strtoul(strtok_r(NULL, " \n", &save), NULL, 10);
		read_ids(&save, t->n, t->ids);
	} else if (strcmp(kind, "prompt") == 0) {
		R.n_prompt = (uint32_t)strtoul(strtok_r(NULL, " \n", &save), NULL, 10);
		read_ids(&save, R.n_prompt, R.prompt);
	} else if (strcmp(kind, "logits") == 0) {
		struct ref_logits *l = &R.lg[R.n_lg++];
		l->pos = (uint32_t)strtoul(strtok_r(NULL, " \n", &save), NULL, 10);
		l->lse = strtof(strtok_r(NULL, " \n", &save), NULL);
		l->k = (uint32_t)strtoul(strtok_r(NULL, " \n", &save), NULL, 10);
		for (uint32_t i = 0; i < l->k; i++) {
			l->id[i] = (int32_t)strtol(strtok_r(NULL, " \n", &save), NULL, 10);
			l->logit[i] = strtof(strtok_r(NULL, " \n", &save), NULL);
		}
	}
}

static void setup(void)
{
	load_model_set(&g, &model, &tok, &pool);
	FILE *f = fopen(KVT_SOURCE_DIR "/tests/llm/fixtures/smollm2_ref.txt", "r");
	cr_assert_not_null(f, "fixture tests/llm/fixtures/smollm2_ref.txt missing");
	static char line[1 << 16];
	memset(&R, 0, sizeof(R));
	while (fgets(line, sizeof(line), f))
		parse_line(line);
	fclose(f);
	cr_assert(R.n_tok > 0 && R.n_prompt > 0 && R.n_lg > 0, "fixture is empty");
}

static void teardown(void)
{
	free_model_set(g, model, tok, pool);
}

TestSuite(llm_model, .init = setup, .fini = teardown, .timeout = 300);

Test(llm_model, config_is_smollm2_135m)
{
	const struct llm_config *c = llm_model_config(model);
	cr_expect_eq(c->n_layers, 30);
	cr_expect_eq(c->n_head, 9);
	cr_expect_eq(c->n_kv_head, 3);
	cr_expect_eq(c->head_dim, 64);
	cr_expect_eq(c->vocab, 49152);
	cr_expect_float_eq(c->rope_base, 100000.0f, 1e-3);
}

Test(llm_model, tokenizer_matches_llama_cpp)
{
	for (int i = 0; i < R.n_tok; i++) {
		const struct ref_tok *t = &R.tok[i];
		int32_t *ids;
		size_t n;
		cr_assert_eq(llm_tok_encode(tok, t->text, strlen(t->text), 1, &ids, &n), 0);
		cr_expect_eq(n, t->n, "text %d (%s): %zu ids, reference %zu", i, t->text, n, t->n);
		for (size_t k = 0; k < n && k < t->n; k++)
			cr_expect_eq(ids[k], t->ids[k], "text %d id %zu: %d vs %d", i, k,
				     ids[k], t->ids[k]);
		char *back;
		size_t len;
		cr_assert_eq(llm_tok_decode(tok, ids, n, 1, &back, &len), 0);
		cr_expect_str_eq(back, t->text);
		free(back);
		free(ids);
	}
}

Test(llm_model, tokenizer_round_trips_the_debian_faq)
{
	FILE *p = popen("zcat /usr/share/doc/debian/FAQ/debian-faq.en.txt.gz", "r");
	cr_assert_not_null(p);
	size_t cap = 1 << 20, n;
	char *text = malloc(cap);
	n = fread(text, 1, cap - 1, p);
	int st = pclose(p);
	cr_assert(st == 0 && n > 10000,
		  "the Debian FAQ is missing: apt-get install debian-faq (scripts/setup.sh)");
	text[n] = 0;
	int32_t *ids;
	size_t m;
	cr_assert_eq(llm_tok_encode(tok, text, n, 0, &ids, &m), 0);
	cr_expect(m > n / 8 && m < n / 2, "%zu tokens for %zu bytes", m, n);
	char *back;
	size_t len;
	cr_assert_eq(llm_tok_decode(tok, ids, m, 0, &back, &len), 0);
	cr_expect_eq(len, n);
	cr_expect(memcmp(back, text, n) == 0, "decoded text differs");
	free(back);
	free(ids);
	free(text);
}

Test(llm_model, prompt_ids_match_reference)
{
	/* The reference prompt is the SmolLM2 chat template around a question. */
	const char *prompt = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
			     "trained by Hugging Face<|im_end|>\n<|im_start|>user\n"
			     "What is Debian GNU/Linux?<|im_end|>\n<|im_start|>assistant\n";
	int32_t *ids;
	size_t n;
	cr_assert_eq(llm_tok_encode(tok, prompt, strlen(prompt), 1, &ids, &n), 0);
	cr_assert_eq(n, R.n_prompt);
	for (size_t i = 0; i < n; i++)
		cr_expect_eq(ids[i], R.prompt[i]);
	free(ids);
}

struct diffs {
	float head, tail, prob;
};

static void check_position(const float *row, const struct ref_logits *l, struct diffs *st)
{
	const struct llm_config *c = llm_model_config(model);
	cr_expect_eq((int32_t)llm_argmax(row, c->vocab), l->id[0],
		     "position %u: argmax %u, reference %d", l->pos,
		     llm_argmax(row, c->vocab), l->id[0]);
	/* the reference top-5 are all in our top-10 (near-ties below that) */
	for (int k = 0; k < 5; k++) {
		int rank = 0;
		for (uint32_t v = 0; v < c->vocab; v++)
			rank += row[v] > row[l->id[k]];
		cr_expect(rank < 10, "position %u: reference top-%d token %d is our rank %d",
			  l->pos, k + 1, l->id[k], rank + 1);
	}
	double mx = row[0], sum = 0;
	for (uint32_t v = 0; v < c->vocab; v++)
		mx = row[v] > mx ? row[v] : mx;
	for (uint32_t v = 0; v < c->vocab; v++)
		sum += exp(row[v] - mx);
	float lse = (float)(mx + log(sum));
	for (uint32_t k = 0; k < l->k; k++) {
		float ref = l->logit[k] - l->lse, ours = row[l->id[k]] - lse;
		float d = fabsf(ours - ref), pd = fabsf(expf(ours) - expf(ref));
		int head = ref >= HEAD_LOGPROB;
		float *worst = head ? &st->head : &st->tail;
		*worst = d > *worst ? d : *worst;
		st->prob = pd > st->prob ? pd : st->prob;
		cr_expect(d <= (head ? HEAD_TOL : TAIL_TOL) && pd <= PROB_TOL,
			  "position %u token %d: log-prob %f vs reference %f", l->pos,
			  l->id[k], ours, ref);
	}
}

Test(llm_model, logits_match_llama_cpp)
{
	const struct llm_config *c = llm_model_config(model);
	struct llm_kvbuf *kb;
	struct llm_hooks hk;
	cr_assert_eq(llm_kvbuf_create(c, R.n_prompt, &kb), 0);
	llm_kvbuf_hooks(kb, &hk);
	uint32_t last = (uint32_t)R.n_lg;
	float *logits = malloc((size_t)last * c->vocab * sizeof(float));
	cr_assert_eq(llm_forward(model, pool, R.prompt, R.n_prompt, 0, &hk, logits, last), 0);
	struct diffs st = {0};
	for (uint32_t i = 0; i < last; i++) {
		cr_assert_eq(R.lg[i].pos, R.n_prompt - last + i);
		check_position(logits + (size_t)i * c->vocab, &R.lg[i], &st);
	}
	printf("vs llama.cpp, %u positions x top-%u: max |dlogp| %.4f (p >= e^-8; tol %.2f), "
	       "%.4f (tail; tol %.2f), max |dp| %.5f (tol %.2f)\n", last, R.lg[0].k,
	       st.head, HEAD_TOL, st.tail, TAIL_TOL, st.prob, PROB_TOL);
	free(logits);
	llm_kvbuf_free(kb);
}

Test(llm_model, incremental_decode_equals_batch)
{
	/* The same prompt fed in one batch or in pieces gives the same logits. */
	const struct llm_config *c = llm_model_config(model);
	struct llm_kvbuf *a, *b;
	struct llm_hooks ha, hb;
	cr_assert_eq(llm_kvbuf_create(c, R.n_prompt, &a), 0);
	cr_assert_eq(llm_kvbuf_create(c, R.n_prompt, &b), 0);
	llm_kvbuf_hooks(a, &ha);
	llm_kvbuf_hooks(b, &hb);
	float *la = malloc(c->vocab * sizeof(float)), *lb = malloc(c->vocab * sizeof(float));
	cr_assert_eq(llm_forward(model, pool, R.prompt, R.n_prompt, 0, &ha, la, 1), 0);
	uint32_t half = R.n_prompt / 2;
	cr_assert_eq(llm_forward(model, pool, R.prompt, half, 0, &hb, NULL, 0), 0);
	for (uint32_t i = half; i < R.n_prompt; i++)
		cr_assert_eq(llm_forward(model, pool, R.prompt + i, 1, i, &hb, lb, 1), 0);
	float d = 0;
	for (uint32_t v = 0; v < c->vocab; v++)
		d = fmaxf(d, fabsf(la[v] - lb[v]));
	cr_expect(d < 1e-3f, "batch vs incremental max diff %f", d);
	free(la);
	free(lb);
	llm_kvbuf_free(a);
	llm_kvbuf_free(b);
}

Test(llm_model, rope_shift_moves_keys_to_another_position)
{
	/* RoPE attention depends on distances only: the prompt at positions
	 * 0.. and at 5000.. gives the same logits, and keys that differ by a
	 * rotation of 5000 positions exactly (what rekv uses to move blocks). */
	const struct llm_config *c = llm_model_config(model);
	struct llm_kvbuf *a, *b;
	struct llm_hooks ha, hb;
	uint32_t n = 16, shift = 5000;
	cr_assert_eq(llm_kvbuf_create(c, n, &a), 0);
	cr_assert_eq(llm_kvbuf_create(c, n, &b), 0);
	llm_kvbuf_hooks(a, &ha);
	llm_kvbuf_hooks(b, &hb);
	float *la = malloc(c->vocab * sizeof(float)), *lb = malloc(c->vocab * sizeof(float));
	cr_assert_eq(llm_forward(model, pool, R.prompt, n, 0, &ha, la, 1), 0);
	cr_assert_eq(llm_forward(model, pool, R.prompt, n, shift, &hb, lb, 1), 0);
	float dl = 0, dk = 0;
	for (uint32_t v = 0; v < c->vocab; v++)
		dl = fmaxf(dl, fabsf(la[v] - lb[v]));
	for (uint32_t l = 0; l < c->n_layers; l++) {
		float *ka, *va, *kb, *vb;
		uint32_t cap;
		llm_kvbuf_layer(a, l, &ka, &va, &cap);
		llm_kvbuf_layer(b, l, &kb, &vb, &cap);
		for (uint32_t h = 0; h < c->n_kv_head; h++)
			for (uint32_t t = 0; t < n; t++) {
				float *x = ka + ((size_t)h * cap + t) * c->head_dim;
				const float *y = kb + ((size_t)h * cap + t) * c->head_dim;
				llm_rope_shift(c, x, shift);
				for (uint32_t d = 0; d < c->head_dim; d++)
					dk = fmaxf(dk, fabsf(x[d] - y[d]) / (fabsf(y[d]) + 1.0f));
			}
	}
	cr_expect_lt(dl, 0.05f, "logits at shifted positions differ by %f", dl);
	cr_expect_lt(dk, 1e-2f, "shifted keys differ by %f (relative)", dk);
	free(la);
	free(lb);
	llm_kvbuf_free(a);
	llm_kvbuf_free(b);
}
