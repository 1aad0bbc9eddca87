/* loc_cache.c - open-addressing map of shared block locations. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "loc_cache.h"

static size_t slot_of(const struct kvt_loc_cache *c, uint64_t k)
{
	k *= 0x9e3779b97f4a7c15ull;
	return (size_t)(k >> 20) & (c->cap - 1);
}

static struct kvt_loc_entry *find(const struct kvt_loc_cache *c, uint64_t k)
{
	if (!c->cap)
		return NULL;
	for (size_t i = slot_of(c, k);; i = (i + 1) & (c->cap - 1)) {
		struct kvt_loc_entry *e = &c->slots[i];
		if (e->key == k || !e->key)
			return e;
	}
}

const struct kvt_loc_entry *kvt_loc_cache_get(const struct kvt_loc_cache *c,
					      uint64_t key)
{
	struct kvt_loc_entry *e = find(c, key + 1);
	return e && e->key && e->region ? e : NULL;
}

static int grow(struct kvt_loc_cache *c)
{
	size_t cap = c->cap ? c->cap * 2 : 1024;
	if (c->used >= KVT_LOC_CACHE_MAX)
		cap = c->cap; /* full: start over rather than grow forever */
	struct kvt_loc_cache n = {calloc(cap, sizeof *n.slots), cap, 0};
	if (!n.slots)
		return -ENOMEM;
	for (size_t i = 0; c->used < KVT_LOC_CACHE_MAX && i < c->cap; i++) {
		struct kvt_loc_entry *e = &c->slots[i];
		if (e->key && e->region) {
			*find(&n, e->key) = *e;
			n.used++;
		}
	}
	free(c->slots);
	*c = n;
	return 0;
}

int kvt_loc_cache_put(struct kvt_loc_cache *c, uint64_t key,
		      const struct kvt_loc_entry *e)
{
	if ((c->used + 1) * 2 > c->cap && grow(c))
		return -ENOMEM;
	struct kvt_loc_entry *s = find(c, key + 1);
	if (!s->key)
		c->used++;
	*s = *e;
	s->key = key + 1;
	return 0;
}

void kvt_loc_cache_forget(struct kvt_loc_cache *c, uint64_t key)
{
	struct kvt_loc_entry *e = find(c, key + 1);
	if (e && e->key)
		e->region = 0;
}

void kvt_loc_cache_free(struct kvt_loc_cache *c)
{
	free(c->slots);
	memset(c, 0, sizeof *c);
}
