/* test_cli_codec.c - `kvtier codec` as a user runs it, on .npy files. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
	static char buf[4][600];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
	return buf[i];
}

/* Runs kvtier with args; returns the exit status, stderr in err. */
static int run(char *err, size_t cap, const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "%s %s 2>%s", KVT_CLI, args, p("stderr"));
	int st = system(cmd);
	FILE *f = fopen(p("stderr"), "r");
	size_t n = f ? fread(err, 1, cap - 1, f) : 0;
	err[n] = 0;
	if (f)
		fclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
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
