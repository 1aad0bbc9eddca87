/* hmap.c - linear-probing hash map with backward-shift deletion. */
#include <errno.h>
#include <stdlib.h>

#include "hmap.h"
#include "kvtier/kvtier.h"

struct kvt_hslot {
	struct kvt_hkey k;
	uint32_t v;
	uint32_t used;
};

static size_t hash(struct kvt_hkey k)
{
	uint64_t h = k.a * 0x9e3779b97f4a7c15ull ^ (k.b + 0x632be59bd9b4e019ull);
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	return (size_t)(h ^ (h >> 29));
}

static int same(struct kvt_hkey x, struct kvt_hkey y)
{
	return x.a == y.a && x.b == y.b;
}

void kvt_hmap_free(struct kvt_hmap *m)
{
	free(m->slots);
	*m = (struct kvt_hmap){0};
}

static size_t find(const struct kvt_hmap *m, struct kvt_hkey k)
{
	size_t i = hash(k) & (m->cap - 1);
	while (m->slots[i].used && !same(m->slots[i].k, k))
		i = (i + 1) & (m->cap - 1);
	return i;
}

static int grow(struct kvt_hmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	struct kvt_hslot *s = calloc(cap, sizeof *s);
	if (!s)
		return -ENOMEM;
	struct kvt_hmap n = {s, cap, 0};
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].used) {
			n.slots[find(&n, m->slots[i].k)] = m->slots[i];
			n.n++;
		}
	}
	free(m->slots);
	*m = n;
	return 0;
}

int kvt_hmap_put(struct kvt_hmap *m, struct kvt_hkey k, uint32_t v)
{
	if ((m->n + 1) * 10 > m->cap * 7) {
		int rc = grow(m);
		if (rc)
			return rc;
	}
	size_t i = find(m, k);
	if (!m->slots[i].used)
		m->n++;
	m->slots[i] = (struct kvt_hslot){k, v, 1};
	return 0;
}

int kvt_hmap_get(const struct kvt_hmap *m, struct kvt_hkey k, uint32_t *v)
{
	if (!m->cap)
		return KVT_ENOTFOUND;
	size_t i = find(m, k);
	if (!m->slots[i].used)
		return KVT_ENOTFOUND;
	*v = m->slots[i].v;
	return 0;
}

int kvt_hmap_del(struct kvt_hmap *m, struct kvt_hkey k)
{
	if (!m->cap)
		return KVT_ENOTFOUND;
	size_t mask = m->cap - 1, i = find(m, k);
	if (!m->slots[i].used)
		return KVT_ENOTFOUND;
	/* Shift later members of the probe run back into the hole. */
	for (size_t j = (i + 1) & mask; m->slots[j].used; j = (j + 1) & mask) {
		size_t home = hash(m->slots[j].k) & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].used = 0;
	m->n--;
	return 0;
}
