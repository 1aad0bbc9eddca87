/*
 * qa.h - the Debian FAQ as token ids for the QA demo and bench: the
 * document (chat-template header + FAQ text), each section's token range,
 * the prompt of a question, and the evidence recall of a block selection.
 */
#ifndef LLM_QA_H
#define LLM_QA_H

#include <stdint.h>

#include "faq.h"
#include "rekv.h"
#include "tokenizer.h"

struct llm_qa_doc {
	int32_t *ids;
	uint32_t n;      /* tokens (after truncation to the requested length) */
	uint32_t header; /* tokens of the chat header before the FAQ text */
	uint32_t *sec_t0, *sec_t1; /* token range of each FAQ section */
	uint32_t n_sec;  /* sections wholly inside the n tokens */
	uint32_t n_all;  /* sections of the whole FAQ */
};

/* Tokenizes the FAQ (each section on its own, so section boundaries are
 * token boundaries) after the chat header, keeping at most max_tokens
 * (0: all). Errors: -ENOMEM. */
int llm_qa_doc_build(const struct llm_tok *tok, const struct llm_faq *faq,
		     uint32_t max_tokens, struct llm_qa_doc *out);

void llm_qa_doc_free(struct llm_qa_doc *d);

/* Token ids of the question turn that follows the document (malloc'd). */
int llm_qa_question(const struct llm_tok *tok, const char *question, int32_t **ids,
		    uint32_t *n);

/* Tokens an answer stops at: eos (<|im_end|>) and the end of its first
 * line (after which this small model tends to repeat itself). Returns the
 * count (<= 3) written to stops. */
uint32_t llm_qa_stops(const struct llm_tok *tok, int32_t stops[3]);

/* Section (index) holding token t, or -1 for the header / chapter titles. */
int llm_qa_section_of(const struct llm_qa_doc *d, uint32_t t);

/* Evidence recall of a selection: per layer, the selected blocks inside
 * section s over min(blocks of s, blocks selected per layer); averaged
 * over layers (1.0: as much of the section as the budget could hold). */
double llm_qa_recall(const struct llm_qa_doc *d, uint32_t s, uint32_t block_tokens,
		     const struct llm_selection *sel);

#endif /* LLM_QA_H */
