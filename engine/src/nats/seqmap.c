/* seqmap.c -- open addressing, linear probing, FNV-1a (see seqmap.h). */
#include "nats/seqmap.h"

#include <string.h>

static uint32_t hash(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

void myc__seqmap_init(myc__seqmap *m, const myc__alloc *a, uint32_t max) {
  memset(m, 0, sizeof *m);
  m->a = a;
  m->max = max;
}

void myc__seqmap_free(myc__seqmap *m) {
  uint32_t i;
  for (i = 0; i < m->cap; i++)
    if (m->slots[i].key != NULL)
      myc__strfree(m->a, m->slots[i].key);
  myc__free(m->a, m->slots, (size_t)m->cap * sizeof *m->slots);
  m->slots = NULL;
  m->n = m->cap = 0;
}

static myc__seq_slot *find(myc__seq_slot *v, uint32_t cap, const char *key,
                           size_t len) {
  uint32_t i = hash(key, len) & (cap - 1);
  for (;; i = (i + 1) & (cap - 1))
    if (v[i].key == NULL ||
        (strncmp(v[i].key, key, len) == 0 && v[i].key[len] == '\0'))
      return &v[i];
}

static int grow(myc__seqmap *m) {
  uint32_t ncap = m->cap ? m->cap * 2 : 64, i;
  myc__seq_slot *nv = myc__calloc(m->a, (size_t)ncap * sizeof *nv);
  if (nv == NULL)
    return -1;
  for (i = 0; i < m->cap; i++)
    if (m->slots[i].key != NULL)
      *find(nv, ncap, m->slots[i].key, strlen(m->slots[i].key)) = m->slots[i];
  myc__free(m->a, m->slots, (size_t)m->cap * sizeof *m->slots);
  m->slots = nv;
  m->cap = ncap;
  return 0;
}

uint64_t *myc__seqmap_at(myc__seqmap *m, const char *key, size_t len) {
  myc__seq_slot *s;
  if (m->cap > 0) {
    s = find(m->slots, m->cap, key, len);
    if (s->key != NULL)
      return &s->seq;
  }
  if (m->n >= m->max)
    return NULL;
  if ((m->n + 1) * 4 > m->cap * 3 && grow(m) != 0)
    return NULL;
  s = find(m->slots, m->cap, key, len);
  s->key = myc__malloc(m->a, len + 1);
  if (s->key == NULL)
    return NULL;
  memcpy(s->key, key, len);
  s->key[len] = '\0';
  s->seq = 0;
  m->n++;
  return &s->seq;
}
