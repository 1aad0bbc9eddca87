/*
 * qa_demo - long-document QA with SmolLM2-135M over a kvtier store, ReKV
 * style: the Debian FAQ is prefilled in chunks with sliding-window
 * attention, every block of K/V goes to a kvtier cache (KIVI-quantized when
 * cold, spilled under the host budget), and each question (a section
 * heading of the FAQ) is answered over the blocks retrieval selects and
 * makes resident, plus the question itself.
 *
 *   qa_demo [--socket PATH | --data-dir DIR] [--tokens N | --full] ...
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "kvstore.h"
#include "llm_set.h"
#include "qa.h"

struct opts {
	const char *model, *socket, *data_dir, *faq;
	int retrieval; /* -1: the demo's own selection, else kvt_retrieval_mode */
	uint32_t tokens, questions, budget_pct, bits, max_new, threads;
	uint64_t host_mib;
	struct llm_rekv_config rk;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: qa_demo [OPTIONS]\n"
		"Answers questions about the Debian FAQ with SmolLM2-135M, the document's\n"
		"KV cache held in kvtier and retrieved per question (ReKV style).\n"
		"  --model PATH      GGUF model (default .model/SmolLM2-135M-Instruct.Q4_1.gguf;\n"
		"                    scripts/fetch_model.sh downloads it)\n"
		"  --faq PATH        FAQ text (default " LLM_FAQ_PATH ")\n"
		"  --socket PATH     use the kvtierd at PATH (default: an in-process store)\n"
		"  --data-dir DIR    in-process store: disk tier directory (default: none)\n"
		"  --host-mib M      in-process store: host budget in MiB (default 256, or 8\n"
		"                    with --data-dir so that cold blocks spill to disk)\n"
		"  --tokens N        document prefix to prefill (default 4096)\n"
		"  --full            prefill the whole FAQ (about 45k tokens)\n"
		"  --questions N     questions to ask (default 5)\n"
		"  --budget PCT      retrieval budget, %% of the document (default 10)\n"
		"  --bits B          KIVI bits of cold blocks: 2, 4 or 8; 16 = raw (default 2)\n"
		"  --max-new N       answer tokens at most (default 48)\n"
		"  --chunk N         prefill chunk (default 128)\n"
		"  --window N        sliding window of the prefill (default 1024)\n"
		"  --retrieval M     block selection: clusterkv, quest or rekv (kvtier's retrieval\n"
		"                    module, run by the store: in kvtierd with --socket),\n"
		"                    or simple (this demo's mean-key cosine); default clusterkv\n"
		"  --threads T       worker threads (default: online CPUs)\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"model", 1, 0, 'm'}, {"faq", 1, 0, 'f'}, {"socket", 1, 0, 's'},
		{"data-dir", 1, 0, 'd'}, {"host-mib", 1, 0, 'H'}, {"tokens", 1, 0, 'n'},
		{"full", 0, 0, 'F'}, {"questions", 1, 0, 'q'}, {"budget", 1, 0, 'b'},
		{"bits", 1, 0, 'B'}, {"max-new", 1, 0, 'x'}, {"chunk", 1, 0, 'c'},
		{"window", 1, 0, 'w'}, {"threads", 1, 0, 't'}, {"retrieval", 1, 0, 'r'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){".model/SmolLM2-135M-Instruct.Q4_1.gguf", NULL, NULL,
			   LLM_FAQ_PATH, KVT_RETRIEVE_CLUSTERKV, 4096, 5, 10, 2, 48, 0, 0, {0}};
	llm_rekv_config_init(&o->rk);
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		unsigned long v = optarg ? strtoul(optarg, NULL, 10) : 0;
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'f': o->faq = optarg; break;
		case 's': o->socket = optarg; break;
		case 'd': o->data_dir = optarg; break;
		case 'H': o->host_mib = v; break;
		case 'n': o->tokens = (uint32_t)v; break;
		case 'F': o->tokens = 0; break;
		case 'q': o->questions = (uint32_t)v; break;
		case 'b': o->budget_pct = (uint32_t)v; break;
		case 'B': o->bits = (uint32_t)v; break;
		case 'x': o->max_new = (uint32_t)v; break;
		case 'c': o->rk.chunk = (uint32_t)v; break;
		case 'w': o->rk.window = (uint32_t)v; break;
		case 't': o->threads = (uint32_t)v; break;
		case 'r':
			o->retrieval = strcmp(optarg, "clusterkv") == 0 ? KVT_RETRIEVE_CLUSTERKV
				     : strcmp(optarg, "rekv") == 0    ? KVT_RETRIEVE_REKV
				     : strcmp(optarg, "quest") == 0   ? KVT_RETRIEVE_QUEST
				     : strcmp(optarg, "simple") == 0  ? -1 : -2;
			if (o->retrieval == -2) {
				usage(stderr);
				return -1;
			}
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc || o->rk.chunk == 0 || o->budget_pct == 0 || o->budget_pct > 100 ||
	    (o->bits != 2 && o->bits != 4 && o->bits != 8 && o->bits != 16)) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* Everything the demo holds, released by cleanup(). */
struct demo {
	struct opts o;
	struct llm_gguf *g;
	struct llm_model *m;
	struct llm_tok *tok;
	struct llm_pool *pool;
	struct llm_faq faq;
	struct llm_qa_doc doc;
	struct kvt_store *store;
	struct kvt_client *cl;
	struct llm_kvstore *kv;
	struct llm_rekv *rk;
	char err[512];
};

static int load_model(struct demo *d)
{
	int rc = llm_set_open(d->o.model, d->o.threads, &d->g, &d->m, &d->tok,
			      &d->pool, d->err, sizeof(d->err));
	if (rc == 0)
		rc = llm_faq_load(d->o.faq, &d->faq, d->err, sizeof(d->err));
	if (rc == 0)
		rc = llm_qa_doc_build(d->tok, &d->faq, d->o.tokens, &d->doc);
	return rc;
}

static void cache_config(const struct demo *d, struct kvt_cache_config *cc)
{
	const struct llm_config *c = llm_model_config(d->m);
	kvt_cache_config_init(cc);
	cc->shape.n_layers = c->n_layers;
	cc->shape.n_kv_heads = c->n_kv_head;
	cc->shape.head_dim = c->head_dim;
	if (d->o.bits != 16) {
		kvt_codec_params_init(&cc->cold, KVT_CODEC_KIVI);
		cc->cold.bits = (uint8_t)d->o.bits;
	}
}

static int open_store(struct demo *d)
{
	struct kvt_cache_config cc;
	char name[64];
	cache_config(d, &cc);
	snprintf(name, sizeof(name), "qa-debian-faq-%d", (int)getpid());
	int rc;
	if (d->o.socket) {
		rc = kvt_client_connect(d->o.socket, &d->cl);
		if (rc)
			snprintf(d->err, sizeof(d->err), "cannot reach kvtierd at %s: %s",
				 d->o.socket, kvt_strerror(rc));
		if (rc == 0)
			rc = llm_kvstore_remote(d->cl, name, &cc, &d->kv);
	} else {
		struct kvt_store_config sc;
		kvt_store_config_init(&sc);
		sc.data_dir = d->o.data_dir;
		sc.host_bytes = (d->o.host_mib ? d->o.host_mib : d->o.data_dir ? 8 : 256) << 20;
		rc = kvt_store_open(&sc, &d->store);
		if (rc == 0)
			rc = llm_kvstore_local(d->store, name, &cc, &d->kv);
	}
	if (rc == 0 && d->o.retrieval >= 0)
		rc = llm_kvstore_index(d->kv, NULL);
	if (rc == 0)
		rc = llm_rekv_create(d->m, d->pool, &d->o.rk, &d->kv, 1, d->doc.n, &d->rk);
	return rc;
}

static void print_stats(struct demo *d, const char *when)
{
	struct kvt_stats st;
	if (llm_kvstore_stats(d->kv, &st) != 0)
		return;
	printf("  store %s:", when);
	for (int t = 0; t < KVT_TIER_COUNT; t++)
		if (st.tier[t].present)
			printf(" %s %.2f MiB (%llu blocks)", kvt_tier_name((enum kvt_tier_kind)t),
			       st.tier[t].used_bytes / 1048576.0,
			       (unsigned long long)st.tier[t].n_blocks);
	printf("; raw %.2f MiB stored %.2f MiB (x%.2f); demotions %llu promotions %llu\n",
	       st.raw_bytes / 1048576.0, st.stored_bytes / 1048576.0, st.compression_ratio,
	       (unsigned long long)st.demotions, (unsigned long long)st.promotions);
}

static void progress(void *arg, uint32_t done, uint32_t total)
{
	double *t0 = arg;
	if (done == total || done % 1024 < 128)
		fprintf(stderr, "\r  prefill %u/%u tokens (%.0f tok/s)%s", done, total,
			done / (llm_now() - *t0), done == total ? "\n" : "");
}

static int prefill(struct demo *d)
{
	printf("document: Debian FAQ, %u tokens prefilled (%u sections inside), "
	       "chunk %u, window %u, KIVI-%u cold blocks%s\n", d->doc.n, d->doc.n_sec,
	       d->o.rk.chunk, d->o.rk.window, d->o.bits,
	       d->o.socket ? ", store in kvtierd" : ", in-process store");
	double t0 = llm_now();
	int rc = llm_rekv_prefill(d->rk, d->doc.ids, d->doc.n, progress, &t0);
	double dt = llm_now() - t0;
	if (rc == 0)
		printf("prefill: %u tokens in %.2f s = %.1f tokens/s\n", d->doc.n, dt,
		       d->doc.n / dt);
	print_stats(d, "after prefill");
	return rc;
}

/* Blocks most often chosen across layers, with the section they lie in. */
static void print_blocks(const struct demo *d, const struct llm_selection *sel)
{
	uint32_t nb = llm_rekv_blocks(d->rk), bt = llm_rekv_block_tokens(d->rk);
	uint32_t *cnt = calloc(nb, sizeof(uint32_t));
	if (!cnt)
		return;
	uint32_t forced = 0;
	for (uint32_t b = 0; b < nb; b++)
		forced += llm_rekv_forced(d->rk, b);
	uint64_t total = 0;
	for (uint32_t l = 0; l < sel->n_layers; l++) {
		const uint32_t *bl = sel->blocks + (size_t)l * sel->stride;
		total += sel->count[l];
		for (uint32_t i = 0; i < sel->count[l]; i++)
			cnt[bl[i]] += !llm_rekv_forced(d->rk, bl[i]);
	}
	printf("  blocks: %.1f per layer of %u (%u sink+recent); most retrieved "
	       "(block:section:layers):", (double)total / sel->n_layers, nb, forced);
	for (int k = 0; k < 10; k++) {
		uint32_t best = 0;
		for (uint32_t b = 1; b < nb; b++)
			if (cnt[b] > cnt[best])
				best = b;
		if (cnt[best] == 0)
			break;
		int s = llm_qa_section_of(&d->doc, best * bt);
		printf(" %u:%s:%u", best, s >= 0 ? d->faq.sec[s].number : "-", cnt[best]);
		cnt[best] = 0;
	}
	printf("\n");
	free(cnt);
}

static int select_blocks(struct demo *d, const struct llm_query *q, uint32_t budget,
			 struct llm_selection *sel)
{
	if (d->o.retrieval < 0)
		return llm_rekv_select(d->rk, q, budget, sel);
	return llm_rekv_retrieve(d->rk, 0, (enum kvt_retrieval_mode)d->o.retrieval, q, budget,
				 sel);
}

static const char *retrieval_name(int mode)
{
	return mode < 0 ? "simple" : kvt_retrieval_mode_name((enum kvt_retrieval_mode)mode);
}

struct q_times {
	double probe, select, load, gen;
	uint32_t gen_tokens;
};

/* One question's working set: its ids, queries, selection, resident KV. */
struct turn {
	int32_t *q, *out;
	uint32_t nq, got;
	struct llm_query qq;
	struct llm_selection sel;
	struct llm_kvbuf *kb;
	uint64_t bytes;
	double t[5]; /* start, probed, selected, loaded, answered */
};

static void turn_free(struct turn *t)
{
	llm_kvbuf_free(t->kb);
	llm_selection_free(&t->sel);
	llm_query_free(&t->qq);
	free(t->q);
	free(t->out);
}

/* Probe, select, make the selected blocks resident, generate. */
static int run_turn(struct demo *d, uint32_t s, struct turn *t)
{
	const struct llm_config *c = llm_model_config(d->m);
	uint32_t budget = (uint32_t)((uint64_t)d->doc.n * d->o.budget_pct / 100);
	int32_t stops[3];
	t->out = malloc(d->o.max_new * sizeof(int32_t));
	int rc = t->out ? llm_qa_question(d->tok, d->faq.sec[s].question, &t->q, &t->nq) : -ENOMEM;
	t->t[0] = llm_now();
	if (rc == 0)
		rc = llm_rekv_probe(d->rk, t->q, t->nq, &t->qq);
	t->t[1] = llm_now();
	if (rc == 0)
		rc = select_blocks(d, &t->qq, budget, &t->sel);
	t->t[2] = llm_now();
	if (rc == 0)
		rc = llm_kvbuf_create(c, llm_selection_max(&t->sel) * llm_rekv_block_tokens(d->rk) +
					      t->nq + d->o.max_new, &t->kb);
	if (rc == 0)
		rc = llm_rekv_load(d->rk, 0, &t->sel, t->kb, &t->bytes);
	t->t[3] = llm_now();
	if (rc == 0)
		rc = llm_generate(d->m, d->pool, t->kb, t->q, t->nq,
				  llm_rekv_answer_pos(d->rk, &t->sel), d->o.max_new, stops,
				  llm_qa_stops(d->tok, stops), t->out, &t->got, NULL);
	t->t[4] = llm_now();
	return rc;
}

static int answer(struct demo *d, uint32_t s, struct q_times *tm)
{
	struct turn t = {0};
	char *text = NULL;
	size_t len;
	int rc = run_turn(d, s, &t);
	if (rc == 0)
		rc = llm_tok_decode(d->tok, t.out, t.got, 0, &text, &len);
	if (rc == 0) {
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
			text[--len] = 0;
		printf("A: %s\n", text);
		print_blocks(d, &t.sel);
		printf("  evidence %s recall %.2f; resident %.2f MiB; probe %.0f ms, select %.1f ms, "
		       "load %.0f ms, answer %u tokens in %.0f ms\n", d->faq.sec[s].number,
		       llm_qa_recall(&d->doc, s, llm_rekv_block_tokens(d->rk), &t.sel),
		       t.bytes / 1048576.0, (t.t[1] - t.t[0]) * 1e3, (t.t[2] - t.t[1]) * 1e3,
		       (t.t[3] - t.t[2]) * 1e3, t.got, (t.t[4] - t.t[3]) * 1e3);
		*tm = (struct q_times){tm->probe + t.t[1] - t.t[0], tm->select + t.t[2] - t.t[1],
				       tm->load + t.t[3] - t.t[2], tm->gen + t.t[4] - t.t[3],
				       tm->gen_tokens + t.got};
	}
	free(text);
	turn_free(&t);
	return rc;
}

static int ask_all(struct demo *d)
{
	uint32_t n = d->o.questions < d->doc.n_sec ? d->o.questions : d->doc.n_sec;
	struct q_times tm = {0};
	int rc = 0;
	printf("questions: %u of the %u sections in the prefix; retrieval %s%s, budget %u%% = %u "
	       "tokens\n", n, d->doc.n_sec, retrieval_name(d->o.retrieval),
	       d->o.socket && d->o.retrieval >= 0 ? " (in kvtierd)" : "", d->o.budget_pct,
	       (uint32_t)((uint64_t)d->doc.n * d->o.budget_pct / 100));
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		uint32_t s = (uint32_t)((uint64_t)i * d->doc.n_sec / n);
		printf("\nQ%u (section %s): %s\n", i + 1, d->faq.sec[s].number, d->faq.sec[s].question);
		fflush(stdout);
		rc = answer(d, s, &tm);
	}
	if (rc == 0 && n) {
		printf("\n");
		print_stats(d, "after questions");
		printf("per question: probe %.0f ms, select %.1f ms, load %.0f ms; decode %.1f tokens/s\n",
		       tm.probe * 1e3 / n, tm.select * 1e3 / n, tm.load * 1e3 / n,
		       tm.gen_tokens / tm.gen);
	}
	return rc;
}

static void cleanup(struct demo *d)
{
	llm_rekv_free(d->rk);
	llm_kvstore_close(d->kv);
	kvt_client_close(d->cl);
	kvt_store_close(d->store);
	llm_qa_doc_free(&d->doc);
	llm_faq_free(&d->faq);
	llm_set_close(d->g, d->m, d->tok, d->pool);
}

int main(int argc, char **argv)
{
	static struct demo d;
	if (parse(argc, argv, &d.o))
		return 2;
	int rc = load_model(&d);
	if (rc == 0)
		rc = open_store(&d);
	if (rc == 0)
		rc = prefill(&d);
	if (rc == 0)
		rc = ask_all(&d);
	if (rc)
		fprintf(stderr, "qa_demo: %s\n", d.err[0] ? d.err : kvt_strerror(rc));
	cleanup(&d);
	return rc ? 1 : 0;
}
