/* disk_io.c - segment files, read and written through io_uring. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_io.h"
#include "kvtier/kvtier.h"

static void seg_name(uint32_t id, char *buf, size_t cap)
{
	snprintf(buf, cap, "seg-%08u.dat", id);
}

static int open_seg_fd(struct kvt_disk_io *io, uint32_t id, int create)
{
	char name[32];
	int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
	seg_name(id, name, sizeof name);
	int fd = io->direct ? openat(io->dirfd, name, flags | O_DIRECT, 0600) : -1;
	if (fd < 0 && io->direct && errno == EINVAL)
		io->direct = 0; /* e.g. tmpfs: buffered I/O, same alignment */
	if (fd < 0)
		fd = openat(io->dirfd, name, flags, 0600);
	return fd < 0 ? -errno : fd;
}

static int seg_insert(struct kvt_disk_io *io, uint32_t id, int fd, uint64_t end)
{
	struct kvt_seg *s = realloc(io->segs, (io->n_segs + 1) * sizeof *s);
	if (!s)
		return -ENOMEM;
	io->segs = s;
	size_t i = io->n_segs;
	while (i > 0 && s[i - 1].id > id) {
		s[i] = s[i - 1];
		i--;
	}
	s[i] = (struct kvt_seg){id, fd, end, 0};
	io->n_segs++;
	return 0;
}

static int scan_segments(struct kvt_disk_io *io)
{
	DIR *d = fdopendir(dup(io->dirfd));
	if (!d)
		return -errno;
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d))) {
		unsigned id;
		char tail;
		if (sscanf(e->d_name, "seg-%8u.da%c", &id, &tail) != 2 || tail != 't')
			continue;
		int fd = open_seg_fd(io, id, 0);
		struct stat st;
		if (fd < 0 || fstat(fd, &st)) {
			rc = fd < 0 ? fd : -errno;
			break;
		}
		rc = seg_insert(io, id, fd, (uint64_t)st.st_size);
	}
	closedir(d);
	return rc;
}

int kvt_disk_io_open(struct kvt_disk_io *io, const char *dir)
{
	memset(io, 0, sizeof *io);
	io->direct = 1;
	io->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (io->dirfd < 0)
		return -errno;
	int rc = io_uring_queue_init(KVT_DISK_QD, &io->ring, 0);
	if (rc < 0) {
		close(io->dirfd);
		io->dirfd = -1;
		return rc;
	}
	rc = scan_segments(io);
	if (rc)
		kvt_disk_io_close(io);
	return rc;
}

void kvt_disk_io_close(struct kvt_disk_io *io)
{
	for (size_t i = 0; i < io->n_segs; i++)
		close(io->segs[i].fd);
	free(io->segs);
	io_uring_queue_exit(&io->ring);
	close(io->dirfd);
	memset(io, 0, sizeof *io);
}

struct kvt_seg *kvt_disk_seg(struct kvt_disk_io *io, uint32_t id)
{
	size_t lo = 0, hi = io->n_segs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (io->segs[mid].id == id)
			return &io->segs[mid];
		if (io->segs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int kvt_disk_seg_create(struct kvt_disk_io *io, uint32_t id, struct kvt_seg **out)
{
	int fd = open_seg_fd(io, id, 1);
	if (fd < 0)
		return fd;
	int rc = seg_insert(io, id, fd, 0);
	if (rc) {
		close(fd);
		return rc;
	}
	*out = kvt_disk_seg(io, id);
	return 0;
}

void kvt_disk_seg_remove(struct kvt_disk_io *io, uint32_t id)
{
	char name[32];
	struct kvt_seg *s = kvt_disk_seg(io, id);
	if (!s)
		return;
	close(s->fd);
	seg_name(id, name, sizeof name);
	unlinkat(io->dirfd, name, 0);
	size_t i = (size_t)(s - io->segs);
	memmove(s, s + 1, (io->n_segs - i - 1) * sizeof *s);
	io->n_segs--;
}

/* Submits what is queued and reaps n completions into res[]. */
static int reap(struct io_uring *ring, unsigned n, int *res)
{
	int rc = io_uring_submit_and_wait(ring, n);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_cqe *cqe;
		rc = io_uring_wait_cqe(ring, &cqe);
		if (rc < 0)
			return rc;
		res[io_uring_cqe_get_data64(cqe)] = cqe->res;
		io_uring_cqe_seen(ring, cqe);
	}
	return 0;
}

/* Large writes go out as WRITE_CHUNK pieces, all in flight together, so
 * the device sees a deep queue rather than one long request. */
#define WRITE_CHUNK (512u << 10)

static int write_once(struct kvt_disk_io *io, struct kvt_seg *s,
		      const uint8_t *buf, size_t len, uint64_t off, size_t *done)
{
	int res[KVT_DISK_QD];
	unsigned n = 0;
	for (size_t at = 0; at < len && n < KVT_DISK_QD; at += WRITE_CHUNK, n++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
		size_t piece = len - at < WRITE_CHUNK ? len - at : WRITE_CHUNK;
		io_uring_prep_write(sqe, s->fd, buf + at, (unsigned)piece, off + at);
		io_uring_sqe_set_data64(sqe, n);
	}
	int rc = reap(&io->ring, n, res);
	*done = 0;
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		size_t piece = len - (size_t)i * WRITE_CHUNK;
		piece = piece < WRITE_CHUNK ? piece : WRITE_CHUNK;
		if (res[i] < 0)
			rc = res[i];
		else if ((size_t)res[i] != piece)
			rc = -ENOSPC; /* a short write: the device is full */
		else
			*done += piece;
	}
	return rc;
}

int kvt_disk_write(struct kvt_disk_io *io, struct kvt_seg *s, const void *buf,
		   size_t len, uint64_t off)
{
	for (size_t done = 0; done < len;) {
		size_t n;
		int rc = write_once(io, s, (const uint8_t *)buf + done, len - done,
				    off + done, &n);
		if (rc)
			return rc;
		done += n;
	}
	return 0;
}

int kvt_disk_sync(struct kvt_disk_io *io, const uint32_t *ids, size_t n)
{
	int res[KVT_DISK_QD];
	for (size_t i = 0; i < n; i += KVT_DISK_QD) {
		unsigned batch = (unsigned)(n - i < KVT_DISK_QD ? n - i : KVT_DISK_QD);
		for (unsigned j = 0; j < batch; j++) {
			struct kvt_seg *s = kvt_disk_seg(io, ids[i + j]);
			struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
			if (s)
				io_uring_prep_fsync(sqe, s->fd, IORING_FSYNC_DATASYNC);
			else
				io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, j);
		}
		int rc = reap(&io->ring, batch, res);
		for (unsigned j = 0; rc == 0 && j < batch; j++)
			if (res[j] < 0)
				rc = res[j];
		if (rc)
			return rc;
	}
	return 0;
}

int kvt_disk_read_many(struct kvt_disk_io *io, struct kvt_disk_read *r, size_t n)
{
	int res[KVT_DISK_QD];
	for (size_t i = 0; i < n; i += KVT_DISK_QD) {
		unsigned batch = (unsigned)(n - i < KVT_DISK_QD ? n - i : KVT_DISK_QD);
		for (unsigned j = 0; j < batch; j++) {
			struct kvt_disk_read *x = &r[i + j];
			struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
			io_uring_prep_read(sqe, x->seg->fd, x->buf, (unsigned)x->len, x->off);
			io_uring_sqe_set_data64(sqe, j);
		}
		int rc = reap(&io->ring, batch, res);
		if (rc)
			return rc;
		for (unsigned j = 0; j < batch; j++)
			r[i + j].result = res[j] < 0 ? res[j]
					  : (size_t)res[j] < r[i + j].len ? KVT_ECORRUPT : 0;
	}
	return 0;
}
