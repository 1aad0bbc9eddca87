/*
 * test_snapshot.c - kvt_snapshot_save/load/inspect: bit-exact round trips
 * (raw and KIVI, memory and disk stores, partial tails, zstd), damage
 * (byte flips at random offsets, truncation, trailing bytes, another
 * version) always detected with the store left as it was, a full file
 * system, a load that fails midway or whose process dies, the data
 * directory lock.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checksum.h"
#include "kvtier/snapshot.h"
#include "store/store_util.h"

static char dir[512];
static int seq;

/* A fresh directory for this test's files. */
static void fresh_dir(void)
{
	const char *t = getenv("KVT_TEST_TMP");
	mkdir(t ? t : "/tmp", 0755);
	int rc;
	do { /* a directory left by an earlier run with the same pid is skipped */
		snprintf(dir, sizeof dir, "%s/snap-%d-%d", t ? t : "/tmp", getpid(), seq++);
		rc = mkdir(dir, 0700);
	} while (rc && errno == EEXIST);
	cr_assert_eq(rc, 0, "%s: %s", dir, strerror(errno));
}

static const char *path_in(const char *name, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s", dir, name);
	return buf;
}

static struct kvt_store *open_store(const char *data_dir, uint64_t host_bytes)
{
	struct kvt_store_config cfg;
	struct kvt_store *st;
	kvt_store_config_init(&cfg);
	cfg.data_dir = data_dir;
	if (host_bytes)
		cfg.host_bytes = host_bytes;
	int rc = kvt_store_open(&cfg, &st);
	cr_assert_eq(rc, 0, "open: %s", kvt_strerror(rc));
	return st;
}

static struct kvt_cache_config config(uint32_t heads, int kivi)
{
	struct kvt_cache_config c;
	kvt_cache_config_init(&c);
	c.shape = (struct kvt_shape){2, heads, 64, 16, KVT_DTYPE_F16};
	if (kivi) /* 1: KIVI, 2: ZipCache */
		kvt_codec_params_init(&c.cold, kivi == 2 ? KVT_CODEC_ZIPCACHE
							 : KVT_CODEC_KIVI);
	c.recent_tokens = 32;
	return c;
}

/* Creates `name` with tokens[l] tokens in layer l (partial tails when
 * not a multiple of 16). */
static void make_cache(struct kvt_store *st, const char *name,
		       const struct kvt_cache_config *cfg, const uint32_t *tokens)
{
	struct kvt_cache *c;
	const struct kvt_shape *s = &cfg->shape;
	cr_assert_eq(kvt_cache_create(st, name, cfg, &c), 0);
	uint16_t *k = tv_alloc(s, 53), *v = tv_alloc(s, 53);
	for (uint32_t l = 0; l < s->n_layers; l++)
		for (uint32_t t = 0; t < tokens[l]; t += 53) {
			uint32_t n = tokens[l] - t < 53 ? tokens[l] - t : 53;
			tv_fill(s, l, t, n, k, v);
			cr_assert_eq(kvt_cache_append(c, l, n, k, v), 0);
		}
	free(k), free(v);
	kvt_cache_close(c);
}

/* Metadata blobs of a test cache: empty, small, and one of several
 * sections. */
static const size_t blob_len[3] = {0, 1000, (5u << 20) + 123};
static const char *const blob_key[3] = {"a.empty", "clusters", "rekv.means"};

static void put_meta(struct kvt_store *st, const char *name, int n)
{
	struct kvt_cache *c;
	cr_assert_eq(kvt_cache_open(st, name, &c), 0);
	for (int i = 0; i < n; i++) {
		uint8_t *d = malloc(blob_len[i] + 1);
		for (size_t j = 0; j < blob_len[i]; j++)
			d[j] = (uint8_t)(j * 31 + (size_t)i);
		cr_assert_eq(kvt_cache_meta_put(c, blob_key[i], d, blob_len[i]), 0);
		free(d);
	}
	kvt_cache_close(c);
}

/* Both caches hold the same metadata blobs. */
static void assert_same_meta(struct kvt_cache *a, struct kvt_cache *b)
{
	char (*ka)[KVT_META_KEY_MAX + 1], (*kb)[KVT_META_KEY_MAX + 1];
	size_t na, nb;
	cr_assert_eq(kvt_cache_meta_list(a, &ka, &na), 0);
	cr_assert_eq(kvt_cache_meta_list(b, &kb, &nb), 0);
	cr_assert_eq(na, nb, "metadata blobs: %zu vs %zu", na, nb);
	for (size_t i = 0; i < na; i++) {
		void *x, *y;
		size_t lx, ly;
		cr_assert_str_eq(ka[i], kb[i]);
		cr_assert_eq(kvt_cache_meta_get(a, ka[i], &x, &lx), 0);
		cr_assert_eq(kvt_cache_meta_get(b, kb[i], &y, &ly), 0);
		cr_assert_eq(lx, ly);
		cr_assert_eq(memcmp(x, y, lx), 0, "blob %s differs", ka[i]);
		free(x), free(y);
	}
	free(ka), free(kb);
}

/* Both caches hold the same tokens and the same stored sizes, and every
 * block reads back bit for bit the same. */
static void assert_same(struct kvt_store *a, const char *na, struct kvt_store *b,
			const char *nb)
{
	struct kvt_cache *ca, *cb;
	struct kvt_cache_info ia, ib;
	cr_assert_eq(kvt_cache_open(a, na, &ca), 0);
	cr_assert_eq(kvt_cache_open(b, nb, &cb), 0, "open %s", nb);
	kvt_cache_get_info(ca, &ia);
	kvt_cache_get_info(cb, &ib);
	cr_assert_eq(ia.n_tokens, ib.n_tokens);
	cr_assert_eq(ia.n_blocks, ib.n_blocks);
	cr_assert_eq(ia.raw_bytes, ib.raw_bytes);
	cr_assert_eq(ia.stored_bytes, ib.stored_bytes);
	cr_assert_eq(memcmp(&ia.config, &ib.config, sizeof ia.config), 0);
	size_t bb = kvt_block_bytes(&ia.config.shape);
	uint8_t *x = malloc(bb), *y = malloc(bb);
	for (uint32_t l = 0; l < ia.config.shape.n_layers; l++) {
		uint64_t ta, tb;
		kvt_cache_layer_tokens(ca, l, &ta);
		kvt_cache_layer_tokens(cb, l, &tb);
		cr_assert_eq(ta, tb, "layer %u", l);
		for (uint64_t blk = 0; blk * 16 < ta; blk++) {
			uint32_t n1, n2;
			cr_assert_eq(kvt_cache_read_block(ca, l, blk, x, bb, &n1), 0);
			cr_assert_eq(kvt_cache_read_block(cb, l, blk, y, bb, &n2), 0);
			cr_assert_eq(n1, n2);
			cr_assert_eq(memcmp(x, y, bb), 0, "layer %u block %llu", l,
				     (unsigned long long)blk);
		}
	}
	free(x), free(y);
	assert_same_meta(ca, cb);
	kvt_cache_close(ca);
	kvt_cache_close(cb);
}

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert(f, "%s", path);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	void *p = malloc(*len + 1);
	cr_assert_eq(fread(p, 1, *len, f), *len);
	fclose(f);
	return p;
}

static void spit(const char *path, const void *p, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert(f);
	cr_assert_eq(fwrite(p, 1, len, f), len);
	fclose(f);
}

/* Files in dir other than the store's own. */
static int count_files(const char *d)
{
	DIR *dd = opendir(d);
	struct dirent *e;
	int n = 0;
	while (dd && (e = readdir(dd)))
		n += e->d_name[0] != '.';
	if (dd)
		closedir(dd);
	return n;
}

/* What must not change when a load fails. */
struct fingerprint {
	uint64_t n_caches, n_blocks, raw, stored, listed;
};

static struct fingerprint fingerprint(struct kvt_store *st)
{
	struct kvt_stats s;
	struct kvt_cache_info *list;
	size_t n;
	cr_assert_eq(kvt_store_stats(st, &s), 0);
	cr_assert_eq(kvt_store_list(st, &list, &n), 0);
	free(list);
	return (struct fingerprint){s.n_caches, s.n_blocks, s.raw_bytes,
				    s.stored_bytes, n};
}

static void assert_fingerprint(struct kvt_store *st, struct fingerprint f)
{
	struct fingerprint g = fingerprint(st);
	cr_assert_eq(memcmp(&f, &g, sizeof f), 0,
		     "store changed: caches %llu -> %llu, blocks %llu -> %llu",
		     (unsigned long long)f.n_caches, (unsigned long long)g.n_caches,
		     (unsigned long long)f.n_blocks, (unsigned long long)g.n_blocks);
}

/* ---------------------------------------------------------------- round trips */

/* save -> load into a second store -> save again: same blocks, same file. */
static void round_trip(int kivi, int disk, int zstd)
{
	char p1[600], p2[600], d1[600], d2[600];
	fresh_dir();
	struct kvt_store *a = open_store(disk ? path_in("a", d1, sizeof d1) : NULL, 0);
	struct kvt_store *b = open_store(disk ? path_in("b", d2, sizeof d2) : NULL, 0);
	struct kvt_cache_config cfg = config(2, kivi);
	uint32_t tokens[2] = {250, 97}; /* partial tails: 10 and 1 tokens */
	make_cache(a, "doc", &cfg, tokens);
	put_meta(a, "doc", 3);
	struct kvt_snapshot_opts o = {.zstd_level = zstd};
	cr_assert_eq(kvt_snapshot_save(a, "doc", path_in("doc.kvs", p1, sizeof p1), &o, NULL), 0);

	struct kvt_snapshot_info info;
	cr_assert_eq(kvt_snapshot_inspect(p1, NULL, &info), 0);
	cr_assert_str_eq(info.name, "doc");
	cr_assert_eq(info.version, KVT_SNAPSHOT_VERSION);
	cr_assert_eq(info.n_tokens, 250);
	cr_assert_eq(info.n_blocks, 16 + 7);
	if (kivi) /* cold blocks went in quantized */
		cr_assert_lt(info.payload_bytes, 23 * kvt_block_bytes(&cfg.shape) * 2 / 3);
	cr_assert_eq(info.n_meta, 3);
	cr_assert_eq(info.meta_bytes, blob_len[1] + blob_len[2]);
	cr_assert_eq(memcmp(&info.config, &cfg, sizeof cfg), 0);

	cr_assert_eq(kvt_snapshot_load(b, p1, NULL, NULL, &info), 0);
	cr_assert_eq(info.n_blocks, 23);
	if (disk) /* the load flushed: tails are stored blocks in b */
		cr_assert_eq(kvt_store_flush(a), 0);
	assert_same(a, "doc", b, "doc");
	cr_assert_eq(kvt_snapshot_save(b, "doc", path_in("again.kvs", p2, sizeof p2), &o, NULL), 0);
	size_t n1, n2;
	void *f1 = slurp(p1, &n1), *f2 = slurp(p2, &n2);
	cr_assert_eq(n1, n2);
	cr_assert_eq(memcmp(f1, f2, n1), 0, "the reloaded cache saves differently");
	free(f1), free(f2);

	if (disk) { /* the loaded cache is durable */
		kvt_store_close(b);
		b = open_store(d2, 0);
		assert_same(a, "doc", b, "doc");
	}
	cr_assert_eq(count_files(dir), disk ? 4 : 2, "stray files");
	kvt_store_close(a);
	kvt_store_close(b);
}

Test(snapshot, round_trip_raw_memory) { round_trip(0, 0, 0); }
Test(snapshot, round_trip_kivi_memory) { round_trip(1, 0, 0); }
Test(snapshot, round_trip_raw_disk) { round_trip(0, 1, 0); }
Test(snapshot, round_trip_kivi_disk) { round_trip(1, 1, 0); }
Test(snapshot, round_trip_zstd) { round_trip(0, 0, 3); }
Test(snapshot, round_trip_zipcache_disk) { round_trip(2, 1, 0); }
Test(snapshot, round_trip_kivi_zstd_disk) { round_trip(1, 1, 1); }

Test(snapshot, disk_blocks_demoted_under_a_small_host_budget)
{
	char d1[600], d2[600], p[600];
	fresh_dir();
	struct kvt_store *a = open_store(path_in("a", d1, sizeof d1), 256 << 10);
	struct kvt_store *b = open_store(path_in("b", d2, sizeof d2), 256 << 10);
	struct kvt_cache_config cfg = config(4, 0);
	uint32_t tokens[2] = {1000, 999};
	make_cache(a, "big", &cfg, tokens); /* ~4 MiB: mostly on disk */
	struct kvt_stats s0, s1;
	kvt_store_stats(a, &s0);
	cr_assert_gt(s0.demotions, 0);
	cr_assert_eq(kvt_snapshot_save(a, "big", path_in("big.kvs", p, sizeof p), NULL, NULL), 0);
	kvt_store_stats(a, &s1);
	cr_assert_eq(s1.promotions, s0.promotions, "save promoted blocks");
	cr_assert_eq(kvt_snapshot_load(b, p, "copy", NULL, NULL), 0);
	cr_assert_eq(kvt_store_flush(a), 0); /* b's tails are stored: a's too */
	assert_same(a, "big", b, "copy");
	kvt_store_close(a);
	kvt_store_close(b);
}

Test(snapshot, empty_cache_and_as_name)
{
	char p[600];
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	struct kvt_cache_config cfg = config(2, 0);
	uint32_t tokens[2] = {0, 0};
	make_cache(st, "empty", &cfg, tokens);
	cr_assert_eq(kvt_snapshot_save(st, "empty", path_in("e.kvs", p, sizeof p), NULL, NULL), 0);
	struct kvt_snapshot_info info;
	cr_assert_eq(kvt_snapshot_load(st, p, "empty2", NULL, &info), 0);
	cr_assert_eq(info.n_blocks, 0);
	cr_assert_str_eq(info.name, "empty");
	assert_same(st, "empty", st, "empty2");
	kvt_store_close(st);
}

/* ---------------------------------------------------------------- refusals */

Test(snapshot, load_onto_an_existing_name_or_a_bad_name)
{
	char p[600];
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	struct kvt_cache_config cfg = config(2, 0);
	uint32_t tokens[2] = {40, 40};
	make_cache(st, "doc", &cfg, tokens);
	cr_assert_eq(kvt_snapshot_save(st, "doc", path_in("d.kvs", p, sizeof p), NULL, NULL), 0);
	struct fingerprint f = fingerprint(st);
	cr_assert_eq(kvt_snapshot_load(st, p, NULL, NULL, NULL), KVT_EEXIST);
	cr_assert_eq(kvt_snapshot_load(st, p, "doc", NULL, NULL), KVT_EEXIST);
	cr_assert_eq(kvt_snapshot_load(st, p, ".hidden", NULL, NULL), -EINVAL);
	cr_assert_eq(kvt_snapshot_load(st, p, "a/b", NULL, NULL), -EINVAL);
	cr_assert_eq(kvt_snapshot_load(st, p, "", NULL, NULL), -EINVAL);
	assert_fingerprint(st, f);
	cr_assert_eq(kvt_snapshot_save(st, "nope", p, NULL, NULL), KVT_ENOTFOUND);
	cr_assert_eq(kvt_snapshot_inspect(p, NULL, NULL), 0, "file kept");
	cr_assert_eq(kvt_snapshot_load(st, "/nonexistent/x.kvs", "n", NULL, NULL), -ENOENT);
	cr_assert_eq(kvt_snapshot_load(st, dir, "n", NULL, NULL), -EINVAL);
	kvt_store_close(st);
}

static int cancel_at(void *ctx, uint64_t done, uint64_t total)
{
	int *calls = ctx;
	cr_assert_leq(done, total);
	return ++*calls == 3 ? -ECANCELED : 0;
}

Test(snapshot, a_progress_callback_can_cancel)
{
	char p[600];
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	struct kvt_cache_config cfg = config(4, 0);
	uint32_t tokens[2] = {1000, 1000}; /* > 2 BLOCKS sections */
	make_cache(st, "doc", &cfg, tokens);
	int calls = 0;
	struct kvt_snapshot_opts o = {.progress = cancel_at, .progress_ctx = &calls};
	cr_assert_eq(kvt_snapshot_save(st, "doc", path_in("d.kvs", p, sizeof p), &o, NULL),
		     -ECANCELED);
	cr_assert_eq(count_files(dir), 0, "a cancelled save left a file");
	cr_assert_eq(kvt_snapshot_save(st, "doc", p, NULL, NULL), 0);
	struct fingerprint f = fingerprint(st);
	calls = 0;
	cr_assert_eq(kvt_snapshot_load(st, p, "copy", &o, NULL), -ECANCELED);
	assert_fingerprint(st, f);
	kvt_store_close(st);
}

/* ---------------------------------------------------------------- damage */

/* The damaged file fails inspect and load with one of the allowed codes,
 * and the store is left as it was. */
static void assert_refused(struct kvt_store *st, const char *p,
			   struct fingerprint f, const char *what, size_t at)
{
	int rc = kvt_snapshot_inspect(p, NULL, NULL);
	cr_assert(rc == KVT_ECORRUPT || rc == KVT_EFORMAT,
		  "inspect, %s at %zu: %s", what, at, kvt_strerror(rc));
	rc = kvt_snapshot_load(st, p, "victim", NULL, NULL);
	cr_assert(rc == KVT_ECORRUPT || rc == KVT_EFORMAT,
		  "load, %s at %zu: %s", what, at, kvt_strerror(rc));
	assert_fingerprint(st, f);
}

/* A 4.5 MiB raw snapshot: NAME, two BLOCKS, two META sections, END. */
static void *sample(struct kvt_store *st, int zstd, char *p, size_t cap,
		    size_t *len)
{
	struct kvt_cache_config cfg = config(4, 0);
	uint32_t tokens[2] = {2400, 2203};
	make_cache(st, "orig", &cfg, tokens);
	put_meta(st, "orig", 2);
	struct kvt_snapshot_opts o = {.zstd_level = zstd};
	cr_assert_eq(kvt_snapshot_save(st, "orig", path_in("orig.kvs", p, cap), &o, NULL), 0);
	struct kvt_snapshot_info info;
	cr_assert_eq(kvt_snapshot_inspect(p, NULL, &info), 0);
	cr_assert_geq(info.n_sections, 4);
	return slurp(p, len);
}

static void flips(int zstd, const char *data_dir, unsigned seed)
{
	char p[600], q[600], d[600];
	fresh_dir();
	struct kvt_store *st = open_store(data_dir ? path_in(data_dir, d, sizeof d) : NULL, 0);
	size_t len;
	uint8_t *orig = sample(st, zstd, p, sizeof p, &len);
	uint8_t *bad = malloc(len);
	cr_assert_eq(kvt_store_flush(st), 0); /* tails stored, as after a restart */
	struct fingerprint f = fingerprint(st);
	path_in("bad.kvs", q, sizeof q);
	srand(seed);
	for (int i = 0; i < 200; i++) {
		/* Half the flips in the first 4 KiB, where headers and records
		 * are dense; the rest anywhere. */
		size_t at = (size_t)rand() % (i % 2 ? len : (len < 4096 ? len : 4096));
		memcpy(bad, orig, len);
		bad[at] ^= (uint8_t)(1 + rand() % 255);
		spit(q, bad, len);
		assert_refused(st, q, f, "flip", at);
		if (i % 50 == 0)
			assert_same(st, "orig", st, "orig");
	}
	/* Damage in the last sections: the blocks before it were already in
	 * the hidden cache when the load failed. */
	for (size_t back = 1; back <= 64; back += 9) {
		memcpy(bad, orig, len);
		bad[len - back] ^= 0x40;
		spit(q, bad, len);
		assert_refused(st, q, f, "flip near the end", len - back);
	}
	if (data_dir) { /* nothing hidden survives a restart either */
		kvt_store_close(st);
		st = open_store(d, 0);
		assert_fingerprint(st, f);
	}
	cr_assert_eq(kvt_snapshot_load(st, p, "copy", NULL, NULL), 0);
	assert_same(st, "orig", st, "copy");
	free(orig), free(bad);
	kvt_store_close(st);
}

Test(snapshot, byte_flips_are_always_detected, .timeout = 300) { flips(0, NULL, 1234); }
Test(snapshot, byte_flips_zstd, .timeout = 300) { flips(3, NULL, 99); }
Test(snapshot, byte_flips_disk_store, .timeout = 300) { flips(0, "store", 7); }

Test(snapshot, truncation_and_trailing_bytes, .timeout = 300)
{
	char p[600], q[600];
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	size_t len;
	uint8_t *orig = sample(st, 0, p, sizeof p, &len);
	struct fingerprint f = fingerprint(st);
	path_in("cut.kvs", q, sizeof q);
	srand(42);
	for (int i = 0; i < 100; i++) {
		size_t cut = i < 40 ? (size_t)i * 7 : (size_t)rand() % len;
		spit(q, orig, cut);
		assert_refused(st, q, f, "truncated", cut);
	}
	uint8_t *more = malloc(len + 1);
	memcpy(more, orig, len);
	more[len] = 0;
	spit(q, more, len + 1);
	assert_refused(st, q, f, "trailing byte", len);
	spit(q, "hello, world\n", 13);
	assert_refused(st, q, f, "not a snapshot", 0);
	free(orig), free(more);
	kvt_store_close(st);
}

Test(snapshot, another_version_is_refused_as_such)
{
	char p[600];
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	size_t len;
	uint8_t *data = sample(st, 0, p, sizeof p, &len);
	struct fingerprint f = fingerprint(st);
	data[8] = KVT_SNAPSHOT_VERSION + 1; /* a well-formed newer header */
	uint64_t sum = kvt_checksum(data, 120);
	for (int i = 0; i < 8; i++)
		data[120 + i] = (uint8_t)(sum >> (8 * i));
	spit(p, data, len);
	struct kvt_snapshot_info info;
	cr_assert_eq(kvt_snapshot_inspect(p, NULL, &info), KVT_EVERSION);
	cr_assert_eq(info.version, KVT_SNAPSHOT_VERSION + 1);
	cr_assert_eq(kvt_snapshot_load(st, p, "v2", NULL, &info), KVT_EVERSION);
	assert_fingerprint(st, f);
	data[8] = KVT_SNAPSHOT_VERSION + 1; /* the same byte without a checksum */
	data[120] ^= 1;
	spit(p, data, len);
	cr_assert_eq(kvt_snapshot_inspect(p, NULL, NULL), KVT_ECORRUPT);
	free(data);
	kvt_store_close(st);
}

Test(snapshot, no_room_for_the_blocks_leaves_the_store_as_it_was)
{
	char p[600];
	fresh_dir();
	struct kvt_store *big = open_store(NULL, 0);
	size_t len;
	free(sample(big, 0, p, sizeof p, &len));
	kvt_store_close(big);
	struct kvt_store *st = open_store(NULL, 1 << 20); /* 1 MiB, no disk */
	struct kvt_cache_config cfg = config(2, 0);
	uint32_t tokens[2] = {20, 20};
	make_cache(st, "small", &cfg, tokens);
	struct fingerprint f = fingerprint(st);
	cr_assert_eq(kvt_snapshot_load(st, p, NULL, NULL, NULL), KVT_ENOSPACE);
	assert_fingerprint(st, f);
	kvt_store_close(st);
}

/* ---------------------------------------------------------------- file system */

Test(snapshot, a_full_file_system_leaves_nothing_under_the_name)
{
	char p[600];
	fresh_dir();
	path_in("full.kvs", p, sizeof p);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* RLIMIT_FSIZE stands in for a full disk: writes past it fail
		 * with EFBIG once SIGXFSZ is ignored. */
		struct kvt_store *st = open_store(NULL, 0);
		struct kvt_cache_config cfg = config(4, 0);
		uint32_t tokens[2] = {1000, 1000};
		make_cache(st, "doc", &cfg, tokens);
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = {1 << 20, 1 << 20};
		setrlimit(RLIMIT_FSIZE, &rl);
		int rc = kvt_snapshot_save(st, "doc", p, NULL, NULL);
		_exit(rc == -EFBIG ? 0 : 1);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "save did not fail with EFBIG (status %d)", status);
	cr_assert_eq(access(p, F_OK), -1);
	cr_assert_eq(count_files(dir), 0, "a temporary file was left");
}

Test(snapshot, save_into_a_missing_directory)
{
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	struct kvt_cache_config cfg = config(2, 0);
	uint32_t tokens[2] = {20, 20};
	make_cache(st, "doc", &cfg, tokens);
	char p[700];
	snprintf(p, sizeof p, "%s/no/such/dir.kvs", dir);
	cr_assert_eq(kvt_snapshot_save(st, "doc", p, NULL, NULL), -ENOENT);
	kvt_store_close(st);
}

static int die_after_blocks(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	if (done > 2 << 20 && done < total)
		_exit(0); /* a crash in the middle of the load */
	return 0;
}

Test(snapshot, a_load_killed_midway_leaves_nothing_after_reopen)
{
	char p[600], d[600];
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	size_t len;
	free(sample(st, 0, p, sizeof p, &len));
	kvt_store_close(st);
	path_in("store", d, sizeof d);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct kvt_store *s = open_store(d, 512 << 10); /* spills to disk */
		struct kvt_snapshot_opts o = {.progress = die_after_blocks};
		kvt_snapshot_load(s, p, NULL, &o, NULL);
		_exit(1);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
	st = open_store(d, 0);
	struct kvt_stats s;
	cr_assert_eq(kvt_store_stats(st, &s), 0);
	cr_assert_eq(s.n_caches, 0, "a hidden cache survived");
	cr_assert_eq(s.n_blocks, 0, "its blocks survived");
	cr_assert_eq(kvt_snapshot_load(st, p, NULL, NULL, NULL), 0);
	kvt_store_close(st);
}

Test(snapshot, one_process_per_data_directory)
{
	char d[600];
	fresh_dir();
	struct kvt_store *a = open_store(path_in("store", d, sizeof d), 0), *b;
	struct kvt_store_config cfg;
	kvt_store_config_init(&cfg);
	cfg.data_dir = d;
	cr_assert_eq(kvt_store_open(&cfg, &b), KVT_EBUSY);
	kvt_store_close(a);
	cr_assert_eq(kvt_store_open(&cfg, &b), 0);
	kvt_store_close(b);
}

static int count_sections(void *ctx, const struct kvt_snapshot_section *s)
{
	uint64_t *n = ctx;
	n[s->type < 5 ? s->type : 0]++;
	n[5] += s->n_blocks;
	return 0;
}

Test(snapshot, inspect_reports_every_section)
{
	char p[600];
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	size_t len;
	free(sample(st, 0, p, sizeof p, &len));
	uint64_t n[6] = {0};
	struct kvt_snapshot_opts o = {.section = count_sections, .section_ctx = n};
	struct kvt_snapshot_info info;
	cr_assert_eq(kvt_snapshot_inspect(p, &o, &info), 0);
	cr_assert_eq(n[0], 0);
	cr_assert_eq(n[KVT_SNAP_NAME], 1);
	cr_assert_eq(n[KVT_SNAP_END], 1);
	cr_assert_eq(n[KVT_SNAP_BLOCKS], 2);
	cr_assert_eq(n[KVT_SNAP_META], 2);
	cr_assert_eq(n[1] + n[2] + n[3] + n[4], info.n_sections);
	cr_assert_eq(n[5], info.n_blocks);
	cr_assert_eq(info.n_meta, 2);
	cr_assert_eq(info.n_blocks, 150 + 138);
	cr_assert_eq(info.file_bytes, len);
	kvt_store_close(st);
}

struct appender {
	struct kvt_store *st;
	volatile int stop;
	uint32_t appended;
};

static void *append_loop(void *arg)
{
	struct appender *a = arg;
	struct kvt_cache *c;
	struct kvt_cache_config cfg = config(2, 0);
	uint16_t *k = tv_alloc(&cfg.shape, 7), *v = tv_alloc(&cfg.shape, 7);
	cr_assert_eq(kvt_cache_open(a->st, "live", &c), 0);
	for (uint32_t t = 0; !a->stop && t < 20000; t += 7) {
		for (uint32_t l = 0; l < 2; l++) {
			tv_fill(&cfg.shape, l, t, 7, k, v);
			cr_assert_eq(kvt_cache_append(c, l, 7, k, v), 0);
		}
		a->appended = t + 7;
	}
	kvt_cache_close(c);
	free(k), free(v);
	return NULL;
}

Test(snapshot, saves_during_appends_hold_a_consistent_prefix, .timeout = 120)
{
	char p[600];
	fresh_dir();
	struct kvt_store *st = open_store(NULL, 0);
	struct kvt_cache_config cfg = config(2, 0);
	uint32_t tokens[2] = {100, 100};
	make_cache(st, "live", &cfg, tokens);
	struct appender a = {st, 0, 0};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, append_loop, &a), 0);
	uint16_t *k = tv_alloc(&cfg.shape, 20100), *v = tv_alloc(&cfg.shape, 20100);
	uint16_t *wk = tv_alloc(&cfg.shape, 20100), *wv = tv_alloc(&cfg.shape, 20100);
	for (int i = 0; i < 10; i++) {
		char name[32];
		snprintf(name, sizeof name, "copy%d", i);
		cr_assert_eq(kvt_snapshot_save(st, "live", path_in("live.kvs", p, sizeof p),
					       NULL, NULL), 0);
		cr_assert_eq(kvt_snapshot_load(st, p, name, NULL, NULL), 0);
		struct kvt_cache *c;
		cr_assert_eq(kvt_cache_open(st, name, &c), 0);
		for (uint32_t l = 0; l < 2; l++) {
			uint64_t n;
			kvt_cache_layer_tokens(c, l, &n);
			cr_assert_geq(n, 100);
			cr_assert_eq(kvt_cache_read(c, l, 0, (uint32_t)n, k, v), 0);
			/* the first 100 tokens came from make_cache (0..99, chunks
			 * of 53), the rest from the appender (from 0 again) */
			tv_fill(&cfg.shape, l, 0, 100, wk, wv);
			for (uint32_t h = 0; h < 2; h++)
				cr_assert_eq(memcmp(k + (size_t)h * n * 64, wk + (size_t)h * 100 * 64,
						    100 * 64 * 2), 0, "copy %d layer %u", i, l);
			if (n > 100) {
				tv_fill(&cfg.shape, l, 0, (uint32_t)(n - 100), wk, wv);
				for (uint32_t h = 0; h < 2; h++)
					cr_assert_eq(memcmp(k + ((size_t)h * n + 100) * 64,
							    wk + (size_t)h * (n - 100) * 64,
							    (n - 100) * 64 * 2), 0,
						     "copy %d layer %u: not a prefix", i, l);
			}
		}
		kvt_cache_close(c);
		cr_assert_eq(kvt_cache_drop(st, name), 0);
	}
	a.stop = 1;
	pthread_join(th, NULL);
	free(k), free(v), free(wk), free(wv);
	kvt_store_close(st);
}

Test(snapshot, a_full_tmpfs_gives_enospc_and_leaves_nothing)
{
	char mnt[600], p[700];
	fresh_dir();
	path_in("tiny", mnt, sizeof mnt);
	cr_assert_eq(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m"))
		cr_skip_test("cannot mount a 1 MiB tmpfs here (%s)", strerror(errno));
	struct kvt_store *st = open_store(NULL, 0);
	struct kvt_cache_config cfg = config(4, 0);
	uint32_t tokens[2] = {1000, 1000}; /* 2 MiB */
	make_cache(st, "doc", &cfg, tokens);
	snprintf(p, sizeof p, "%s/doc.kvs", mnt);
	int rc = kvt_snapshot_save(st, "doc", p, NULL, NULL);
	int left = count_files(mnt);
	umount(mnt);
	kvt_store_close(st);
	cr_assert_eq(rc, -ENOSPC, "%s", kvt_strerror(rc));
	cr_assert_eq(left, 0, "files left on the full file system");
}
