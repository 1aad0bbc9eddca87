/*
 * llm_run - runs SmolLM2 (or another llama GGUF) on a prompt with the
 * plain in-memory cache: tokenizes, prefills, decodes greedily, and prints
 * the tokens, the answer and the speed. A smoke test of the model code.
 *
 *   llm_run [--model PATH] [--chat] [-n N] [--threads T] [--ids] PROMPT
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kvbuf.h"
#include "kvtier/kvtier.h"
#include "llm_set.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llm_run [--model PATH] [--chat] [-n N] [--threads T] [--ids] PROMPT\n"
		"Runs the model on PROMPT with a plain full KV cache and greedy decoding.\n"
		"  --model PATH  GGUF file (default .model/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
		"  --chat        wrap PROMPT in the SmolLM2 chat template\n"
		"  -n N          tokens to generate (default 32)\n"
		"  --threads T   worker threads (default: online CPUs)\n"
		"  --ids         print the prompt's token ids\n");
}

struct opts {
	const char *model, *prompt;
	int chat, ids;
	uint32_t n, threads;
};

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"model", 1, 0, 'm'}, {"chat", 0, 0, 'c'}, {"threads", 1, 0, 't'},
		{"ids", 0, 0, 'i'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){".model/SmolLM2-135M-Instruct.Q4_1.gguf", NULL, 0, 0, 32, 0};
	int c;
	while ((c = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'c': o->chat = 1; break;
		case 't': o->threads = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'i': o->ids = 1; break;
		case 'n': o->n = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return -1;
	}
	o->prompt = argv[optind];
	return 0;
}

static char *make_prompt(const struct opts *o)
{
	const char *pre = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
			  "trained by Hugging Face<|im_end|>\n<|im_start|>user\n";
	const char *post = "<|im_end|>\n<|im_start|>assistant\n";
	size_t n = strlen(pre) + strlen(o->prompt) + strlen(post) + 1;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s%s%s", o->chat ? pre : "", o->prompt, o->chat ? post : "");
	return s;
}

static int run(const struct opts *o, struct llm_model *m, struct llm_tok *tok,
	       struct llm_pool *pool)
{
	char *text = make_prompt(o);
	int32_t *ids = NULL, *out = NULL;
	size_t n = 0;
	struct llm_kvbuf *kb = NULL;
	int rc = text ? llm_tok_encode(tok, text, strlen(text), 1, &ids, &n) : -1;
	if (rc == 0 && o->ids) {
		printf("prompt ids (%zu):", n);
		for (size_t i = 0; i < n; i++)
			printf(" %d", ids[i]);
		printf("\n");
	}
	if (rc == 0)
		rc = llm_kvbuf_create(llm_model_config(m), (uint32_t)n + o->n + 1, &kb);
	out = malloc((o->n + 1) * sizeof(int32_t));
	uint32_t got = 0;
	int32_t eos = llm_tok_eos(tok);
	double t0 = llm_now();
	if (rc == 0 && out)
		rc = llm_generate(m, pool, kb, ids, (uint32_t)n, 0, o->n, &eos, 1, out, &got,
				  NULL);
	double t1 = llm_now();
	char *ans = NULL;
	size_t alen;
	if (rc == 0 && llm_tok_decode(tok, out, got, 0, &ans, &alen) == 0)
		printf("%s\n", ans);
	if (rc == 0)
		fprintf(stderr, "llm_run: %zu prompt + %u generated tokens in %.2f s\n", n,
			got, t1 - t0);
	free(ans);
	free(out);
	free(ids);
	free(text);
	llm_kvbuf_free(kb);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o))
		return 2;
	char err[512] = "";
	struct llm_gguf *g = NULL;
	struct llm_model *m = NULL;
	struct llm_tok *tok = NULL;
	struct llm_pool *pool = NULL;
	int rc = llm_set_open(o.model, o.threads, &g, &m, &tok, &pool, err, sizeof(err));
	if (rc == 0)
		rc = run(&o, m, tok, pool);
	if (rc)
		fprintf(stderr, "llm_run: %s\n", err[0] ? err : kvt_strerror(rc));
	llm_set_close(g, m, tok, pool);
	return rc ? 1 : 0;
}
