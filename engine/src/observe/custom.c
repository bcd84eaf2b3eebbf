/* custom.c -- the metrics services declare (custom.h).  Families and
 * series are created under one lock, rarely (a series on the first use of
 * its label values by an instance); updates write the cells without it,
 * each cell written only by the worker of its service. */
#include "observe/custom.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  myc_service *svc;
  char *values; /* NUL-ended values, 'len' bytes in all */
  size_t len;
  double *cell;
} series;

typedef struct {
  myc_service *svc;
  double *cell;
  uint64_t updates; /* updates sent here (under the lock) */
} overflow_series;

struct myc__family {
  int kind;
  char *name, *help;
  char *labels; /* NUL-ended names */
  size_t labels_len;
  uint32_t nlabels;
  double buckets[MYC_METRIC_BUCKETS];
  uint32_t nbuckets;
  uint32_t max_series, nseries;
  series *series; /* max_series of them */
  overflow_series *over;
  uint32_t nover, capover;
};

static const char *KINDS[] = {"", "counter", "gauge", "histogram"};

static size_t cell_size(const myc__family *f) {
  return (f->kind == MYC_METRIC_HISTOGRAM ? f->nbuckets + 2 : 1) *
         sizeof(double);
}

int myc__custom_init(myc__custom *c) {
  memset(c, 0, sizeof *c);
  return uv_mutex_init(&c->lock) == 0 ? 0 : MYC_ENOMEM;
}

static void family_free(myc__family *f, const myc__alloc *a) {
  uint32_t i;
  for (i = 0; i < f->nseries; i++) {
    myc__free(a, f->series[i].values, f->series[i].len);
    myc__free(a, f->series[i].cell, cell_size(f));
  }
  for (i = 0; i < f->nover; i++)
    myc__free(a, f->over[i].cell, cell_size(f));
  myc__free(a, f->over, f->capover * sizeof *f->over);
  myc__free(a, f->series, f->max_series * sizeof *f->series);
  myc__strfree(a, f->name);
  myc__strfree(a, f->help);
  myc__free(a, f->labels, f->labels_len);
  myc__free(a, f, sizeof *f);
}

void myc__custom_free(myc__custom *c, const myc__alloc *a) {
  uint32_t i;
  for (i = 0; i < c->n; i++)
    family_free(c->fam[i], a);
  myc__free(a, c->fam, c->cap * sizeof *c->fam);
  uv_mutex_destroy(&c->lock);
}

/* Nonzero when 'f' was declared as asked. */
static int same(const myc__family *f, int kind, const char *help,
                const char *labels, size_t labels_len, const double *buckets,
                uint32_t nbuckets) {
  return f->kind == kind && strcmp(f->help, help) == 0 &&
         f->labels_len == labels_len &&
         memcmp(f->labels, labels, labels_len) == 0 &&
         (kind != MYC_METRIC_HISTOGRAM ||
          (f->nbuckets == nbuckets &&
           memcmp(f->buckets, buckets, nbuckets * sizeof *buckets) == 0));
}

static myc__family *family_new(const myc__alloc *a, int kind,
                               const char *name, const char *help,
                               const char *labels, size_t labels_len,
                               uint32_t nlabels, const double *buckets,
                               uint32_t nbuckets, uint32_t max_series) {
  myc__family *f = myc__calloc(a, sizeof *f);
  if (f == NULL)
    return NULL;
  f->kind = kind;
  f->nlabels = nlabels;
  f->labels_len = labels_len;
  f->nbuckets = nbuckets;
  f->max_series = max_series;
  if (nbuckets > 0)
    memcpy(f->buckets, buckets, nbuckets * sizeof *buckets);
  f->name = myc__strdup(a, name);
  f->help = myc__strdup(a, help);
  f->labels = myc__malloc(a, labels_len ? labels_len : 1);
  f->series = myc__calloc(a, max_series * sizeof *f->series);
  if (f->name == NULL || f->help == NULL || f->labels == NULL ||
      f->series == NULL) {
    family_free(f, a);
    return NULL;
  }
  memcpy(f->labels, labels, labels_len);
  return f;
}

int myc__custom_family(myc__custom *c, const myc__alloc *a, int kind,
                       const char *name, const char *help,
                       const char *labels, size_t labels_len,
                       uint32_t nlabels, const double *buckets,
                       uint32_t nbuckets, uint32_t max_series, char *err,
                       size_t errlen) {
  myc__family *f;
  uint32_t i;
  int rc = MYC_ENOMEM;
  if (kind < MYC_METRIC_COUNTER || kind > MYC_METRIC_HISTOGRAM ||
      nlabels > MYC_METRIC_LABELS || nbuckets > MYC_METRIC_BUCKETS ||
      max_series < 1 || max_series > MYC_METRIC_SERIES) {
    snprintf(err, errlen, "metric '%s': bad declaration", name);
    return MYC_EINVAL;
  }
  uv_mutex_lock(&c->lock);
  for (i = 0; i < c->n; i++) {
    f = c->fam[i];
    if (strcmp(f->name, name) != 0)
      continue;
    if (same(f, kind, help, labels, labels_len, buckets, nbuckets)) {
      uv_mutex_unlock(&c->lock);
      return (int)i;
    }
    snprintf(err, errlen, "metric '%s' is already declared as a %s with "
             "other help, labels or buckets (one name, one declaration in "
             "every service)", name, KINDS[f->kind]);
    uv_mutex_unlock(&c->lock);
    return MYC_EINVAL;
  }
  if (c->n == MYC_METRIC_FAMILIES) {
    snprintf(err, errlen, "metric '%s': the engine has %d metrics already",
             name, MYC_METRIC_FAMILIES);
    uv_mutex_unlock(&c->lock);
    return MYC_ELIMIT;
  }
  if (c->n == c->cap) {
    uint32_t cap = c->cap ? 2 * c->cap : 16;
    myc__family **p = myc__realloc(a, c->fam, c->cap * sizeof *p,
                                   cap * sizeof *p);
    if (p == NULL)
      goto out;
    c->fam = p;
    c->cap = cap;
  }
  f = family_new(a, kind, name, help, labels, labels_len, nlabels, buckets,
                 nbuckets, max_series);
  if (f != NULL) {
    c->fam[c->n] = f;
    rc = (int)c->n++;
  }
out:
  if (rc < 0)
    snprintf(err, errlen, "metric '%s': out of memory", name);
  uv_mutex_unlock(&c->lock);
  return rc;
}

/* The overflow cell of 's' in 'f', made on first use.  Under the lock. */
static double *overflow_cell(myc__family *f, const myc__alloc *a,
                             myc_service *s) {
  uint32_t i;
  for (i = 0; i < f->nover; i++)
    if (f->over[i].svc == s) {
      f->over[i].updates++;
      return f->over[i].cell;
    }
  if (f->nover == f->capover) {
    uint32_t cap = f->capover ? 2 * f->capover : 4;
    overflow_series *p = myc__realloc(a, f->over, f->capover * sizeof *p,
                                      cap * sizeof *p);
    if (p == NULL)
      return NULL;
    f->over = p;
    f->capover = cap;
  }
  f->over[f->nover].cell = myc__calloc(a, cell_size(f));
  if (f->over[f->nover].cell == NULL)
    return NULL;
  f->over[f->nover].svc = s;
  f->over[f->nover].updates = 1;
  return f->over[f->nover++].cell;
}

double *myc__custom_cell(myc__custom *c, const myc__alloc *a, uint32_t id,
                         myc_service *s, const char *values, size_t len,
                         int *overflow) {
  double *cell = NULL;
  myc__family *f;
  series *se;
  uint32_t i;
  *overflow = 0;
  uv_mutex_lock(&c->lock);
  if (id >= c->n)
    goto out;
  f = c->fam[id];
  for (i = 0; i < f->nseries; i++) {
    se = &f->series[i];
    if (se->svc == s && se->len == len && memcmp(se->values, values, len) == 0) {
      cell = se->cell;
      goto out;
    }
  }
  if (f->nseries == f->max_series) {
    *overflow = 1;
    cell = overflow_cell(f, a, s);
    goto out;
  }
  se = &f->series[f->nseries];
  se->values = myc__malloc(a, len ? len : 1);
  se->cell = myc__calloc(a, cell_size(f));
  if (se->values == NULL || se->cell == NULL) {
    myc__free(a, se->values, len ? len : 1);
    myc__free(a, se->cell, cell_size(f));
    se->values = NULL;
    se->cell = NULL;
    goto out;
  }
  memcpy(se->values, values, len);
  se->len = len;
  se->svc = s;
  cell = se->cell;
  f->nseries++;
out:
  uv_mutex_unlock(&c->lock);
  return cell;
}

/* "service=...,label=value,...": 'values' NULL for the overflow series,
 * whose every label says "__overflow__" (a value services may not use). */
static void labels_text(myc__text *t, const myc__family *f,
                        const myc_service *s, const char *values) {
  const char *name = f->labels;
  uint32_t i;
  myc__text_printf(t, "service=\"");
  myc__text_label(t, s->name, s->name_len);
  myc__text_printf(t, "\"");
  for (i = 0; i < f->nlabels; i++) {
    myc__text_printf(t, ",%s=\"", name);
    if (values != NULL) {
      myc__text_label(t, values, strlen(values));
      values += strlen(values) + 1;
    } else {
      myc__text_printf(t, "__overflow__");
    }
    myc__text_printf(t, "\"");
    name += strlen(name) + 1;
  }
}

/* Reads a cell the service's worker writes from Lua (plain aligned 8-byte
 * stores, which x86-64 and AArch64 never tear): one atomic load of its
 * bits, possibly a moment old. */
static double read_cell(const double *p) {
  uint64_t bits = __atomic_load_n((const uint64_t *)(const void *)p,
                                  __ATOMIC_RELAXED);
  double v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

static void series_text(myc__text *t, const myc__family *f,
                        const myc_service *s, const char *values,
                        const double *cell) {
  double cum = 0;
  uint32_t i;
  if (f->kind != MYC_METRIC_HISTOGRAM) {
    myc__text_printf(t, "%s{", f->name);
    labels_text(t, f, s, values);
    myc__text_printf(t, "} %.17g\n", read_cell(cell));
    return;
  }
  for (i = 0; i <= f->nbuckets; i++) {
    cum += read_cell(&cell[i]);
    myc__text_printf(t, "%s_bucket{", f->name);
    labels_text(t, f, s, values);
    if (i < f->nbuckets)
      myc__text_printf(t, ",le=\"%.17g\"} %.17g\n", f->buckets[i], cum);
    else
      myc__text_printf(t, ",le=\"+Inf\"} %.17g\n", cum);
  }
  myc__text_printf(t, "%s_sum{", f->name);
  labels_text(t, f, s, values);
  myc__text_printf(t, "} %.17g\n%s_count{", read_cell(&cell[f->nbuckets + 1]),
                   f->name);
  labels_text(t, f, s, values);
  myc__text_printf(t, "} %.17g\n", cum);
}

void myc__custom_render(myc__custom *c, myc__text *t) {
  uint32_t i, k;
  uv_mutex_lock(&c->lock);
  for (i = 0; i < c->n; i++) {
    const myc__family *f = c->fam[i];
    myc__text_printf(t, "# HELP %s ", f->name);
    myc__text_help(t, f->help);
    myc__text_printf(t, "\n# TYPE %s %s\n", f->name, KINDS[f->kind]);
    for (k = 0; k < f->nseries; k++)
      series_text(t, f, f->series[k].svc, f->series[k].values,
                  f->series[k].cell);
    for (k = 0; k < f->nover; k++)
      series_text(t, f, f->over[k].svc, NULL, f->over[k].cell);
  }
  myc__text_printf(t, "# HELP mycelium_metric_overflow_total Updates of a "
                   "custom metric sent to its overflow series (label values "
                   "past its bound of series).\n"
                   "# TYPE mycelium_metric_overflow_total counter\n");
  for (i = 0; i < c->n; i++)
    for (k = 0; k < c->fam[i]->nover; k++) {
      const overflow_series *o = &c->fam[i]->over[k];
      myc__text_printf(t, "mycelium_metric_overflow_total{service=\"");
      myc__text_label(t, o->svc->name, o->svc->name_len);
      myc__text_printf(t, "\",metric=\"%s\"} %" PRIu64 "\n", c->fam[i]->name,
                       o->updates);
    }
  uv_mutex_unlock(&c->lock);
}
