/*
 * bench_daemon.c - kvtierd request latency and shared-block read throughput.
 *
 * Runs a server in a thread of this process over a fresh in-memory store,
 * fills one cache with raw blocks, then measures:
 *  - round-trip latency (p50, p99) of small requests from one client
 *    (stats, open, close), next to the in-process store call;
 *  - read throughput of the cache's blocks with 1, 4 and 16 client
 *    processes (kvt_client_cache_read_block: copy from the daemon's host
 *    arena mapped in the client + checksum), next to the same number of
 *    threads calling kvt_cache_read_block in-process on the same data in
 *    the same run; the first pass over the blocks (locations fetched, pages
 *    faulted in) and the later ones are reported apart.
 * Every figure is the best of --repeat runs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "kvtier/client.h"
#include "server.h"

struct opts {
	uint32_t layers, heads, dim, blocks_per_layer;
	int rounds, repeat, ops;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_daemon [--layers N] [--heads N] [--dim N] [--blocks N]\n"
		"                    [--rounds N] [--repeat N] [--ops N]\n\n"
		"Latency of small kvtierd requests and shared-block read throughput\n"
		"with 1, 4 and 16 client processes, each next to the in-process\n"
		"store call on the same data (ratio = daemon / in-process).\n\n"
		"  --layers N  layers of the cache (default 8)\n"
		"  --heads N   kv heads (default 8)\n"
		"  --dim N     head dim (default 128; fp16, 16-token blocks)\n"
		"  --blocks N  blocks per layer (default 128)\n"
		"  --rounds N  passes over all blocks per reader (default 4)\n"
		"  --repeat N  runs per figure, best kept (default 3)\n"
		"  --ops N     requests per latency figure (default 20000)\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){8, 8, 128, 128, 4, 3, 20000};
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			exit(0);
		}
		if (i + 1 >= argc)
			return -1;
		long v = atol(argv[i + 1]);
		if (v <= 0)
			return -1;
		const char *a = argv[i++];
		if (!strcmp(a, "--layers")) o->layers = (uint32_t)v;
		else if (!strcmp(a, "--heads")) o->heads = (uint32_t)v;
		else if (!strcmp(a, "--dim")) o->dim = (uint32_t)v;
		else if (!strcmp(a, "--blocks")) o->blocks_per_layer = (uint32_t)v;
		else if (!strcmp(a, "--rounds")) o->rounds = (int)v;
		else if (!strcmp(a, "--repeat")) o->repeat = (int)v;
		else if (!strcmp(a, "--ops")) o->ops = (int)v;
		else return -1;
	}
	return 0;
}


struct pct {
	double p50, p99;
};

static struct pct percentiles(double *v, int n)
{
	bench_sort(v, (size_t)n);
	return (struct pct){v[n / 2] * 1e6, v[(int)(n * 0.99)] * 1e6};
}

/* ---------------------------------------------------------------- setup */

static int fill(struct kvt_store *store, const struct opts *o,
		struct kvt_shape *shape)
{
	struct kvt_cache_config cfg;
	kvt_cache_config_init(&cfg);
	cfg.shape = (struct kvt_shape){o->layers, o->heads, o->dim, 16, KVT_DTYPE_F16};
	*shape = cfg.shape;
	struct kvt_cache *c;
	int rc = kvt_cache_create(store, "bench", &cfg, &c);
	uint32_t n = o->blocks_per_layer * 16;
	size_t len = (size_t)o->heads * n * o->dim;
	uint16_t *k = malloc(len * 2), *v = malloc(len * 2);
	for (size_t i = 0; k && v && i < len; i++) {
		k[i] = (uint16_t)(i * 2654435761u >> 16);
		v[i] = (uint16_t)(i * 40503u);
	}
	for (uint32_t l = 0; !rc && l < o->layers; l++)
		rc = !k || !v ? -ENOMEM : kvt_cache_append(c, l, n, k, v);
	free(k);
	free(v);
	kvt_cache_close(c);
	return rc;
}

struct daemon {
	struct kvt_server *srv;
	pthread_t thread;
	char path[108];
};

static void *serve(void *arg)
{
	kvt_server_run(((struct daemon *)arg)->srv);
	return NULL;
}

static int daemon_start(struct kvt_store *store, struct daemon *d)
{
	struct kvt_server_config cfg;
	kvt_server_config_init(&cfg);
	snprintf(d->path, sizeof d->path, "/tmp/bench-kvtierd-%d.sock", (int)getpid());
	cfg.socket_path = d->path;
	int rc = kvt_server_create(store, &cfg, &d->srv);
	if (!rc)
		rc = -pthread_create(&d->thread, NULL, serve, d);
	return rc;
}

/* ---------------------------------------------------------------- latency */

static void latency(struct kvt_store *store, const char *path, int ops)
{
	struct kvt_client *cl;
	if (kvt_client_connect(path, &cl))
		return;
	double *t = malloc(sizeof *t * (size_t)ops);
	double *t2 = malloc(sizeof *t2 * (size_t)ops);
	struct kvt_stats st;
	for (int i = 0; i < ops; i++) {
		double a = bench_now();
		kvt_client_stats(cl, &st);
		t[i] = bench_now() - a;
		a = bench_now();
		kvt_store_stats(store, &st);
		t2[i] = bench_now() - a;
	}
	struct pct d = percentiles(t, ops), s = percentiles(t2, ops);
	printf("stats        daemon p50 %7.2f us  p99 %7.2f us | in-process p50 %6.2f us  p99 %6.2f us\n",
	       d.p50, d.p99, s.p50, s.p99);
	for (int i = 0; i < ops; i++) {
		struct kvt_client_cache *c;
		struct kvt_cache *lc;
		double a = bench_now();
		kvt_client_cache_open(cl, "bench", &c);
		t[i] = bench_now() - a;
		a = bench_now();
		kvt_client_cache_close(c);
		t2[i] = bench_now() - a;
		kvt_cache_open(store, "bench", &lc);
		kvt_cache_close(lc);
	}
	d = percentiles(t, ops);
	s = percentiles(t2, ops);
	printf("open         daemon p50 %7.2f us  p99 %7.2f us\n", d.p50, d.p99);
	printf("close        daemon p50 %7.2f us  p99 %7.2f us\n", s.p50, s.p99);
	free(t);
	free(t2);
	kvt_client_close(cl);
}

/* ---------------------------------------------------------------- throughput */

/* Timings of one reader: the first pass over the blocks and the others. */
struct pass_times {
	double first, rest;
};

struct reader {
	struct kvt_store *store;
	const struct opts *o;
	size_t block_bytes;
	int seed;
	struct pass_times t;
	int rc;
};

/* Reads every block rounds times in a per-reader shuffled order; fn does
 * one read. Returns 0 or -1 on error. */
static int read_all(const struct opts *o, int seed, size_t len,
		    int (*fn)(void *ctx, uint32_t l, uint64_t b, void *dst, size_t len),
		    void *ctx, struct pass_times *out)
{
	uint32_t n = o->layers * o->blocks_per_layer;
	uint32_t *order = malloc(sizeof *order * n);
	void *dst = aligned_alloc(64, len);
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	unsigned s = (unsigned)seed * 2654435761u + 1;
	for (uint32_t i = n - 1; i > 0; i--) {
		s = s * 1103515245u + 12345u;
		uint32_t j = (s >> 8) % (i + 1), x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	double t0 = bench_now(), t1 = t0;
	int rc = 0;
	for (int r = 0; r < o->rounds && !rc; r++) {
		for (uint32_t i = 0; i < n && !rc; i++)
			rc = fn(ctx, order[i] / o->blocks_per_layer,
				order[i] % o->blocks_per_layer, dst, len);
		if (r == 0)
			t1 = bench_now();
	}
	out->first = t1 - t0;
	out->rest = bench_now() - t1;
	free(order);
	free(dst);
	return rc ? -1 : 0;
}

static int local_read(void *ctx, uint32_t l, uint64_t b, void *dst, size_t len)
{
	return kvt_cache_read_block(ctx, l, b, dst, len, NULL);
}

static int remote_read(void *ctx, uint32_t l, uint64_t b, void *dst, size_t len)
{
	return kvt_client_cache_read_block(ctx, l, b, dst, len, NULL);
}

static void *local_reader(void *arg)
{
	struct reader *r = arg;
	struct kvt_cache *c;
	r->rc = kvt_cache_open(r->store, "bench", &c);
	if (r->rc)
		return NULL;
	r->rc = read_all(r->o, r->seed, r->block_bytes, local_read, c, &r->t);
	kvt_cache_close(c);
	return NULL;
}

/* Aggregate GB/s of n readers, first pass and later passes. */
struct rates {
	double first, rest;
};

static struct rates rates_of(const struct opts *o, size_t len, int n,
			     const struct pass_times *t)
{
	double first = 0, rest = 0;
	for (int i = 0; i < n; i++) {
		first = t[i].first > first ? t[i].first : first;
		rest = t[i].rest > rest ? t[i].rest : rest;
	}
	double pass = (double)len * o->layers * o->blocks_per_layer * n;
	return (struct rates){pass / first / 1e9,
			      o->rounds > 1 ? pass * (o->rounds - 1) / rest / 1e9 : 0};
}

static struct rates local_rate(struct kvt_store *store, const struct opts *o,
			       size_t len, int n)
{
	pthread_t th[16];
	struct reader r[16];
	struct pass_times t[16];
	for (int i = 0; i < n; i++) {
		r[i] = (struct reader){store, o, len, i, {0, 0}, 0};
		pthread_create(&th[i], NULL, local_reader, &r[i]);
	}
	int ok = 1;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		ok &= !r[i].rc;
		t[i] = r[i].t;
	}
	return ok ? rates_of(o, len, n, t) : (struct rates){0, 0};
}

/* Child: connect, warm up (maps the arena), wait for go, read, report. */
static void remote_child(const char *path, const struct opts *o, size_t len,
			 int seed, int go_fd, int out_fd)
{
	struct kvt_client *cl;
	struct kvt_client_cache *c;
	struct pass_times t = {-1, -1};
	char go;
	void *tmp = malloc(len);
	if (!kvt_client_connect(path, &cl) &&
	    !kvt_client_cache_open(cl, "bench", &c) &&
	    !kvt_client_cache_read_block(c, 0, 0, tmp, len, NULL) &&
	    read(go_fd, &go, 1) == 1 &&
	    read_all(o, seed, len, remote_read, c, &t))
		t.first = -1;
	ssize_t w = write(out_fd, &t, sizeof t);
	_exit(w == sizeof t ? 0 : 1);
}

static struct rates remote_rate(const char *path, const struct opts *o,
				size_t len, int n)
{
	int go[2], res[2];
	struct pass_times t[16];
	if (pipe(go) || pipe(res))
		return (struct rates){0, 0};
	for (int i = 0; i < n; i++) {
		if (fork() == 0) {
			close(go[1]);
			remote_child(path, o, len, i, go[0], res[1]);
		}
	}
	close(go[0]);
	close(res[1]);
	usleep(200000); /* let every child connect and map the arena */
	char bytes_go[16] = {0};
	size_t n_go = n > 0 && n <= 16 ? (size_t)n : 0;
	ssize_t w = write(go[1], bytes_go, n_go);
	(void)w;
	int ok = 1;
	for (int i = 0; i < n; i++)
		ok &= read(res[0], &t[i], sizeof t[i]) == sizeof t[i] && t[i].first >= 0;
	while (wait(NULL) > 0)
		;
	close(go[1]);
	close(res[0]);
	return ok ? rates_of(o, len, n, t) : (struct rates){0, 0};
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

static void throughput(struct kvt_store *store, const char *path,
		       const struct opts *o, size_t len)
{
	const int clients[] = {1, 4, 16};
	printf("read_block throughput, GB/s (first pass: locations fetched 64\n"
	       "blocks per round trip, pages faulted in; later passes: locations\n"
	       "remembered, copy + checksum only)\n");
	for (int i = 0; i < 3; i++) {
		struct rates bl = {0, 0}, br = {0, 0};
		for (int r = 0; r < o->repeat; r++) {
			struct rates l = local_rate(store, o, len, clients[i]);
			struct rates d = remote_rate(path, o, len, clients[i]);
			bl.first = l.first > bl.first ? l.first : bl.first;
			bl.rest = l.rest > bl.rest ? l.rest : bl.rest;
			br.first = d.first > br.first ? d.first : br.first;
			br.rest = d.rest > br.rest ? d.rest : br.rest;
		}
		printf("  x%-2d first pass: daemon %6.2f in-process %6.2f ratio %.2f | "
		       "later: daemon %6.2f in-process %6.2f ratio %.2f\n",
		       clients[i], br.first, bl.first, ratio(br.first, bl.first),
		       br.rest, bl.rest, ratio(br.rest, bl.rest));
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o)) {
		usage(stderr);
		return 2;
	}
	struct kvt_store_config sc;
	struct kvt_store *store;
	struct kvt_shape shape;
	struct daemon d;
	kvt_store_config_init(&sc);
	sc.host_bytes = 4ull << 30;
	int rc = kvt_store_open(&sc, &store);
	if (!rc)
		rc = fill(store, &o, &shape);
	if (!rc)
		rc = daemon_start(store, &d);
	if (rc) {
		fprintf(stderr, "bench_daemon: %s\n", kvt_strerror(rc));
		return 1;
	}
	size_t len = kvt_block_bytes(&shape);
	printf("cache: %u layers x %u blocks of %zu KiB (%.0f MiB)\n", o.layers,
	       o.blocks_per_layer, len >> 10,
	       (double)len * o.layers * o.blocks_per_layer / (1 << 20));
	latency(store, d.path, o.ops);
	throughput(store, d.path, &o, len);
	kvt_server_stop(d.srv);
	pthread_join(d.thread, NULL);
	kvt_server_destroy(d.srv);
	kvt_store_close(store);
	return 0;
}
