/*
 * tokenizer.h - GPT-2-style byte-level BPE tokenizer read from GGUF
 * metadata (tokenizer.ggml.tokens / token_type / merges), with SmolLM2's
 * pre-tokenizer: every digit alone, then the GPT-2 split
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Letters beyond ASCII are classified with the C.UTF-8 locale's iswalpha
 * (when that locale is missing, every non-ASCII character that is not
 * punctuation or a space counts as a letter).
 *
 * Control tokens (<|im_start|>, <|im_end|>, <|endoftext|>, ...) are matched
 * in the text only when asked to (parse_special), so user text cannot
 * inject them by accident.
 */
#ifndef LLM_TOKENIZER_H
#define LLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

struct llm_tok;

/* Builds the tokenizer from g (the strings are copied: g may be closed).
 * Errors: KVT_EFORMAT (not a gpt2 tokenizer, metadata missing; message in
 * err), -ENOMEM. */
int llm_tok_load(const struct llm_gguf *g, struct llm_tok **out, char *err,
		 size_t cap);

void llm_tok_free(struct llm_tok *t);

uint32_t llm_tok_vocab(const struct llm_tok *t);

/* Token ids of bos/eos from the metadata (-1 when absent). */
int32_t llm_tok_bos(const struct llm_tok *t);
int32_t llm_tok_eos(const struct llm_tok *t);

/* 1 when id is a control token (never produced from plain text). */
int llm_tok_is_control(const struct llm_tok *t, int32_t id);

/* Id of the token whose text (in the vocabulary's byte-level form for
 * normal tokens, as is for control tokens) is piece; KVT_ENOTFOUND. */
int llm_tok_find(const struct llm_tok *t, const char *piece, int32_t *id);

/*
 * Encodes len bytes of UTF-8 text. *ids gets a malloc'd array of *n ids
 * (the caller frees it; NULL when *n is 0). Invalid UTF-8 bytes are
 * encoded as themselves (byte-level BPE covers every byte).
 * Errors: -EINVAL, -ENOMEM.
 */
int llm_tok_encode(const struct llm_tok *t, const char *text, size_t len,
		   int parse_special, int32_t **ids, size_t *n);

/*
 * Decodes n ids into a malloc'd, NUL-terminated string *out of *len bytes
 * (the caller frees it). Control tokens are written as their text when
 * special is set and skipped otherwise. Errors: -EINVAL (id out of range),
 * -ENOMEM.
 */
int llm_tok_decode(const struct llm_tok *t, const int32_t *ids, size_t n,
		   int special, char **out, size_t *len);

#endif /* LLM_TOKENIZER_H */
