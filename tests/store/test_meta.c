/* test_meta.c - metadata blobs of a cache: put/get/replace/del/list, limits,
 * persistence across a restart, drop, orphans, a corrupt stored record. */
#include <criterion/criterion.h>
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_util.h"

static char dir[512];
static int seq;

static struct kvt_store *open_store(const char *data_dir)
{
	struct kvt_store_config cfg;
	struct kvt_store *st;
	kvt_store_config_init(&cfg);
	cfg.data_dir = data_dir;
	int rc = kvt_store_open(&cfg, &st);
	cr_assert_eq(rc, 0, "open: %s", kvt_strerror(rc));
	return st;
}

static const char *fresh_dir(void)
{
	const char *t = getenv("KVT_TEST_TMP");
	snprintf(dir, sizeof dir, "%s/store-meta-%d-%d", t ? t : "/tmp",
		 getpid(), seq++);
	return dir;
}

static struct kvt_cache *create(struct kvt_store *st, const char *name)
{
	struct kvt_cache_config c;
	struct kvt_cache *h;
	kvt_cache_config_init(&c);
	c.shape = (struct kvt_shape){2, 2, 64, 16, KVT_DTYPE_F16};
	cr_assert_eq(kvt_cache_create(st, name, &c, &h), 0);
	return h;
}

static void expect_blob(struct kvt_cache *h, const char *key, const void *want,
			size_t n)
{
	void *got;
	size_t len;
	int rc = kvt_cache_meta_get(h, key, &got, &len);
	cr_assert_eq(rc, 0, "get %s: %s", key, kvt_strerror(rc));
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(got, want, n), 0);
	free(got);
}

Test(meta, put_get_replace_del_list)
{
	struct kvt_store *st = open_store(NULL);
	struct kvt_cache *h = create(st, "doc");
	cr_assert_eq(kvt_cache_meta_put(h, "zeta", "abc", 3), 0);
	cr_assert_eq(kvt_cache_meta_put(h, "alpha", "0123456789", 10), 0);
	cr_assert_eq(kvt_cache_meta_put(h, "empty", NULL, 0), 0);
	cr_assert_eq(kvt_cache_meta_put(h, "zeta", "xy", 2), 0);
	expect_blob(h, "zeta", "xy", 2);
	expect_blob(h, "alpha", "0123456789", 10);
	expect_blob(h, "empty", "", 0);

	char (*keys)[KVT_META_KEY_MAX + 1];
	size_t n;
	cr_assert_eq(kvt_cache_meta_list(h, &keys, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(keys[0], "alpha");
	cr_assert_str_eq(keys[1], "empty");
	cr_assert_str_eq(keys[2], "zeta");
	free(keys);

	cr_assert_eq(kvt_cache_meta_del(h, "alpha"), 0);
	cr_assert_eq(kvt_cache_meta_del(h, "alpha"), KVT_ENOTFOUND);
	void *p;
	size_t len;
	cr_assert_eq(kvt_cache_meta_get(h, "alpha", &p, &len), KVT_ENOTFOUND);
	kvt_cache_close(h);
	kvt_store_close(st);
}

Test(meta, bad_keys_and_sizes)
{
	struct kvt_store *st = open_store(NULL);
	struct kvt_cache *h = create(st, "doc");
	char longkey[KVT_META_KEY_MAX + 2];
	memset(longkey, 'k', sizeof longkey - 1);
	longkey[sizeof longkey - 1] = '\0';
	cr_assert_eq(kvt_cache_meta_put(h, "", "a", 1), -EINVAL);
	cr_assert_eq(kvt_cache_meta_put(h, "a/b", "a", 1), -EINVAL);
	cr_assert_eq(kvt_cache_meta_put(h, "a b", "a", 1), -EINVAL);
	cr_assert_eq(kvt_cache_meta_put(h, longkey, "a", 1), -EINVAL);
	cr_assert_eq(kvt_cache_meta_put(h, "k", NULL, 4), -EINVAL);
	cr_assert_eq(kvt_cache_meta_put(h, "k", "a", KVT_META_MAX_BYTES + 1),
		     KVT_ETOOBIG);
	longkey[KVT_META_KEY_MAX] = '\0';
	cr_assert_eq(kvt_cache_meta_put(h, longkey, "ok", 2), 0);
	expect_blob(h, longkey, "ok", 2);
	kvt_cache_close(h);
	kvt_store_close(st);
}

Test(meta, persists_and_goes_with_drop)
{
	const char *d = fresh_dir();
	struct kvt_store *st = open_store(d);
	struct kvt_cache *a = create(st, "a"), *b = create(st, "b");
	size_t big = 3u << 20;
	uint8_t *blob = malloc(big);
	for (size_t i = 0; i < big; i++)
		blob[i] = (uint8_t)(i * 2654435761u >> 13);
	cr_assert_eq(kvt_cache_meta_put(a, "index", blob, big), 0);
	cr_assert_eq(kvt_cache_meta_put(b, "index", "bee", 3), 0);
	kvt_cache_close(a);
	kvt_cache_close(b);
	kvt_store_close(st);

	st = open_store(d);
	cr_assert_eq(kvt_cache_open(st, "a", &a), 0);
	expect_blob(a, "index", blob, big);
	kvt_cache_close(a);
	cr_assert_eq(kvt_cache_drop(st, "a"), 0);
	kvt_store_close(st);

	st = open_store(d);
	a = create(st, "a"); /* same name, new cache: no old metadata */
	void *p;
	size_t len;
	cr_assert_eq(kvt_cache_meta_get(a, "index", &p, &len), KVT_ENOTFOUND);
	cr_assert_eq(kvt_cache_open(st, "b", &b), 0);
	expect_blob(b, "index", "bee", 3);
	kvt_cache_close(a);
	kvt_cache_close(b);
	kvt_store_close(st);
	free(blob);
}

/* Writes a catalog record straight into the disk tier's LMDB. */
static void lmdb_put(const char *d, const char *name, const void *v, size_t n)
{
	char path[600];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	snprintf(path, sizeof path, "%s/index.lmdb", d);
	cr_assert_eq(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 4);
	int rc = mdb_env_open(env, path, MDB_NOSUBDIR, 0600);
	cr_assert_eq(rc, 0, "lmdb open: %s", mdb_strerror(rc));
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "catalog", 0, &dbi), 0);
	MDB_val k = {strlen(name), (void *)name}, val = {n, (void *)v};
	cr_assert_eq(mdb_put(txn, dbi, &k, &val, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

Test(meta, corrupt_record_and_orphans)
{
	const char *d = fresh_dir();
	struct kvt_store *st = open_store(d);
	struct kvt_cache *a = create(st, "a");
	cr_assert_eq(kvt_cache_meta_put(a, "good", "fine", 4), 0);
	cr_assert_eq(kvt_cache_meta_put(a, "bad", "0123456789abcdef!", 17), 0);
	kvt_cache_close(a);
	kvt_store_close(st);

	/* A bit flip in the stored blob; a record of a cache that is gone. */
	uint8_t rec[16 + 17];
	memset(rec, 0, sizeof rec);
	memcpy(rec, "KVTM\1\0\0\0", 8);
	memcpy(rec + 16, "0123456789abcdef?", 17);
	lmdb_put(d, "a/bad", rec, sizeof rec);
	lmdb_put(d, "ghost/index", rec, sizeof rec);

	st = open_store(d);
	cr_assert_eq(kvt_cache_open(st, "a", &a), 0);
	void *p;
	size_t len;
	cr_assert_eq(kvt_cache_meta_get(a, "bad", &p, &len), KVT_ECORRUPT);
	expect_blob(a, "good", "fine", 4);
	/* The orphan must not have created a cache "ghost". */
	struct kvt_cache *g;
	cr_assert_eq(kvt_cache_open(st, "ghost", &g), KVT_ENOTFOUND);
	/* A corrupt blob can be replaced. */
	cr_assert_eq(kvt_cache_meta_put(a, "bad", "new", 3), 0);
	expect_blob(a, "bad", "new", 3);
	kvt_cache_close(a);
	kvt_store_close(st);
}
