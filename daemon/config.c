/* config.c - kvtierd settings: config file and flags (see config.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

void kvtd_options_init(struct kvtd_options *o)
{
	memset(o, 0, sizeof *o);
	if (kvt_default_socket_path(o->socket, sizeof o->socket))
		snprintf(o->socket, sizeof o->socket, "/tmp/kvtier-%u.sock",
			 (unsigned)getuid());
	kvt_store_config_init(&o->store);
	kvt_server_config_init(&o->server);
	o->log.level = KVT_LOG_INFO;
}

int kvtd_parse_bytes(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -EINVAL;
	int shift = 0;
	switch (toupper((unsigned char)*end)) {
	case 'K': shift = 10; break;
	case 'M': shift = 20; break;
	case 'G': shift = 30; break;
	case 'T': shift = 40; break;
	case 0: break;
	default: return -EINVAL;
	}
	if (shift && end[1] && strcasecmp(end + 1, "B") && strcasecmp(end + 1, "iB"))
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	if (kvtd_parse_bytes(s, &v) || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_int(const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || *end || v < 0 || v > 1 << 30)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
	if (!s[0] || strlen(s) >= cap)
		return -EINVAL;
	strcpy(dst, s);
	return 0;
}

static int add_id(unsigned *ids, size_t *n, const char *s)
{
	int v;
	if (*n >= KVT_SERVER_MAX_IDS || parse_int(s, &v))
		return -EINVAL;
	ids[(*n)++] = (unsigned)v;
	return 0;
}

int kvtd_options_set(struct kvtd_options *o, const char *key, const char *value)
{
	char k[32];
	size_t i = 0;
	for (; key[i] && i < sizeof k - 1; i++)
		k[i] = key[i] == '-' ? '_' : key[i];
	k[i] = 0;
	struct kvt_server_config *sv = &o->server;
	enum kvt_log_level lvl;
	int rc = -ENOENT;
	if (!strcmp(k, "socket"))
		rc = copy_str(o->socket, sizeof o->socket, value);
	else if (!strcmp(k, "data_dir"))
		rc = copy_str(o->data_dir, sizeof o->data_dir, value);
	else if (!strcmp(k, "host_bytes"))
		rc = kvtd_parse_bytes(value, &o->store.host_bytes);
	else if (!strcmp(k, "gpu_bytes"))
		rc = kvtd_parse_bytes(value, &o->store.gpu_bytes);
	else if (!strcmp(k, "disk_bytes"))
		rc = kvtd_parse_bytes(value, &o->store.disk_bytes);
	else if (!strcmp(k, "zstd_level"))
		rc = parse_int(value, &o->store.zstd_level);
	else if (!strcmp(k, "log_level") &&
		 !(rc = kvt_log_level_parse(value, &lvl)))
		o->log.level = lvl;
	else if (!strcmp(k, "allow_uid"))
		rc = add_id(sv->allow_uids, &sv->n_allow_uids, value);
	else if (!strcmp(k, "allow_gid"))
		rc = add_id(sv->allow_gids, &sv->n_allow_gids, value);
	else if (!strcmp(k, "max_clients"))
		rc = parse_u32(value, &sv->max_clients);
	else if (!strcmp(k, "max_frame"))
		rc = parse_u32(value, &sv->max_frame);
	else if (!strcmp(k, "max_inline"))
		rc = parse_u32(value, &sv->max_inline);
	else if (!strcmp(k, "max_open_caches"))
		rc = parse_u32(value, &sv->max_open_caches);
	else if (!strcmp(k, "frame_timeout_ms"))
		rc = parse_u32(value, &sv->frame_timeout_ms);
	else if (!strcmp(k, "max_inflight"))
		rc = kvtd_parse_bytes(value, &sv->max_inflight);
	return rc;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

int kvtd_options_load(struct kvtd_options *o, const char *path, int *line)
{
	*line = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char buf[4096];
	int rc = 0;
	while (!rc && fgets(buf, sizeof buf, f)) {
		++*line;
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = 0;
		char *s = trim(buf);
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			rc = -EINVAL;
			break;
		}
		*eq = 0;
		rc = kvtd_options_set(o, trim(s), trim(eq + 1));
	}
	fclose(f);
	return rc;
}
