/*
 * faq.h - the Debian FAQ as a QA data set: the plain-text FAQ
 * (/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz, package debian-faq)
 * split into sections; each section's heading is a question, its body the
 * evidence. The document is the FAQ from "Chapter 1" on (the title page
 * and table of contents are dropped), with no-break spaces turned into
 * spaces and the indentation of each line removed.
 */
#ifndef LLM_FAQ_H
#define LLM_FAQ_H

#include <stddef.h>
#include <stdint.h>

#define LLM_FAQ_PATH "/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz"

struct llm_faq_section {
	char *number;   /* "2.1" */
	char *question; /* the heading without its number: "What is Debian?" */
	size_t begin, body, end; /* byte offsets in text: heading, body, end */
};

struct llm_faq {
	char *text; /* the document, NUL-terminated */
	size_t len;
	struct llm_faq_section *sec;
	size_t n_sec;
};

/* Reads and splits the FAQ at path (gzip, read through `gzip -dc`).
 * Errors: -ENOENT (not installed: message in err), KVT_EFORMAT (no
 * sections found), -ENOMEM. */
int llm_faq_load(const char *path, struct llm_faq *out, char *err, size_t cap);

void llm_faq_free(struct llm_faq *f);

#endif /* LLM_FAQ_H */
