/* loader.c -- the loader thread (see loader.h): a queue of jobs under a
 * lock, run in order by one thread, started on first use.  A load stuck
 * in a C function that never returns keeps the thread, and the jobs
 * behind it wait (docs/SUPERVISION.md); anything in Lua is bounded by
 * the load budget.
 */
#include "supervise/loader.h"

#include "runtime/instance.h"

struct myc__loader {
  uv_thread_t thread;
  uv_mutex_t lock; /* guards everything below */
  uv_cond_t cond;
  myc__jobs jobs;
  int started, quit;
};

/* One job at a time, so that a stop is seen between two. */
static void loader_main(void *arg) {
  myc__loader *l = arg;
  for (;;) {
    myc__job *j;
    uv_mutex_lock(&l->lock);
    while (l->jobs.head == NULL && !l->quit)
      uv_cond_wait(&l->cond, &l->lock);
    j = l->quit ? NULL : l->jobs.head;
    if (j != NULL && (l->jobs.head = j->next) == NULL)
      l->jobs.tail = NULL;
    uv_mutex_unlock(&l->lock);
    if (j == NULL)
      return;
    j->fn(j, 1);
  }
}

/* The loader of 'sv', made on first use.  NULL when out of memory. */
static myc__loader *loader_of(myc__supervise *sv) {
  myc__loader *l;
  uv_mutex_lock(&sv->loader_lock);
  l = sv->loader;
  if (l == NULL && !sv->loader_stopped &&
      (l = myc__calloc(&sv->e->alloc, sizeof *l)) != NULL) {
    if (uv_mutex_init(&l->lock) != 0) {
      myc__free(&sv->e->alloc, l, sizeof *l);
      l = NULL;
    } else if (uv_cond_init(&l->cond) != 0) {
      uv_mutex_destroy(&l->lock);
      myc__free(&sv->e->alloc, l, sizeof *l);
      l = NULL;
    } else {
      sv->loader = l;
    }
  }
  uv_mutex_unlock(&sv->loader_lock);
  return l;
}

void myc__loader_post(myc__supervise *sv, myc__job *j) {
  myc__loader *l = loader_of(sv);
  int alive = 0;
  if (l != NULL) {
    uv_mutex_lock(&l->lock);
    if (!l->quit && !l->started &&
        uv_thread_create(&l->thread, loader_main, l) == 0)
      l->started = 1;
    alive = l->started && !l->quit;
    if (alive) {
      myc__jobs_push(&l->jobs, j);
      uv_cond_signal(&l->cond);
    }
    uv_mutex_unlock(&l->lock);
  }
  if (!alive)
    j->fn(j, 0);
}

void myc__loader_stop(myc__supervise *sv) {
  myc__loader *l;
  myc_engine *e = sv->e;
  uint32_t i;
  int started;
  uv_mutex_lock(&sv->loader_lock);
  sv->loader_stopped = 1;
  l = sv->loader;
  uv_mutex_unlock(&sv->loader_lock);
  if (l == NULL)
    return;
  uv_mutex_lock(&l->lock);
  started = l->started && !l->quit;
  l->quit = 1;
  uv_cond_signal(&l->cond);
  uv_mutex_unlock(&l->lock);
  if (!started)
    return;
  uv_mutex_lock(&e->services_lock);
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL)
      myc__instance_load_interrupt(e->services[i]);
  uv_mutex_unlock(&e->services_lock);
  uv_thread_join(&l->thread);
  myc__jobs_run(myc__jobs_take(&l->jobs), 0);
}

void myc__loader_free(myc__supervise *sv) {
  myc__loader *l = sv->loader;
  if (l == NULL)
    return;
  myc__loader_stop(sv);
  uv_cond_destroy(&l->cond);
  uv_mutex_destroy(&l->lock);
  myc__free(&sv->e->alloc, l, sizeof *l);
  sv->loader = NULL;
}
