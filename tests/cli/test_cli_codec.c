/* test_cli_codec.c - `kvtier codec` as a user runs it, on .npy files. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli_run.h"
#include "half.h"
#include "npy.h"

static char dir[512];

static void setup(void)
{
	const char *t = getenv("KVT_TEST_TMP");
	snprintf(dir, sizeof dir, "%s/cli-codec-%d", t ? t : "/tmp", getpid());
	mkdir(t ? t : "/tmp", 0755);
	mkdir(dir, 0755);
}

static char *p(const char *name)
{
	return cli_path(dir, name);
}

/* Runs kvtier with args; returns the exit status, stderr in err. */
static int run(char *err, size_t cap, const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "%s %s 2>%s", KVT_CLI, args, p("stderr"));
	int st = cli_system(cmd);
	cli_slurp(p("stderr"), err, cap);
	return st;
}

TestSuite(cli_codec, .init = setup);

Test(cli_codec, encode_decode_round_trip_kivi)
{
	uint64_t shape[3] = {2, 200, 64};
	size_t n = 2 * 200 * 64;
	float *x = malloc(n * 4);
	for (size_t i = 0; i < n; i++)
		x[i] = sinf((float)i * 0.37f) * ((i % 64) == 7 ? 30.0f : 1.0f);
	uint16_t *xh = malloc(n * 2);
	kvt_from_f32(KVT_DTYPE_F16, x, xh, n);
	kvt_to_f32(KVT_DTYPE_F16, xh, x, n);
	cr_assert_eq(kvt_npy_write(p("k.npy"), KVT_DTYPE_F16, 3, shape, xh), 0);
	char err[4096], args[2048];
	for (int bits = 2; bits <= 8; bits *= 2) {
		snprintf(args, sizeof args, "codec encode --kind k --bits %d %s %s",
			 bits, p("k.npy"), p("k.kvq"));
		cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
		cr_assert(strstr(err, "MAE"), "%s", err);
		snprintf(args, sizeof args, "codec decode %s %s", p("k.kvq"), p("out.npy"));
		cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
		struct kvt_npy h;
		void *data;
		cr_assert_eq(kvt_npy_read(p("out.npy"), &h, &data, NULL, 0), 0);
		cr_assert_eq(h.dtype, KVT_DTYPE_F16);
		cr_assert_eq(h.shape[1], 200);
		float *y = malloc(n * 4);
		kvt_to_f32(KVT_DTYPE_F16, data, y, n);
		double mae = 0;
		for (size_t i = 0; i < n; i++)
			mae += fabsf(x[i] - y[i]);
		mae /= (double)n;
		/* More bits, less error; 8 bits is close to exact. */
		cr_assert(mae < (bits == 2 ? 2.0 : bits == 4 ? 0.3 : 0.03),
			  "bits %d mae %g", bits, mae);
		/* The residual window (last 128 tokens at least) is exact. */
		for (size_t hd = 0; hd < 2; hd++)
			for (size_t i = 72 * 64; i < 200 * 64; i++)
				cr_assert_eq(y[hd * 200 * 64 + i], x[hd * 200 * 64 + i]);
		free(y), free(data);
	}
	snprintf(args, sizeof args, "codec info %s", p("k.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 0);
	free(x), free(xh);
}

static void expect_failure(const char *file, const char *words)
{
	char err[4096], args[2048];
	unlink(p("bad.kvq"));
	snprintf(args, sizeof args, "codec encode --kind v %s %s", file, p("bad.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 1, "%s", err);
	cr_assert(strstr(err, words), "expected '%s' in: %s", words, err);
	cr_assert_eq(access(p("bad.kvq"), F_OK), -1, "output written on failure");
}

Test(cli_codec, bad_npy_input_is_a_clear_error)
{
	uint64_t shape2[2] = {4, 64}, shape3[3] = {1, 4, 64};
	float x[256] = {0};
	kvt_npy_write(p("2d.npy"), KVT_DTYPE_F32, 2, shape2, x);
	expect_failure(p("2d.npy"), "3-D");
	kvt_npy_write(p("ok.npy"), KVT_DTYPE_F32, 3, shape3, x);
	cr_assert_eq(truncate(p("ok.npy"), 200), 0);
	expect_failure(p("ok.npy"), "truncated");
	FILE *f = fopen(p("junk.npy"), "w");
	fputs("hello", f);
	fclose(f);
	expect_failure(p("junk.npy"), "magic");
	expect_failure(p("missing.npy"), "No such file");
	kvt_npy_write(p("ok.npy"), KVT_DTYPE_F32, 3, shape3, x);
	f = fopen(p("ok.npy"), "r+b");
	fseek(f, 21, SEEK_SET); /* '<f4' -> '<f8' in the descr */
	char d[4] = {0};
	fread(d, 1, 3, f);
	cr_assert_str_eq(d, "<f4");
	fseek(f, 23, SEEK_SET);
	fputc('8', f);
	fclose(f);
	expect_failure(p("ok.npy"), "dtype");
}

Test(cli_codec, bad_kvq_input_and_usage)
{
	char err[4096], args[2048];
	FILE *f = fopen(p("junk.kvq"), "w");
	fputs("KVTQ but not really a codec file at all......", f);
	fclose(f);
	snprintf(args, sizeof args, "codec decode %s %s", p("junk.kvq"), p("o.npy"));
	cr_assert_eq(run(err, sizeof err, args), 1);
	cr_assert(strstr(err, "junk.kvq"), "%s", err);
	cr_assert_eq(access(p("o.npy"), F_OK), -1);
	cr_assert_eq(run(err, sizeof err, "codec encode x.npy"), 2);
	cr_assert_eq(run(err, sizeof err, "codec encode --bits 3 --kind k"), 2);
	cr_assert_eq(run(err, sizeof err, "codec --help"), 0);
	cr_assert_eq(run(err, sizeof err, "codec frobnicate"), 2);
}

/* ---------------------------------------------------------------- zipcache */

/* Writes Q [4, 200, 32] and K, V [2, 200, 32] with a few heavy-hitter keys. */
static void write_qkv(void)
{
	const size_t n = 200, dim = 32;
	uint64_t qs[3] = {4, n, dim}, ks[3] = {2, n, dim};
	float *q = malloc(4 * n * dim * 4), *k = malloc(2 * n * dim * 4);
	float *v = malloc(2 * n * dim * 4);
	for (size_t i = 0; i < 4 * n * dim; i++)
		q[i] = 1.0f + 0.3f * sinf((float)i * 1.7f);
	for (size_t i = 0; i < 2 * n * dim; i++) {
		size_t t = (i / dim) % n;
		k[i] = (t % 23 == 4 ? 2.0f : 0.1f) + 0.2f * cosf((float)i * 0.9f) +
		       ((i % dim) == 5 ? 8.0f : 0.0f);
		v[i] = sinf((float)i * 0.31f) * ((i % dim) == 9 ? 12.0f : 1.0f);
	}
	cr_assert_eq(kvt_npy_write(p("q.npy"), KVT_DTYPE_F32, 3, qs, q), 0);
	cr_assert_eq(kvt_npy_write(p("k.npy"), KVT_DTYPE_F32, 3, ks, k), 0);
	cr_assert_eq(kvt_npy_write(p("v.npy"), KVT_DTYPE_F32, 3, ks, v), 0);
	free(q), free(k), free(v);
}

static double npy_mae(const char *a, const char *b)
{
	struct kvt_npy ha, hb;
	void *da, *db;
	cr_assert_eq(kvt_npy_read(a, &ha, &da, NULL, 0), 0);
	cr_assert_eq(kvt_npy_read(b, &hb, &db, NULL, 0), 0);
	cr_assert_eq(ha.data_len, hb.data_len);
	size_t n = ha.data_len / 4;
	double e = 0;
	for (size_t i = 0; i < n; i++)
		e += fabsf(((float *)da)[i] - ((float *)db)[i]);
	free(da), free(db);
	return e / (double)n;
}

Test(cli_codec, zipcache_with_queries_saliency_file_and_fallback)
{
	char err[4096], args[2048];
	write_qkv();
	/* keys: saliency from the queries and the input keys, exact and probe */
	snprintf(args, sizeof args,
		 "codec encode --codec zipcache --kind k --bits 2 --high-bits 8 --salient 0.25 --queries %s %s %s",
		 p("q.npy"), p("k.npy"), p("k.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	cr_assert(strstr(err, "2/8 bits, 50 salient tokens"), "%s", err);
	snprintf(args, sizeof args,
		 "codec encode --codec zipcache --kind k --queries %s --probe=0.2 --seed 3 %s %s",
		 p("q.npy"), p("k.npy"), p("kp.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	cr_assert(strstr(err, "probe estimate"), "%s", err);
	/* values need the keys */
	snprintf(args, sizeof args,
		 "codec encode --codec zipcache --kind v --queries %s %s %s",
		 p("q.npy"), p("v.npy"), p("v.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 1, "%s", err);
	cr_assert(strstr(err, "--keys"), "%s", err);
	snprintf(args, sizeof args,
		 "codec encode --codec zipcache --kind v --salient 0.25 --queries %s --keys %s %s %s",
		 p("q.npy"), p("k.npy"), p("v.npy"), p("v.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	cr_assert(strstr(err, "2/4 bits, 50 salient tokens"), "%s", err);
	/* one score file for keys and values */
	snprintf(args, sizeof args, "codec saliency --queries %s --keys %s %s",
		 p("q.npy"), p("k.npy"), p("s.npy"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	struct kvt_npy h;
	void *data;
	cr_assert_eq(kvt_npy_read(p("s.npy"), &h, &data, NULL, 0), 0);
	cr_assert_eq(h.ndim, 1);
	cr_assert_eq(h.shape[0], 200);
	free(data);
	snprintf(args, sizeof args,
		 "codec encode --codec zipcache --kind v --high-bits 8 --salient 0.25 --saliency %s %s %s",
		 p("s.npy"), p("v.npy"), p("v.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	snprintf(args, sizeof args, "codec decode %s %s", p("v.kvq"), p("v_out.npy"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	double mixed = npy_mae(p("v.npy"), p("v_out.npy"));
	/* no saliency: a warning, every token at 2 bits, more error */
	snprintf(args, sizeof args, "codec encode --codec zipcache --kind v %s %s",
		 p("v.npy"), p("v2.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	cr_assert(strstr(err, "warning: no saliency"), "%s", err);
	snprintf(args, sizeof args, "codec decode %s %s", p("v2.kvq"), p("v2_out.npy"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	cr_assert(mixed < npy_mae(p("v.npy"), p("v2_out.npy")));
	snprintf(args, sizeof args, "codec info %s > %s", p("v.kvq"), p("info.txt"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	FILE *f = fopen(p("info.txt"), "r");
	char info[2048] = "";
	info[fread(info, 1, sizeof info - 1, f)] = 0;
	fclose(f);
	cr_assert(strstr(info, "zipcache") && strstr(info, "50 salient"), "%s", info);
}

Test(cli_codec, zipcache_bad_input)
{
	char err[4096], args[2048];
	write_qkv();
	float s[10] = {0};
	uint64_t shape[1] = {10};
	cr_assert_eq(kvt_npy_write(p("short.npy"), KVT_DTYPE_F32, 1, shape, s), 0);
	snprintf(args, sizeof args,
		 "codec encode --codec zipcache --kind k --saliency %s %s %s",
		 p("short.npy"), p("k.npy"), p("bad.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 1, "%s", err);
	cr_assert(strstr(err, "need 200 scores"), "%s", err);
	cr_assert_eq(access(p("bad.kvq"), F_OK), -1);
	/* queries whose head count does not fit the keys' */
	snprintf(args, sizeof args,
		 "codec encode --codec zipcache --kind k --queries %s %s %s",
		 p("v.npy"), p("q.npy"), p("bad.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 1, "%s", err);
	cr_assert(strstr(err, "not a multiple"), "%s", err);
	snprintf(args, sizeof args,
		 "codec encode --kind k --queries %s %s %s", p("q.npy"),
		 p("k.npy"), p("bad.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 2, "%s", err);
	snprintf(args, sizeof args,
		 "codec encode --codec zipcache --kind k --high-bits 2 %s %s",
		 p("k.npy"), p("bad.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 1, "%s", err);
	cr_assert(strstr(err, "unsupported codec parameters"), "%s", err);
	/* a truncated zipcache file */
	snprintf(args, sizeof args, "codec encode --codec zipcache --kind k %s %s",
		 p("k.npy"), p("z.kvq"));
	cr_assert_eq(run(err, sizeof err, args), 0, "%s", err);
	struct stat st;
	cr_assert_eq(stat(p("z.kvq"), &st), 0);
	cr_assert_eq(truncate(p("z.kvq"), st.st_size - 3), 0);
	snprintf(args, sizeof args, "codec decode %s %s", p("z.kvq"), p("z.npy"));
	cr_assert_eq(run(err, sizeof err, args), 1, "%s", err);
	cr_assert(strstr(err, "z.kvq"), "%s", err);
	cr_assert_eq(access(p("z.npy"), F_OK), -1);
	snprintf(args, sizeof args, "codec saliency --queries %s %s", p("q.npy"), p("s.npy"));
	cr_assert_eq(run(err, sizeof err, args), 2, "%s", err);
}
