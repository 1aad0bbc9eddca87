/*
 * test_disk.c - the disk tier's own promises: restart recovery, checksums,
 * truncated segments, a full disk, orphan reclaim, segment GC, and a crash
 * test that SIGKILLs a writer at random moments.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checksum.h"
#include "tier.h"

static char dir[512];
static int seq;

static void new_dir(void)
{
	const char *t = getenv("KVT_TEST_TMP");
	mkdir(t ? t : "/tmp", 0755);
	snprintf(dir, sizeof dir, "%s/disk-%d-%d", t ? t : "/tmp", getpid(), seq++);
	mkdir(dir, 0700);
}

static struct kvt_tier *open_disk(int zstd)
{
	struct kvt_tier *t;
	int rc = kvt_disk_tier_create(dir, 0, zstd, &t);
	cr_assert_eq(rc, 0, "open: %s", kvt_strerror(rc));
	return t;
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (uint8_t)x;
	}
}

static int put_block(struct kvt_tier *t, uint32_t block, size_t len)
{
	uint8_t *a = malloc(len);
	fill(a, len, block);
	struct kvt_block_key k = {1, 0, block};
	struct kvt_block_meta m = {.len = (uint32_t)len, .raw_len = (uint32_t)len,
				   .n_tokens = 16, .checksum = kvt_checksum(a, len)};
	int rc = t->ops->put(t, &k, a, &m);
	free(a);
	return rc;
}

static int check_block(struct kvt_tier *t, uint32_t block, size_t len)
{
	uint8_t *a = malloc(len), *b = malloc(len);
	fill(a, len, block);
	struct kvt_block_key k = {1, 0, block};
	int rc = t->ops->get(t, &k, b, len, NULL);
	if (rc == 0 && memcmp(a, b, len))
		rc = -EBADMSG;
	free(a), free(b);
	return rc;
}

static off_t seg_size(const char *name)
{
	char p[600];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return stat(p, &st) ? -1 : st.st_size;
}

Test(disk, restart_keeps_synced_blocks_and_drops_unsynced)
{
	new_dir();
	struct kvt_tier *t = open_disk(0);
	for (uint32_t i = 0; i < 20; i++)
		cr_assert_eq(put_block(t, i, 10000), 0);
	cr_assert_eq(t->ops->sync(t), 0);
	off_t committed = seg_size("seg-00000001.dat");
	/* Unsynced puts: the tier is dropped without sync (a crash). */
	cr_assert_eq(put_block(t, 100, 10000), 0);
	cr_assert_eq(check_block(t, 100, 10000), 0);
	pid_t pid = fork();
	if (pid == 0)
		_exit(0); /* child exits without running any destructor */
	waitpid(pid, NULL, 0);
	/* Simulate the crash: reopen from the files as they are now. */
	struct kvt_tier *t2 = open_disk(0);
	for (uint32_t i = 0; i < 20; i++)
		cr_assert_eq(check_block(t2, i, 10000), 0, "block %u", i);
	struct kvt_block_meta m;
	struct kvt_block_key k100 = {1, 0, 100};
	cr_assert_eq(t2->ops->stat(t2, &k100, &m), KVT_ENOTFOUND);
	/* The orphaned payload past the commit was cut away. */
	cr_assert_eq(seg_size("seg-00000001.dat"), committed);
	kvt_tier_destroy(t2);
	/* t's own destroy syncs: block 100 becomes durable then. */
	kvt_tier_destroy(t);
}

static void flip_byte(const char *name, off_t off)
{
	char p[600];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int fd = open(p, O_RDWR);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

Test(disk, corrupt_payload_is_ecorrupt_never_garbage)
{
	for (int z = 0; z <= 1; z++) {
		new_dir();
		struct kvt_tier *t = open_disk(z);
		for (uint32_t i = 0; i < 4; i++)
			cr_assert_eq(put_block(t, i, 8192), 0);
		cr_assert_eq(t->ops->sync(t), 0);
		kvt_tier_destroy(t);
		flip_byte("seg-00000001.dat", 8192 + 100); /* inside block 1 */
		t = open_disk(z);
		cr_assert_eq(check_block(t, 0, 8192), 0);
		cr_assert_eq(check_block(t, 1, 8192), KVT_ECORRUPT);
		cr_assert_eq(check_block(t, 2, 8192), 0);
		kvt_tier_destroy(t);
	}
}

Test(disk, truncated_segment_is_ecorrupt_for_lost_blocks)
{
	new_dir();
	struct kvt_tier *t = open_disk(0);
	for (uint32_t i = 0; i < 6; i++)
		cr_assert_eq(put_block(t, i, 4096), 0);
	cr_assert_eq(t->ops->sync(t), 0);
	kvt_tier_destroy(t);
	char p[600];
	snprintf(p, sizeof p, "%s/seg-00000001.dat", dir);
	cr_assert_eq(truncate(p, 3 * 4096 + 100), 0);
	t = open_disk(0);
	cr_assert_eq(check_block(t, 2, 4096), 0);
	cr_assert_eq(check_block(t, 3, 4096), KVT_ECORRUPT);
	cr_assert_eq(check_block(t, 5, 4096), KVT_ECORRUPT);
	kvt_tier_destroy(t);
}

Test(disk, corrupt_index_file_is_a_clear_error)
{
	new_dir();
	char p[600];
	snprintf(p, sizeof p, "%s/index.lmdb", dir);
	FILE *f = fopen(p, "w");
	for (int i = 0; i < 4096; i++)
		fputc(i * 7, f);
	fclose(f);
	struct kvt_tier *t;
	int rc = kvt_disk_tier_create(dir, 0, 0, &t);
	cr_assert_neq(rc, 0);
	cr_assert_str_neq(kvt_strerror(rc), "");
}

/* A file size limit makes writes fail like a full disk would. */
Test(disk, full_disk_is_a_clear_error_and_keeps_earlier_blocks)
{
	new_dir();
	struct kvt_tier *t = open_disk(0);
	for (uint32_t i = 0; i < 8; i++)
		cr_assert_eq(put_block(t, i, 8192), 0);
	cr_assert_eq(t->ops->sync(t), 0);
	kvt_tier_destroy(t);
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = {12 * 8192, 12 * 8192};
		setrlimit(RLIMIT_FSIZE, &rl);
		struct kvt_tier *c;
		if (kvt_disk_tier_create(dir, 0, 0, &c))
			_exit(10);
		int rc = 0;
		uint32_t i;
		for (i = 8; i < 100 && rc == 0; i++)
			rc = put_block(c, i, 8192);
		if (rc != KVT_ENOSPACE)
			_exit(11);
		if (c->ops->sync(c))
			_exit(12);
		for (uint32_t j = 0; j < i - 1; j++)
			if (check_block(c, j, 8192))
				_exit(13);
		kvt_tier_destroy(c);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d",
		  WEXITSTATUS(st));
	t = open_disk(0);
	for (uint32_t i = 0; i < 8; i++)
		cr_assert_eq(check_block(t, i, 8192), 0);
	kvt_tier_destroy(t);
}

static int count_segments(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		n += strncmp(e->d_name, "seg-", 4) == 0;
	closedir(d);
	return n;
}

Test(disk, gc_compacts_mostly_dead_segments)
{
	new_dir();
	struct kvt_tier *t = open_disk(0);
	/* 300 x 1 MiB fills segment 1 (256 MiB) and spills to segment 2. */
	for (uint32_t i = 0; i < 300; i++)
		cr_assert_eq(put_block(t, i, 1 << 20), 0);
	cr_assert_eq(t->ops->sync(t), 0);
	cr_assert_eq(count_segments(), 2);
	for (uint32_t i = 0; i < 250; i++) {
		struct kvt_block_key k = {1, 0, i};
		cr_assert_eq(t->ops->del(t, &k), 0);
	}
	cr_assert_eq(t->ops->sync(t), 0);
	cr_assert_eq(count_segments(), 1);
	for (uint32_t i = 250; i < 300; i++)
		cr_assert_eq(check_block(t, i, 1 << 20), 0);
	kvt_tier_destroy(t);
	t = open_disk(0);
	for (uint32_t i = 250; i < 300; i++)
		cr_assert_eq(check_block(t, i, 1 << 20), 0);
	struct kvt_tier_usage u;
	t->ops->usage(t, &u);
	cr_assert_eq(u.n_blocks, 50);
	kvt_tier_destroy(t);
}

/*
 * The crash test: a child puts blocks and syncs, writing each block number
 * to a pipe once its sync returned (acknowledged). The parent kills it with
 * SIGKILL at a random moment, reopens the directory, and checks every
 * acknowledged block bit for bit. 200 rounds on one directory.
 */
static void writer(int fd, uint32_t first)
{
	struct kvt_tier *t;
	if (kvt_disk_tier_create(dir, 0, (int)(first % 2), &t))
		_exit(1);
	for (uint32_t b = first;; b++) {
		size_t len = 1000 + (b * 7919) % 30000;
		if (put_block(t, b, len) || t->ops->sync(t))
			_exit(2);
		if (write(fd, &b, sizeof b) != sizeof b)
			_exit(3);
	}
}

Test(disk, sigkill_at_random_moments_loses_no_acknowledged_block,
     .timeout = 300)
{
	new_dir();
	static uint32_t acked[1 << 16];
	size_t n_acked = 0;
	uint32_t next = 0;
	srand((unsigned)time(NULL));
	for (int round = 0; round < 200; round++) {
		int p[2];
		cr_assert_eq(pipe(p), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(p[0]);
			writer(p[1], next);
		}
		close(p[1]);
		usleep((useconds_t)(5000 + rand() % 40000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		uint32_t b;
		while (read(p[0], &b, sizeof b) == sizeof b && n_acked < 1 << 16) {
			acked[n_acked++] = b;
			next = b + 1;
		}
		close(p[0]);
		next += 1000; /* never reuse a number an unacked put may hold */
		struct kvt_tier *t = open_disk(0);
		for (size_t i = 0; i < n_acked; i++) {
			uint32_t blk = acked[i];
			int rc = check_block(t, blk, 1000 + (blk * 7919) % 30000);
			cr_assert_eq(rc, 0, "round %d: acknowledged block %u: %s",
				     round, blk, kvt_strerror(rc));
		}
		kvt_tier_destroy(t);
	}
	cr_assert_gt(n_acked, 100, "the writer acknowledged only %zu blocks", n_acked);
	cr_log_info("crash test: 200 kills, %zu acknowledged blocks verified", n_acked);
}
