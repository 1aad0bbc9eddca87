/* npy.c - a strict reader and a writer for NumPy .npy arrays. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "errmsg.h"
#include "npy.h"

static const char magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Finds the value text after 'key': in the header dictionary. */
static const char *dict_value(const char *dict, const char *key)
{
	char pat[32];
	snprintf(pat, sizeof pat, "'%s'", key);
	const char *p = strstr(dict, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	while (isspace((unsigned char)*p))
		p++;
	if (*p != ':')
		return NULL;
	p++;
	while (isspace((unsigned char)*p))
		p++;
	return p;
}

static int parse_descr(const char *v, struct kvt_npy *o, char *msg, size_t cap)
{
	if (!v || (*v != '\'' && *v != '"'))
		return kvt_errmsg(KVT_EFORMAT, msg, cap, "npy header has no 'descr'");
	if (!strncmp(v + 1, "<f2", 3) && v[4] == v[0])
		o->dtype = KVT_DTYPE_F16;
	else if (!strncmp(v + 1, "<f4", 3) && v[4] == v[0])
		o->dtype = KVT_DTYPE_F32;
	else
		return kvt_errmsg(-ENOTSUP, msg, cap,
			    "unsupported npy dtype %.8s (need float16 or float32, little-endian)",
			    v);
	return 0;
}

static int parse_shape(const char *v, struct kvt_npy *o, char *msg, size_t cap)
{
	if (!v || *v != '(')
		return kvt_errmsg(KVT_EFORMAT, msg, cap, "npy header has no 'shape' tuple");
	v++;
	o->ndim = 0;
	for (;;) {
		while (isspace((unsigned char)*v))
			v++;
		if (*v == ')')
			return 0;
		if (!isdigit((unsigned char)*v) || o->ndim == KVT_NPY_MAX_DIMS)
			return kvt_errmsg(KVT_EFORMAT, msg, cap, "malformed npy shape");
		char *end;
		errno = 0;
		unsigned long long d = strtoull(v, &end, 10);
		if (errno || d > (1ull << 40))
			return kvt_errmsg(KVT_EFORMAT, msg, cap, "npy dimension too large");
		o->shape[o->ndim++] = d;
		v = end;
		while (isspace((unsigned char)*v))
			v++;
		if (*v == ',')
			v++;
		else if (*v != ')')
			return kvt_errmsg(KVT_EFORMAT, msg, cap, "malformed npy shape");
	}
}

static int header_text(const uint8_t *b, size_t len, size_t *start,
		       size_t *hlen, char *msg, size_t cap)
{
	if (len < 10 || memcmp(b, magic, sizeof magic))
		return kvt_errmsg(KVT_EFORMAT, msg, cap, "not a .npy file (bad magic)");
	if (b[6] == 1) {
		*start = 10;
		*hlen = kvt_get_u16(b + 8);
	} else if (b[6] == 2 || b[6] == 3) {
		if (len < 12)
			return kvt_errmsg(KVT_EFORMAT, msg, cap, "truncated npy header");
		*start = 12;
		*hlen = kvt_get_u32(b + 8);
	} else {
		return kvt_errmsg(KVT_EVERSION, msg, cap, "unsupported npy version %u.%u",
			    b[6], b[7]);
	}
	if (*hlen > (1u << 20) || *start + *hlen > len)
		return kvt_errmsg(KVT_EFORMAT, msg, cap, "truncated npy header");
	return 0;
}

int kvt_npy_parse(const void *buf, size_t len, struct kvt_npy *out, char *msg,
		  size_t cap)
{
	size_t start = 0, hlen = 0;
	struct kvt_npy o = {0};
	int rc = header_text(buf, len, &start, &hlen, msg, cap);
	if (rc)
		return rc;
	char *dict = malloc(hlen + 1);
	if (!dict)
		return -ENOMEM;
	memcpy(dict, (const uint8_t *)buf + start, hlen);
	dict[hlen] = 0;
	const char *fo = dict_value(dict, "fortran_order");
	if (!fo || strncmp(fo, "False", 5))
		rc = kvt_errmsg(KVT_EFORMAT, msg, cap,
			  "npy array must be in C order (fortran_order False)");
	if (!rc)
		rc = parse_descr(dict_value(dict, "descr"), &o, msg, cap);
	if (!rc)
		rc = parse_shape(dict_value(dict, "shape"), &o, msg, cap);
	free(dict);
	if (rc)
		return rc;
	uint64_t n = kvt_dtype_size(o.dtype);
	for (uint32_t i = 0; i < o.ndim; i++) {
		if (o.shape[i] && n > (1ull << 40) / o.shape[i])
			return kvt_errmsg(KVT_EFORMAT, msg, cap, "npy array too large");
		n *= o.shape[i];
	}
	o.data_offset = start + hlen;
	o.data_len = (size_t)n;
	*out = o;
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t r = read(fd, (uint8_t *)buf + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return KVT_EFORMAT;
		done += (size_t)r;
	}
	return 0;
}

int kvt_npy_read(const char *path, struct kvt_npy *out, void **data, char *msg,
		 size_t cap)
{
	uint8_t head[4096];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kvt_errmsg(-errno, msg, cap, "%s: %s", path, strerror(errno));
	int rc = fstat(fd, &st) ? -errno : 0;
	size_t size = rc ? 0 : (size_t)st.st_size;
	size_t first = size < sizeof head ? size : sizeof head;
	rc = rc ? rc : read_all(fd, head, first);
	struct kvt_npy o;
	rc = rc ? rc : kvt_npy_parse(head, first, &o, msg, cap);
	if (!rc && o.data_offset + o.data_len != size)
		rc = kvt_errmsg(KVT_EFORMAT, msg, cap,
			  "%s: file is %zu bytes, header says %zu (truncated?)",
			  path, size, o.data_offset + o.data_len);
	void *buf = rc ? NULL : malloc(o.data_len ? o.data_len : 1);
	if (!rc && !buf)
		rc = -ENOMEM;
	if (!rc && lseek(fd, (off_t)o.data_offset, SEEK_SET) < 0)
		rc = -errno;
	rc = rc ? rc : read_all(fd, buf, o.data_len);
	close(fd);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = o;
	*data = buf;
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t w = write(fd, (const uint8_t *)buf + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		done += (size_t)w;
	}
	return 0;
}

static size_t format_header(char *h, size_t cap, enum kvt_dtype dtype,
			    uint32_t ndim, const uint64_t *shape)
{
	int n = snprintf(h + 10, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (",
			 dtype == KVT_DTYPE_F16 ? "<f2" : "<f4");
	for (uint32_t i = 0; i < ndim; i++)
		n += snprintf(h + 10 + n, cap - 10 - (size_t)n, "%llu%s",
			      (unsigned long long)shape[i],
			      ndim == 1 || i + 1 < ndim ? ", " : "");
	n += snprintf(h + 10 + n, cap - 10 - (size_t)n, "), }");
	size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
	memset(h + 10 + n, ' ', total - 10 - (size_t)n - 1);
	h[total - 1] = '\n';
	memcpy(h, magic, sizeof magic);
	h[6] = 1;
	h[7] = 0;
	kvt_put_u16((uint8_t *)h + 8, (uint16_t)(total - 10));
	return total;
}

int kvt_npy_write(const char *path, enum kvt_dtype dtype, uint32_t ndim,
		  const uint64_t *shape, const void *data)
{
	char h[1024], tmp[4096];
	if ((dtype != KVT_DTYPE_F16 && dtype != KVT_DTYPE_F32) || ndim == 0 ||
	    ndim > KVT_NPY_MAX_DIMS)
		return -EINVAL;
	size_t len = kvt_dtype_size(dtype), hl = format_header(h, sizeof h, dtype, ndim, shape);
	for (uint32_t i = 0; i < ndim; i++)
		len *= shape[i];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = write_all(fd, h, hl);
	rc = rc ? rc : write_all(fd, data, len);
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}
