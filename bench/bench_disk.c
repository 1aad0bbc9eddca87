/*
 * bench_disk - the disk tier's spill (put + sync) and reload (get_many)
 * throughput for 64 KiB and 256 KiB blocks, next to plain O_DIRECT io_uring
 * sequential writes and reads of the same bytes (queue depth 32) measured in
 * the same run, and random single-block reads per second.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "checksum.h"
#include "tier.h"

#define QD 32

struct opts {
	const char *dir;
	uint64_t total_mib;
	int zstd;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_disk [--dir DIR] [--mib N] [--zstd LEVEL]\n"
		"Spill/reload throughput of the disk tier vs plain O_DIRECT io_uring\n"
		"sequential I/O of the same bytes (QD %d), 64 KiB and 256 KiB blocks,\n"
		"plus random block reads/s. DIR must be on the disk to measure (default\n"
		"./bench-disk-data, removed afterwards); N MiB per run (default 1024).\n", QD);
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"dir", 1, 0, 'd'}, {"mib", 1, 0, 'm'}, {"zstd", 1, 0, 'z'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){"bench-disk-data", 1024, 0};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o->dir = optarg; break;
		case 'm': o->total_mib = strtoull(optarg, NULL, 10); break;
		case 'z': o->zstd = atoi(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	return 0;
}

/* ---- baseline: QD-deep sequential O_DIRECT io_uring I/O on one file */

static double plain_io(const char *path, void *buf, size_t bs, size_t n, int write)
{
	struct io_uring ring;
	int fd = open(path, (write ? O_WRONLY | O_CREAT | O_TRUNC : O_RDONLY) | O_DIRECT, 0600);
	if (fd < 0 || io_uring_queue_init(QD, &ring, 0))
		return -1;
	double t = bench_now();
	size_t sub = 0, done = 0;
	while (done < n) {
		while (sub < n && sub - done < QD) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (write)
				io_uring_prep_write(sqe, fd, buf, (unsigned)bs, (uint64_t)sub * bs);
			else
				io_uring_prep_read(sqe, fd, buf, (unsigned)bs, (uint64_t)sub * bs);
			sub++;
		}
		io_uring_submit_and_wait(&ring, 1);
		struct io_uring_cqe *cqe;
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			if (cqe->res < 0)
				fprintf(stderr, "bench_disk: baseline I/O: %s\n", strerror(-cqe->res));
			io_uring_cqe_seen(&ring, cqe);
			done++;
		}
	}
	if (write)
		fdatasync(fd);
	t = bench_now() - t;
	io_uring_queue_exit(&ring);
	close(fd);
	return t;
}

static void drop_caches(const char *dir)
{
	(void)dir;
	/* O_DIRECT bypasses the page cache for both sides; nothing to drop. */
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (uint8_t)(x & 0x3f); /* some redundancy, as encoded blocks have */
	}
}

static int run_size(const struct opts *o, size_t bs)
{
	size_t n = (size_t)(o->total_mib << 20) / bs;
	char tdir[4096], plain[4200];
	snprintf(tdir, sizeof tdir, "%s/tier-%zu", o->dir, bs);
	snprintf(plain, sizeof plain, "%s/plain-%zu.dat", o->dir, bs);
	void *buf;
	if (posix_memalign(&buf, 4096, bs))
		return -ENOMEM;
	fill(buf, bs, bs);
	double tw = plain_io(plain, buf, bs, n, 1);
	drop_caches(o->dir);
	double tr = plain_io(plain, buf, bs, n, 0);
	unlink(plain);
	if (tw < 0 || tr < 0) {
		fprintf(stderr, "bench_disk: O_DIRECT baseline failed on %s (tmpfs?)\n", o->dir);
		return -EINVAL;
	}

	struct kvt_tier *t;
	int rc = kvt_disk_tier_create(tdir, 0, o->zstd, &t);
	if (rc)
		return rc;
	struct kvt_block_meta m = {.len = (uint32_t)bs, .raw_len = (uint32_t)bs,
				   .n_tokens = 16, .checksum = kvt_checksum(buf, bs)};
	/* Spill: batches of 128 blocks through put_many, then one sync (the
	 * store's flush and demotion path). */
	enum { PUTS = 128 };
	struct kvt_block_key pk[PUTS];
	const void *pd[PUTS];
	struct kvt_block_meta pm[PUTS];
	int pr[PUTS];
	double ts = bench_now();
	for (size_t i = 0; i < n && rc == 0; i += PUTS) {
		size_t b = n - i < PUTS ? n - i : PUTS;
		for (size_t j = 0; j < b; j++) {
			pk[j] = (struct kvt_block_key){1, 0, (uint32_t)(i + j)};
			pd[j] = buf;
			pm[j] = m;
		}
		rc = t->ops->put_many(t, b, pk, pd, pm, pr);
	}
	rc = rc ? rc : t->ops->sync(t);
	ts = bench_now() - ts;

	/* Reload: every block, in batches of 256 (one batch of submissions each). */
	enum { BATCH = 256 };
	struct kvt_block_key keys[BATCH];
	void *dsts[BATCH];
	size_t caps[BATCH];
	int res[BATCH];
	for (int i = 0; i < BATCH; i++) {
		dsts[i] = malloc(bs);
		caps[i] = bs;
	}
	double tl = bench_now();
	for (size_t i = 0; i < n && rc == 0; i += BATCH) {
		size_t b = n - i < BATCH ? n - i : BATCH;
		for (size_t j = 0; j < b; j++)
			keys[j] = (struct kvt_block_key){1, 0, (uint32_t)(i + j)};
		rc = t->ops->get_many(t, b, keys, dsts, caps, res);
	}
	tl = bench_now() - tl;

	/* Random single-block gets (QD 1). */
	size_t nr = n < 2000 ? n : 2000;
	uint64_t x = 12345;
	double tq = bench_now();
	for (size_t i = 0; i < nr && rc == 0; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		struct kvt_block_key k = {1, 0, (uint32_t)((x >> 33) % n)};
		rc = t->ops->get(t, &k, dsts[0], bs, NULL);
	}
	tq = bench_now() - tq;
	for (int i = 0; i < BATCH; i++)
		free(dsts[i]);
	kvt_tier_destroy(t);
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tdir);
	if (system(cmd)) {}
	if (rc)
		return rc;
	double gb = (double)n * (double)bs / 1e9;
	printf("%4zu KiB  spill %6.2f GB/s vs plain write %6.2f GB/s = %.2f | "
	       "reload %6.2f GB/s vs plain read %6.2f GB/s = %.2f | random %7.0f reads/s\n",
	       bs >> 10, gb / ts, gb / tw, tw / ts, gb / tl, gb / tr, tr / tl,
	       (double)nr / tq);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o))
		return 2;
	mkdir(o.dir, 0700);
	printf("disk tier vs plain O_DIRECT io_uring (QD %d), %llu MiB per run, zstd %d, dir %s\n",
	       QD, (unsigned long long)o.total_mib, o.zstd, o.dir);
	size_t sizes[] = {64 << 10, 256 << 10};
	int status = 0;
	for (int i = 0; i < 2; i++) {
		int rc = run_size(&o, sizes[i]);
		if (rc) {
			fprintf(stderr, "bench_disk: %s\n", kvt_strerror(rc));
			status = 1;
		}
	}
	rmdir(o.dir);
	return status;
}
