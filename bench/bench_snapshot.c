/*
 * bench_snapshot - kvt_snapshot_save and kvt_snapshot_load throughput for a
 * raw and a KIVI cache, next to a plain write (+ fsync) and a plain read
 * of a file of the same size on the same file system, measured in the
 * same run, interleaved. Reads start cold (posix_fadvise DONTNEED after
 * the data is on disk) unless --warm. Reported: GB/s of file bytes and the
 * ratio snapshot / plain (goal >= 0.7).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "half.h"
#include "kvtier/kvtier.h"
#include "kvtier/snapshot.h"

#define CHUNK (4u << 20)

struct opts {
	const char *dir;
	uint64_t mib;
	int reps, zstd, warm, disk_store, verbose;
	int codecs; /* bit 0: raw, bit 1: kivi */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_snapshot [--dir DIR] [--mib N] [--codec raw|kivi|both]\n"
		"                      [--reps R] [--zstd LEVEL] [--warm] [--disk-store]\n"
		"                      [--verbose]\n"
		"Snapshot save/load throughput vs a plain write+fsync / read of a file\n"
		"of the same size in DIR (default /tmp/kvtier-bench-snap-PID, removed\n"
		"afterwards). N MiB of raw KV per cache (default 256); R repetitions,\n"
		"median and best reported (default 5). --warm: reads from the page cache;\n"
		"--disk-store: load into a store with a disk tier in DIR (the load\n"
		"then includes writing the blocks to the disk tier and its fsync);\n"
		"--verbose: every repetition's times on stderr.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"dir", 1, 0, 'd'}, {"mib", 1, 0, 'm'}, {"codec", 1, 0, 'c'},
		{"reps", 1, 0, 'r'}, {"zstd", 1, 0, 'z'}, {"warm", 0, 0, 'w'},
		{"disk-store", 0, 0, 'D'}, {"verbose", 0, 0, 'v'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){NULL, 256, 5, 0, 0, 0, 0, 3};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o->dir = optarg; break;
		case 'm': o->mib = strtoull(optarg, NULL, 10); break;
		case 'r': o->reps = atoi(optarg); break;
		case 'z': o->zstd = atoi(optarg); break;
		case 'w': o->warm = 1; break;
		case 'D': o->disk_store = 1; break;
		case 'v': o->verbose = 1; break;
		case 'c':
			o->codecs = !strcmp(optarg, "raw") ? 1 : !strcmp(optarg, "kivi") ? 2
				    : !strcmp(optarg, "both") ? 3 : 0;
			if (!o->codecs) {
				usage(stderr);
				return -1;
			}
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (o->mib < 1 || o->reps < 1) {
		usage(stderr);
		return -1;
	}
	return 0;
}

static int die(const char *what, int rc)
{
	fprintf(stderr, "bench_snapshot: %s: %s\n", what, kvt_strerror(rc));
	exit(1);
}

/* ---------------------------------------------------------------- plain file I/O */

static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/* Writes bytes to path in CHUNK writes, fsyncs; returns seconds. */
static double plain_write(const char *path, const uint8_t *buf, uint64_t bytes)
{
	double t = bench_now();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die(path, -errno);
	for (uint64_t done = 0; done < bytes;) {
		size_t n = bytes - done < CHUNK ? (size_t)(bytes - done) : CHUNK;
		ssize_t k = write(fd, buf, n);
		if (k <= 0)
			die("plain write", k < 0 ? -errno : -EIO);
		done += (uint64_t)k;
	}
	if (fsync(fd))
		die("plain fsync", -errno);
	close(fd);
	return bench_now() - t;
}

static double plain_read(const char *path, uint8_t *buf)
{
	double t = bench_now();
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path, -errno);
	ssize_t k;
	while ((k = read(fd, buf, CHUNK)) > 0)
		;
	if (k < 0)
		die("plain read", -errno);
	close(fd);
	return bench_now() - t;
}

/* ---------------------------------------------------------------- the cache */

static const struct kvt_shape shape = {8, 8, 128, 16, KVT_DTYPE_F16}; /* 64 KiB blocks */

static struct kvt_store *open_store(const char *data_dir, uint64_t mib)
{
	struct kvt_store_config cfg;
	struct kvt_store *st;
	kvt_store_config_init(&cfg);
	cfg.data_dir = data_dir;
	cfg.host_bytes = (mib + 64) << 20;
	int rc = kvt_store_open(&cfg, &st);
	if (rc)
		die("store open", rc);
	return st;
}

/* Fills `name` with mib MiB of raw KV (key-like data), a partial tail. */
static void build(struct kvt_store *st, const char *name, int kivi, uint64_t mib)
{
	struct kvt_cache_config cfg;
	struct kvt_cache *c;
	kvt_cache_config_init(&cfg);
	cfg.shape = shape;
	if (kivi)
		kvt_codec_params_init(&cfg.cold, KVT_CODEC_KIVI);
	int rc = kvt_cache_create(st, name, &cfg, &c);
	if (rc)
		die("create", rc);
	uint64_t per_token = 2ull * shape.n_kv_heads * shape.head_dim * 2;
	uint64_t tokens = (mib << 20) / per_token / shape.n_layers + 7;
	uint32_t chunk = 512;
	size_t elems = (size_t)shape.n_kv_heads * chunk * shape.head_dim;
	float *f = malloc(elems * sizeof *f);
	uint16_t *k = malloc(elems * 2), *v = malloc(elems * 2);
	for (uint32_t l = 0; l < shape.n_layers; l++)
		for (uint64_t t = 0; t < tokens; t += chunk) {
			uint32_t n = tokens - t < chunk ? (uint32_t)(tokens - t) : chunk;
			bench_fill_keys(f, shape.n_kv_heads, n, shape.head_dim, t * 31 + l);
			kvt_from_f32(KVT_DTYPE_F16, f, k, (size_t)shape.n_kv_heads * n * shape.head_dim);
			bench_fill_keys(f, shape.n_kv_heads, n, shape.head_dim, t * 17 + l + 5);
			kvt_from_f32(KVT_DTYPE_F16, f, v, (size_t)shape.n_kv_heads * n * shape.head_dim);
			if ((rc = kvt_cache_append(c, l, n, k, v)))
				die("append", rc);
		}
	free(f), free(k), free(v);
	kvt_cache_close(c);
}

/* ---------------------------------------------------------------- measurement */


struct result {
	double med[4], best[4]; /* seconds: save, write, load, read */
	uint64_t file_bytes, raw_bytes;
};

static void run_codec(const struct opts *o, int kivi, struct result *r)
{
	char snap[600], plain[600], sdir[600];
	snprintf(snap, sizeof snap, "%s/bench.kvs", o->dir);
	snprintf(plain, sizeof plain, "%s/plain.bin", o->dir);
	snprintf(sdir, sizeof sdir, "%s/store", o->dir);
	struct kvt_store *src = open_store(NULL, o->mib);
	struct kvt_store *dst = open_store(o->disk_store ? sdir : NULL, o->mib);
	fprintf(stderr, "building a %llu MiB %s cache...\n",
		(unsigned long long)o->mib, kivi ? "KIVI 2-bit" : "raw");
	build(src, "bench", kivi, o->mib);
	struct kvt_cache *c;
	struct kvt_cache_info ci;
	kvt_cache_open(src, "bench", &c);
	kvt_cache_get_info(c, &ci);
	kvt_cache_close(c);
	uint8_t *buf = malloc(CHUNK);
	for (size_t i = 0; i < CHUNK; i++)
		buf[i] = (uint8_t)(i * 2654435761u >> 13);
	double *t[4];
	for (int i = 0; i < 4; i++)
		t[i] = (double *)calloc((size_t)o->reps + 1, sizeof *t[i]) + 1;
	struct kvt_snapshot_opts so = {.zstd_level = o->zstd};
	struct kvt_snapshot_info info;
	/* One unmeasured round first: page cache, allocator and (on a VM
	 * whose memory is backed lazily) first-touch costs out of the way. */
	for (int rep = -1; rep < o->reps; rep++) {
		/* Each timed write starts with nothing dirty, so one does not
		 * pay for the other's writeback; both replace a file of their
		 * own from the previous repetition. */
		sync();
		double t0 = bench_now();
		int rc = kvt_snapshot_save(src, "bench", snap, &so, &info);
		t[0][rep] = bench_now() - t0;
		if (rc)
			die("save", rc);
		sync();
		t[1][rep] = plain_write(plain, buf, info.file_bytes);
		if (!o->warm) {
			drop_cache(snap);
			drop_cache(plain);
		} else { /* save keeps little of its file cached: read it in */
			plain_read(snap, buf);
			plain_read(plain, buf);
		}
		t0 = bench_now();
		rc = kvt_snapshot_load(dst, snap, "copy", NULL, NULL);
		t[2][rep] = bench_now() - t0;
		if (rc)
			die("load", rc);
		t[3][rep] = plain_read(plain, buf);
		if ((rc = kvt_cache_drop(dst, "copy")))
			die("drop", rc);
		if (rep < 0)
			continue;
		if (o->verbose)
			fprintf(stderr, "  rep %d: save %.3f s, write %.3f s, load %.3f s, "
				"read %.3f s\n", rep, t[0][rep], t[1][rep], t[2][rep],
				t[3][rep]);
	}
	r->file_bytes = info.file_bytes;
	r->raw_bytes = ci.raw_bytes;
	for (int i = 0; i < 4; i++) {
		r->med[i] = bench_median(t[i], (size_t)o->reps); /* sorts t[i] */
		r->best[i] = t[i][0];
	}
	for (int i = 0; i < 4; i++)
		free(t[i] - 1);
	free(buf);
	unlink(snap);
	unlink(plain);
	kvt_store_close(src);
	kvt_store_close(dst);
}

static void report(const char *name, const struct result *r)
{
	double gb = (double)r->file_bytes / 1e9;
	const double *m = r->med, *b = r->best;
	printf("%-5s raw %7.1f MiB  file %7.1f MiB\n", name,
	       (double)r->raw_bytes / 1048576.0, (double)r->file_bytes / 1048576.0);
	printf("      save  %6.2f GB/s   plain write+fsync %6.2f GB/s   ratio %.2f"
	       "   (best of reps: %.2f vs %.2f GB/s, ratio %.2f)\n",
	       gb / m[0], gb / m[1], m[1] / m[0], gb / b[0], gb / b[1], b[1] / b[0]);
	printf("      load  %6.2f GB/s   plain read        %6.2f GB/s   ratio %.2f"
	       "   (best of reps: %.2f vs %.2f GB/s, ratio %.2f)\n",
	       gb / m[2], gb / m[3], m[3] / m[2], gb / b[2], gb / b[3], b[3] / b[2]);
}

int main(int argc, char **argv)
{
	struct opts o;
	char def[128];
	if (parse(argc, argv, &o))
		return 2;
	int own = !o.dir;
	if (own) {
		snprintf(def, sizeof def, "/tmp/kvtier-bench-snap-%d", (int)getpid());
		o.dir = def;
	}
	if (mkdir(o.dir, 0700) && errno != EEXIST)
		die(o.dir, -errno);
	printf("bench_snapshot: %llu MiB raw per cache, %d reps (median), %s reads,"
	       " zstd %d, load into a %s store, dir %s\n",
	       (unsigned long long)o.mib, o.reps, o.warm ? "warm" : "cold", o.zstd,
	       o.disk_store ? "disk-backed" : "memory-only", o.dir);
	struct result r;
	if (o.codecs & 1) {
		run_codec(&o, 0, &r);
		report("raw", &r);
	}
	if (o.codecs & 2) {
		run_codec(&o, 1, &r);
		report("kivi", &r);
	}
	if (own) {
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", o.dir);
		if (system(cmd))
			fprintf(stderr, "bench_snapshot: could not remove %s\n", o.dir);
	}
	return 0;
}
