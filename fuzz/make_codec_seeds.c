/* make_codec_seeds.c - writes the starting corpus of fuzz_codec into DIR:
 * for the decode mode (first byte 0), one encoded tensor per codec, kind,
 * dtype and a few bit widths and shapes; for the round-trip mode (first
 * byte 1), case descriptions in fuzz_codec.c's layout.
 * Usage: make_codec_seeds DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "kvtier/codec.h"

static int save(const char *dir, const char *name, uint8_t mode,
		const void *p, size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return -1;
	}
	int bad = fwrite(&mode, 1, 1, f) != 1 || fwrite(p, 1, len, f) != len;
	return fclose(f) || bad ? -1 : 0;
}

/* Keys-like data: a few outlier channels, values in roughly [-4, 4]. */
static void fill(float *x, size_t heads, size_t tokens, size_t dim)
{
	for (size_t i = 0; i < heads * tokens * dim; i++) {
		size_t c = i % dim;
		x[i] = sinf((float)i * 0.37f) * (c % 7 == 3 ? 4.0f : 1.0f);
	}
}

struct shape {
	uint32_t heads, tokens, dim;
};

static int encode_seed(const char *dir, const struct kvt_codec_params *p,
		       enum kvt_kv_kind kind, enum kvt_dtype dt,
		       struct shape s)
{
	struct kvt_tensor_desc d = {s.heads, s.tokens, s.dim, dt};
	size_t n = (size_t)s.heads * s.tokens * s.dim, need, written;
	if (kvt_codec_encoded_size(p, kind, &d, &need))
		return 0; /* not a valid combination: no seed */
	float *x = malloc(n * sizeof *x), *in = malloc(n * sizeof *in);
	uint8_t *enc = malloc(need);
	int rc = -1;
	if (x && in && enc) {
		fill(x, s.heads, s.tokens, s.dim);
		kvt_from_f32(dt, x, in, n);
		rc = kvt_codec_encode(p, kind, &d, in, enc, need, &written);
	}
	if (rc == 0) {
		char name[128];
		snprintf(name, sizeof name, "dec_%s_%s_%s_b%u_%ux%ux%u_%s",
			 kvt_codec_name(p->id), kind ? "v" : "k",
			 kvt_dtype_name(dt), p->bits, s.heads, s.tokens, s.dim,
			 p->saliency ? (p->zip_tokenwise ? "sal_tok" : "sal")
				     : (p->zip_tokenwise ? "tok" : "plain"));
		rc = save(dir, name, 0, enc, written);
	}
	free(x);
	free(in);
	free(enc);
	return rc;
}

static int decode_seeds(const char *dir)
{
	static const struct shape shapes[] = {{2, 40, 16}, {1, 17, 12}, {1, 64, 32}};
	static const uint8_t kivi_bits[][2] = {{2, 16}, {4, 8}, {8, 4}};
	static float scores[64];
	for (int i = 0; i < 64; i++)
		scores[i] = (float)((i * 7) % 11);
	int rc = 0;
	for (int kind = 0; kind < 2; kind++)
		for (int dt = KVT_DTYPE_F16; dt <= KVT_DTYPE_F32; dt++)
			for (size_t si = 0; si < 3; si++) {
				struct kvt_codec_params p;
				kvt_codec_params_init(&p, KVT_CODEC_RAW);
				rc |= encode_seed(dir, &p, kind, dt, shapes[si]);
				for (int b = 0; b < 3; b++) {
					kvt_codec_params_init(&p, KVT_CODEC_KIVI);
					p.bits = kivi_bits[b][0];
					p.group = kivi_bits[b][1];
					p.residual = 8;
					rc |= encode_seed(dir, &p, kind, dt, shapes[si]);
				}
				for (int v = 0; v < 3; v++) {
					kvt_codec_params_init(&p, KVT_CODEC_ZIPCACHE);
					p.bits = v == 2 ? 4 : 2;
					p.high_bits = v == 0 ? 4 : 8;
					p.zip_tokenwise = (uint8_t)(v == 1);
					p.saliency = v ? scores : NULL;
					rc |= encode_seed(dir, &p, kind, dt, shapes[si]);
				}
			}
	return rc;
}

/* Round-trip cases: codec, flags (kind | dtype-1 << 1 | tokenwise << 3 |
 * scores << 4 | value dim from group << 7), bit pair, then per codec
 * (ZipCache: ratio; KIVI: group multiple, residual), heads, tokens, dim,
 * then data bytes. */
static int roundtrip_seeds(const char *dir)
{
	static const uint8_t cases[][10] = {
		{0, 0x00, 0, 1, 20, 16},
		{1, 0x00, 0, 0, 8, 1, 40, 0x87},     /* KIVI keys f16 2-bit */
		{1, 0x81, 1, 1, 0, 1, 20, 0x01},     /* KIVI values f16 */
		{1, 0x04, 2, 0, 3, 2, 33, 0x8f},     /* KIVI keys f32 4-bit */
		{2, 0x10, 0, 60, 1, 30, 0x8f},       /* ZipCache f16 scores */
		{2, 0x1a, 2, 128, 2, 20, 11},        /* ZipCache bf16 tokenwise */
		{2, 0x15, 1, 255, 1, 40, 0x9f},      /* ZipCache f32 values */
	};
	uint8_t buf[10 + 256];
	int rc = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memcpy(buf, cases[i], 10);
		for (int k = 0; k < 256; k++)
			buf[10 + k] = (uint8_t)(k * 37 + (int)i);
		char name[32];
		snprintf(name, sizeof name, "rt_%zu", i);
		rc |= save(dir, name, 1, buf, sizeof buf);
	}
	return rc;
}

int main(int argc, char **argv)
{
	if (argc != 2 || !strcmp(argv[1], "--help")) {
		fprintf(stderr, "usage: make_codec_seeds DIR\n"
				"Writes fuzz_codec's starting corpus into DIR.\n");
		return argc == 2 ? 0 : 2;
	}
	return decode_seeds(argv[1]) | roundtrip_seeds(argv[1]) ? 1 : 0;
}
