/* faq.c - the Debian FAQ split into question/evidence sections (see faq.h). */
#include "faq.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvtier/kvtier.h"

static int read_gz(const char *path, char **out, size_t *len)
{
	if (access(path, R_OK) != 0)
		return -ENOENT;
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "gzip -dc '%s'", path);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -errno;
	size_t cap = 1 << 18, n = 0, got;
	char *buf = malloc(cap);
	while (buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
		n += got;
		if (n + 1 == cap) {
			char *b = realloc(buf, cap *= 2);
			if (!b) {
				free(buf);
				buf = NULL;
			}
			buf = b;
		}
	}
	int st = pclose(p);
	if (!buf)
		return -ENOMEM;
	if (st != 0 || n == 0) {
		free(buf);
		return KVT_EFORMAT;
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

/* No-break spaces to spaces, indentation and trailing blanks removed. */
static size_t normalise(const char *in, size_t n, char *out)
{
	size_t o = 0;
	int bol = 1;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if ((unsigned char)c == 0xC2 && i + 1 < n && (unsigned char)in[i + 1] == 0xA0) {
			c = ' ';
			i++;
		}
		if (bol && (c == ' ' || c == '\t'))
			continue;
		if (c == '\n')
			while (o > 0 && out[o - 1] == ' ')
				o--;
		out[o++] = c;
		bol = c == '\n';
	}
	out[o] = 0;
	return o;
}

/* "N.M. Heading" (or "N.M.K. Heading") at the start of a line. */
static int heading(const char *s, size_t *num_len)
{
	const char *p = s;
	int dots = 0;
	while (isdigit((unsigned char)*p)) {
		while (isdigit((unsigned char)*p))
			p++;
		if (*p != '.')
			return 0;
		p++;
		dots++;
	}
	if (dots < 2 || *p != ' ' || !isalnum((unsigned char)p[1]) ||
	    isdigit((unsigned char)p[1]))
		return 0;
	*num_len = (size_t)(p - s - 1);
	return 1;
}

/* "Chapter N. Title": not "Chapter 7, Basics ..." inside a body. */
static int chapter(const char *line)
{
	if (strncmp(line, "Chapter ", 8) != 0 || !isdigit((unsigned char)line[8]))
		return 0;
	const char *p = line + 8;
	while (isdigit((unsigned char)*p))
		p++;
	return *p == '.';
}

/* A heading may wrap onto the next lines (up to the blank line after it). */
static size_t heading_len(const char *line)
{
	const char *eol = strchr(line, '\n');
	for (int wraps = 0; eol && eol[1] && eol[1] != '\n' && wraps < 3; wraps++)
		eol = strchr(eol + 1, '\n');
	return eol ? (size_t)(eol - line) : strlen(line);
}

static int add_section(struct llm_faq *f, size_t *cap, size_t begin, size_t nl)
{
	if (f->n_sec == *cap) {
		size_t c = *cap ? 2 * *cap : 64;
		struct llm_faq_section *s = realloc(f->sec, c * sizeof(*s));
		if (!s)
			return -ENOMEM;
		f->sec = s;
		*cap = c;
	}
	const char *line = f->text + begin;
	size_t ll = heading_len(line);
	struct llm_faq_section *s = &f->sec[f->n_sec];
	s->number = strndup(line, nl);
	s->question = strndup(line + nl + 2, ll - nl - 2);
	if (!s->number || !s->question)
		return -ENOMEM;
	for (char *c = s->question; *c; c++)
		if (*c == '\n')
			*c = ' ';
	s->begin = begin;
	s->body = begin + ll + (line[ll] == '\n');
	s->end = f->len;
	if (f->n_sec > 0 && f->sec[f->n_sec - 1].end > begin)
		f->sec[f->n_sec - 1].end = begin;
	f->n_sec++;
	return 0;
}

static int split(struct llm_faq *f)
{
	size_t cap = 0;
	for (size_t i = 0; i < f->len; i = (size_t)(strchr(f->text + i, '\n') - f->text) + 1) {
		size_t nl;
		const char *line = f->text + i;
		if (chapter(line) && f->n_sec > 0)
			f->sec[f->n_sec - 1].end = i; /* a chapter title ends a section */
		if (heading(line, &nl)) {
			int rc = add_section(f, &cap, i, nl);
			if (rc)
				return rc;
		}
		if (!strchr(line, '\n'))
			break;
	}
	return f->n_sec ? 0 : KVT_EFORMAT;
}

int llm_faq_load(const char *path, struct llm_faq *out, char *err, size_t cap)
{
	char *raw;
	size_t n;
	memset(out, 0, sizeof(*out));
	int rc = read_gz(path, &raw, &n);
	if (rc) {
		snprintf(err, cap, "%s: %s", path,
			 rc == -ENOENT ? "missing (apt-get install debian-faq)" : kvt_strerror(rc));
		return rc;
	}
	const char *start = strstr(raw, "\nChapter");
	start = start ? start + 1 : raw;
	out->text = malloc(n + 1);
	if (!out->text) {
		free(raw);
		return -ENOMEM;
	}
	out->len = normalise(start, n - (size_t)(start - raw), out->text);
	free(raw);
	rc = split(out);
	if (rc) {
		snprintf(err, cap, "%s: no sections found", path);
		llm_faq_free(out);
	}
	return rc;
}

void llm_faq_free(struct llm_faq *f)
{
	for (size_t i = 0; i < f->n_sec; i++) {
		free(f->sec[i].number);
		free(f->sec[i].question);
	}
	free(f->sec);
	free(f->text);
	memset(f, 0, sizeof(*f));
}
