/* qa.c - the Debian FAQ as token ids, question prompts, recall (see qa.h). */
#include "qa.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define QA_HEADER                                                                    \
	"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by " \
	"Hugging Face<|im_end|>\n<|im_start|>user\nRead this document, the Debian "     \
	"FAQ, then answer the question after it.\n\n"

static int append(struct llm_qa_doc *d, uint32_t *cap, const int32_t *ids, size_t n)
{
	if (d->n + n > *cap) {
		uint32_t c = *cap ? *cap : 4096;
		while (c < d->n + n)
			c *= 2;
		int32_t *v = realloc(d->ids, c * sizeof(int32_t));
		if (!v)
			return -ENOMEM;
		d->ids = v;
		*cap = c;
	}
	memcpy(d->ids + d->n, ids, n * sizeof(int32_t));
	d->n += (uint32_t)n;
	return 0;
}

static int append_text(struct llm_qa_doc *d, uint32_t *cap, const struct llm_tok *tok,
		       const char *s, size_t len, int special)
{
	int32_t *ids;
	size_t n;
	if (len == 0)
		return 0;
	int rc = llm_tok_encode(tok, s, len, special, &ids, &n);
	if (rc == 0)
		rc = append(d, cap, ids, n);
	free(ids);
	return rc;
}

int llm_qa_doc_build(const struct llm_tok *tok, const struct llm_faq *faq,
		     uint32_t max_tokens, struct llm_qa_doc *d)
{
	memset(d, 0, sizeof(*d));
	uint32_t cap = 0;
	d->sec_t0 = calloc(faq->n_sec + 1, sizeof(uint32_t));
	d->sec_t1 = calloc(faq->n_sec + 1, sizeof(uint32_t));
	int rc = d->sec_t0 && d->sec_t1 ? 0 : -ENOMEM;
	if (rc == 0)
		rc = append_text(d, &cap, tok, QA_HEADER, strlen(QA_HEADER), 1);
	d->header = d->n;
	size_t at = 0;
	for (size_t i = 0; i < faq->n_sec && rc == 0; i++) {
		const struct llm_faq_section *s = &faq->sec[i];
		rc = append_text(d, &cap, tok, faq->text + at, s->begin - at, 0);
		d->sec_t0[i] = d->n;
		if (rc == 0)
			rc = append_text(d, &cap, tok, faq->text + s->begin, s->end - s->begin, 0);
		d->sec_t1[i] = d->n;
		at = s->end;
	}
	if (rc == 0)
		rc = append_text(d, &cap, tok, faq->text + at, faq->len - at, 0);
	if (rc) {
		llm_qa_doc_free(d);
		return rc;
	}
	if (max_tokens && d->n > max_tokens)
		d->n = max_tokens;
	while (d->n_sec < faq->n_sec && d->sec_t1[d->n_sec] <= d->n)
		d->n_sec++;
	d->n_all = (uint32_t)faq->n_sec;
	return 0;
}

void llm_qa_doc_free(struct llm_qa_doc *d)
{
	free(d->ids);
	free(d->sec_t0);
	free(d->sec_t1);
	memset(d, 0, sizeof(*d));
}

int llm_qa_question(const struct llm_tok *tok, const char *question, int32_t **ids,
		    uint32_t *n)
{
	const char *pre = "\n\nQuestion: ";
	const char *post = "\nAnswer in one or two sentences.<|im_end|>\n<|im_start|>assistant\n";
	size_t len = strlen(pre) + strlen(question) + strlen(post) + 1;
	char *s = malloc(len);
	if (!s)
		return -ENOMEM;
	strcpy(s, pre);
	strcat(s, question);
	strcat(s, post);
	/* Only the template's own markers are special: the question is text. */
	size_t cut = strlen(pre) + strlen(question), n1, n2;
	int32_t *a = NULL, *b = NULL;
	int rc = llm_tok_encode(tok, s, cut, 0, &a, &n1);
	if (rc == 0)
		rc = llm_tok_encode(tok, s + cut, strlen(s + cut), 1, &b, &n2);
	if (rc == 0 && !(*ids = malloc((n1 + n2) * sizeof(int32_t))))
		rc = -ENOMEM;
	if (rc == 0) {
		memcpy(*ids, a, n1 * sizeof(int32_t));
		memcpy(*ids + n1, b, n2 * sizeof(int32_t));
		*n = (uint32_t)(n1 + n2);
	}
	free(a);
	free(b);
	free(s);
	return rc;
}

int llm_qa_section_of(const struct llm_qa_doc *d, uint32_t t)
{
	for (uint32_t i = 0; i < d->n_all; i++)
		if (t >= d->sec_t0[i] && t < d->sec_t1[i])
			return (int)i;
	return -1;
}

double llm_qa_recall(const struct llm_qa_doc *d, uint32_t s, uint32_t bt,
		     const struct llm_selection *sel)
{
	uint32_t b0 = d->sec_t0[s] / bt, b1 = (d->sec_t1[s] - 1) / bt;
	double sum = 0;
	for (uint32_t l = 0; l < sel->n_layers; l++) {
		uint32_t hit = 0;
		const uint32_t *b = sel->blocks + (size_t)l * sel->stride;
		for (uint32_t i = 0; i < sel->count[l]; i++)
			hit += b[i] >= b0 && b[i] <= b1;
		uint32_t want = b1 - b0 + 1;
		if (want > sel->count[l])
			want = sel->count[l];
		sum += want ? (double)hit / want : 0;
	}
	return sel->n_layers ? sum / sel->n_layers : 0;
}

uint32_t llm_qa_stops(const struct llm_tok *tok, int32_t stops[3])
{
	uint32_t n = 0;
	int32_t id;
	if (llm_tok_eos(tok) >= 0)
		stops[n++] = llm_tok_eos(tok);
	/* "\n" and "\n\n" in the byte-level alphabet (U+010A) */
	if (llm_tok_find(tok, "\xc4\x8a", &id) == 0)
		stops[n++] = id;
	if (llm_tok_find(tok, "\xc4\x8a\xc4\x8a", &id) == 0)
		stops[n++] = id;
	return n;
}
