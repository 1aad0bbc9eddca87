/*
 * cmd_codec.c - `kvtier codec encode|decode|info`: quantize a .npy tensor
 * [heads, tokens, head_dim] into a self-describing .kvq file and back.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "codec_saliency.h"
#include "commands.h"
#include "half.h"
#include "kvtier/codec.h"
#include "npy.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvtier codec encode [OPTIONS] IN.npy OUT.kvq\n"
		"       kvtier codec decode [--f32] IN.kvq OUT.npy\n"
		"       kvtier codec info IN.kvq\n"
		"       kvtier codec saliency --queries Q.npy --keys K.npy OUT.npy\n"
		"\n"
		"IN.npy is a float16 or float32 array shaped [heads, tokens, head_dim].\n"
		"\n"
		"encode options:\n"
		"  --codec NAME     raw, kivi (default) or zipcache\n"
		"  --kind k|v       keys (per-channel groups) or values (per-token);\n"
		"                   required for kivi\n"
		"  --bits B         2 (default), 4 or 8 (zipcache: bits of ordinary tokens)\n"
		"  --group G        KIVI group size (default 32)\n"
		"  --residual R     newest tokens kept at full precision (default 128)\n"
		"  --high-bits H    zipcache: bits of salient tokens (default 4)\n"
		"  --salient F      zipcache: fraction of salient tokens (default 0.2)\n"
		"  --saliency S.npy zipcache: per-token scores (from `codec saliency`)\n"
		"  --queries Q.npy  zipcache: compute the scores from queries\n"
		"                   [q_heads, tokens, head_dim] and the keys (the input\n"
		"                   with --kind k, else --keys K.npy)\n"
		"  --probe[=R]      with --queries: fast estimate from about R of the\n"
		"                   queries (default 0.1) instead of all of them\n"
		"  --seed N         seed of the probe sample (default 0)\n"
		"  --tokenwise      zipcache: plain tokenwise quantization, no per-channel\n"
		"                   normalisers (default: channel-separable)\n"
		"                   Without --saliency or --queries every token gets\n"
		"                   --bits (a warning says so).\n"
		"  --quiet          no summary line\n"
		"decode options:\n"
		"  --f32            write float32 whatever the stored dtype\n");
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "kvtier codec: %s: %s\n", what, kvt_strerror(rc));
	return 1;
}

struct encode_opts {
	struct kvt_codec_params p;
	struct kvt_cli_saliency sal;
	int kind; /* -1: not given */
	int quiet;
};

static int parse_encode(int argc, char **argv, struct encode_opts *o)
{
	static const struct option lo[] = {
		{"codec", 1, 0, 'c'}, {"kind", 1, 0, 'k'}, {"bits", 1, 0, 'b'},
		{"group", 1, 0, 'g'}, {"residual", 1, 0, 'r'},
		{"high-bits", 1, 0, 'H'}, {"salient", 1, 0, 's'},
		{"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},
		{"saliency", 1, 0, 'S'}, {"queries", 1, 0, 'Q'},
		{"keys", 1, 0, 'K'}, {"probe", 2, 0, 'P'}, {"seed", 1, 0, 'e'},
		{"tokenwise", 0, 0, 't'}, {0, 0, 0, 0},
	};
	enum kvt_codec_id id = KVT_CODEC_KIVI;
	long bits = -1, group = -1, residual = -1, high = -1;
	double salient = -1;
	int c, tokenwise = 0;
	o->kind = -1;
	o->quiet = 0;
	o->sal = (struct kvt_cli_saliency){.probe = 1.0f};
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (kvt_codec_from_name(optarg, &id)) {
				fprintf(stderr, "kvtier codec: unknown codec '%s'\n", optarg);
				return 2;
			}
			break;
		case 'k':
			if (!strcmp(optarg, "k") || !strcmp(optarg, "keys"))
				o->kind = KVT_KIND_KEY;
			else if (!strcmp(optarg, "v") || !strcmp(optarg, "values"))
				o->kind = KVT_KIND_VALUE;
			else {
				fprintf(stderr, "kvtier codec: --kind must be k or v\n");
				return 2;
			}
			break;
		case 'b': bits = strtol(optarg, NULL, 10); break;
		case 'g': group = strtol(optarg, NULL, 10); break;
		case 'r': residual = strtol(optarg, NULL, 10); break;
		case 'H': high = strtol(optarg, NULL, 10); break;
		case 's': salient = strtod(optarg, NULL); break;
		case 'q': o->quiet = 1; break;
		case 'S': o->sal.scores = optarg; break;
		case 'Q': o->sal.queries = optarg; break;
		case 'K': o->sal.keys = optarg; break;
		case 'P': o->sal.probe = optarg ? strtof(optarg, NULL) : 0.1f; break;
		case 'e': o->sal.seed = strtoull(optarg, NULL, 10); break;
		case 't': tokenwise = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	kvt_codec_params_init(&o->p, id);
	if (bits >= 0)
		o->p.bits = (uint8_t)(bits > 255 ? 255 : bits);
	if (group >= 0)
		o->p.group = (uint16_t)(group > 65535 ? 65535 : group);
	if (residual >= 0)
		o->p.residual = (uint32_t)residual;
	if (high >= 0)
		o->p.high_bits = (uint8_t)(high > 255 ? 255 : high);
	if (salient >= 0)
		o->p.salient_ratio = (float)salient;
	o->p.zip_tokenwise = (uint8_t)tokenwise;
	o->sal.quiet = o->quiet;
	if (id != KVT_CODEC_ZIPCACHE && (kvt_cli_saliency_given(&o->sal) || tokenwise)) {
		fprintf(stderr, "kvtier codec: --saliency, --queries and --tokenwise are zipcache options\n");
		return 2;
	}
	if (!(o->sal.probe > 0.0f)) {
		fprintf(stderr, "kvtier codec: --probe ratio must be above 0\n");
		return 2;
	}
	if (o->kind < 0 && id != KVT_CODEC_RAW) {
		fprintf(stderr, "kvtier codec: --kind k|v is required\n");
		return 2;
	}
	if (o->kind < 0)
		o->kind = KVT_KIND_KEY;
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	return 0;
}

static int load_tensor(const char *path, struct kvt_tensor_desc *d, void **data)
{
	struct kvt_npy npy;
	char msg[256] = "";
	int rc = kvt_npy_read(path, &npy, data, msg, sizeof msg);
	if (rc) {
		fprintf(stderr, "kvtier codec: %s: %s\n", path,
			msg[0] ? msg : kvt_strerror(rc));
		return 1;
	}
	if (npy.ndim != 3 || !npy.shape[0] || !npy.shape[2] ||
	    npy.shape[0] > UINT32_MAX || npy.shape[1] > UINT32_MAX ||
	    npy.shape[2] > UINT32_MAX) {
		fprintf(stderr,
			"kvtier codec: %s: need a 3-D array [heads, tokens, head_dim], got %u dimensions\n",
			path, npy.ndim);
		free(*data);
		return 1;
	}
	*d = (struct kvt_tensor_desc){(uint32_t)npy.shape[0],
				      (uint32_t)npy.shape[1],
				      (uint32_t)npy.shape[2], npy.dtype};
	return 0;
}

/* Decodes enc again and reports the size and error against the input. */
static void summary(const struct encode_opts *o, const struct kvt_tensor_desc *d,
		    const void *src, const void *enc, size_t len)
{
	size_t n = (size_t)d->heads * d->tokens * d->dim;
	float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
	double mae = 0, max = 0;
	if (x && y && !kvt_codec_decode_f32(enc, len, y, n * sizeof *y, NULL)) {
		kvt_to_f32(d->dtype, src, x, n);
		for (size_t i = 0; i < n; i++) {
			double e = fabs((double)x[i] - y[i]);
			mae += e;
			max = e > max ? e : max;
		}
	}
	char a[32], b[32], bits[64];
	size_t raw = n * kvt_dtype_size(d->dtype);
	struct kvt_codec_header h;
	if (o->p.id == KVT_CODEC_ZIPCACHE && !kvt_codec_read_header(enc, len, &h))
		snprintf(bits, sizeof bits, "%u/%u bits, %u salient tokens", h.bits,
			 h.high_bits, h.n_salient);
	else
		snprintf(bits, sizeof bits, "%u bits", o->p.bits);
	fprintf(stderr,
		"encoded [%u, %u, %u] %s with %s (%s): %s -> %s (%.2fx), MAE %.6g, max error %.6g\n",
		d->heads, d->tokens, d->dim, kvt_dtype_name(d->dtype),
		kvt_codec_name(o->p.id), bits,
		kvt_cli_fmt_bytes(raw, a, sizeof a),
		kvt_cli_fmt_bytes(len, b, sizeof b), (double)raw / (double)len,
		n ? mae / (double)n : 0.0, max);
	free(x), free(y);
}

/* ZipCache scores for the input, or a warning and NULL (every token low-bit). */
static int zip_saliency(struct encode_opts *o, const struct kvt_tensor_desc *d,
			const void *src, float **scores)
{
	*scores = NULL;
	if (o->p.id != KVT_CODEC_ZIPCACHE)
		return 0;
	if (!kvt_cli_saliency_given(&o->sal)) {
		fprintf(stderr,
			"kvtier codec: warning: no saliency (--saliency or --queries): every token at %u bits\n",
			o->p.bits);
		return 0;
	}
	if (kvt_cli_saliency_get(&o->sal, d->tokens, d,
				 o->kind == KVT_KIND_KEY ? src : NULL, scores))
		return 1;
	o->p.saliency = *scores;
	return 0;
}

static int cmd_encode(int argc, char **argv)
{
	struct encode_opts o;
	int rc = parse_encode(argc, argv, &o);
	if (rc)
		return rc;
	const char *in = argv[optind], *out = argv[optind + 1];
	struct kvt_tensor_desc d;
	void *src, *enc = NULL;
	size_t cap, len;
	float *scores;
	if (load_tensor(in, &d, &src))
		return 1;
	if (zip_saliency(&o, &d, src, &scores)) {
		free(src);
		return 1;
	}
	rc = kvt_codec_encoded_size(&o.p, o.kind, &d, &cap);
	if (rc == 0 && !(enc = malloc(cap)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = kvt_codec_encode(&o.p, o.kind, &d, src, enc, cap, &len);
	if (rc == 0)
		rc = kvt_cli_write_file(out, enc, len);
	if (rc == 0 && !o.quiet)
		summary(&o, &d, src, enc, len);
	free(src);
	free(enc);
	free(scores);
	return rc ? fail(rc == KVT_ECODEC ? "unsupported codec parameters"
					  : out, rc)
		  : 0;
}

static int cmd_decode(int argc, char **argv)
{
	int f32 = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	}
	if (argc > 1 && !strcmp(argv[1], "--f32")) {
		f32 = 1;
		argc--, argv++;
	}
	if (argc != 3) {
		usage(stderr);
		return 2;
	}
	void *buf, *dst = NULL;
	size_t len;
	struct kvt_codec_header h;
	int rc = kvt_cli_read_file(argv[1], &buf, &len);
	if (rc)
		return fail(argv[1], rc);
	rc = kvt_codec_read_header(buf, len, &h);
	enum kvt_dtype out = f32 || h.dtype != KVT_DTYPE_F16 ? KVT_DTYPE_F32
							     : KVT_DTYPE_F16;
	size_t n = rc ? 0 : (size_t)h.heads * h.tokens * h.dim;
	if (rc == 0 && !(dst = malloc(n * kvt_dtype_size(out) + 1)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = out == KVT_DTYPE_F32
			     ? kvt_codec_decode_f32(buf, len, dst, n * 4, NULL)
			     : kvt_codec_decode(buf, len, dst, n * 2, NULL);
	uint64_t shape[3] = {h.heads, h.tokens, h.dim};
	if (rc == 0 && (rc = kvt_npy_write(argv[2], out, 3, shape, dst)))
		fail(argv[2], rc);
	else if (rc)
		fail(argv[1], rc);
	free(buf);
	free(dst);
	return rc ? 1 : 0;
}

static int cmd_info(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc != 2) {
		usage(stderr);
		return 2;
	}
	void *buf;
	size_t len;
	struct kvt_codec_header h;
	int rc = kvt_cli_read_file(argv[1], &buf, &len);
	if (rc)
		return fail(argv[1], rc);
	rc = kvt_codec_read_header(buf, len, &h);
	free(buf);
	if (rc)
		return fail(argv[1], rc);
	size_t n = (size_t)h.heads * h.tokens * h.dim;
	printf("codec      %s\n", kvt_codec_name(h.codec));
	printf("kind       %s\n", h.kind == KVT_KIND_KEY ? "keys" : "values");
	printf("shape      [%u, %u, %u] %s\n", h.heads, h.tokens, h.dim,
	       kvt_dtype_name(h.dtype));
	if (h.codec != KVT_CODEC_RAW) {
		printf("bits       %u\n", h.bits);
		if (h.high_bits)
			printf("high bits  %u (%u salient tokens)\n", h.high_bits,
			       h.n_salient);
		if (h.group)
			printf("group      %u\n", h.group);
	}
	printf("residual   %u tokens at full precision\n", h.residual);
	printf("size       %zu bytes (%.3f bits per value, %.2fx vs %s)\n", len,
	       n ? 8.0 * (double)len / (double)n : 0.0,
	       (double)(n * kvt_dtype_size(h.dtype)) / (double)len,
	       kvt_dtype_name(h.dtype));
	return 0;
}

int kvt_cmd_codec(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "encode"))
		return cmd_encode(argc - 1, argv + 1);
	if (!strcmp(argv[1], "decode"))
		return cmd_decode(argc - 1, argv + 1);
	if (!strcmp(argv[1], "info"))
		return cmd_info(argc - 1, argv + 1);
	if (!strcmp(argv[1], "saliency"))
		return kvt_cli_saliency_cmd(argc - 1, argv + 1);
	fprintf(stderr, "kvtier codec: unknown subcommand '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
