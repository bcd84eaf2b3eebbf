/* inbox_test.c -- hand-over to a worker: messages in order, jobs on
 * their own queue, one wake-up per hand-over burst, the idle flag. */
#include "test.h"

#include "runtime/inbox.h"

#include <uv.h>

static myc__alloc heap = {myc__default_alloc, NULL};

static int ran, cancelled;
static void note(myc__job *j, int run) {
  (void)j;
  if (run)
    ran++;
  else
    cancelled++;
}

static void messages_and_jobs_travel_apart(void) {
  myc__inbox ib;
  myc__inbox_batch b;
  myc__handoff h[3];
  myc__job j1 = {NULL, note}, j2 = {NULL, note};
  myc_buf bufs[3];
  int i;
  CHECK_EQ(myc__inbox_init(&ib, &heap), 0);
  for (i = 0; i < 3; i++) {
    h[i].task = NULL;
    h[i].buf = &bufs[i];
    h[i].len = 0;
  }
  CHECK_EQ(myc__inbox_put(&ib, h, 2), 1); /* the first wakes the owner */
  CHECK_EQ(myc__inbox_post(&ib, &j1), 0); /* already woken */
  CHECK_EQ(myc__inbox_put(&ib, h + 2, 1), 0);
  CHECK(atomic_load(&ib.nonempty));
  myc__inbox_take(&ib, &b);
  CHECK_EQ(b.n, 3);
  CHECK(b.items[0].buf == &bufs[0] && b.items[2].buf == &bufs[2]);
  CHECK(b.jobs == &j1 && j1.next == NULL);
  CHECK(!atomic_load(&ib.nonempty));
  myc__jobs_run(b.jobs, 1);
  CHECK_EQ(ran, 1);
  myc__inbox_done(&ib, &b);
  /* Taken: the next hand-over wakes again; a job alone does too. */
  CHECK_EQ(myc__inbox_post(&ib, &j2), 1);
  myc__inbox_take(&ib, &b);
  CHECK_EQ(b.n, 0);
  myc__jobs_run(b.jobs, 0);
  CHECK_EQ(cancelled, 1);
  myc__inbox_done(&ib, &b);
  myc__inbox_destroy(&ib);
}

static void idle_only_while_nothing_is_queued(void) {
  myc__inbox ib;
  myc__inbox_batch b;
  myc__job j = {NULL, note};
  CHECK_EQ(myc__inbox_init(&ib, &heap), 0);
  myc__inbox_set_idle(&ib, 1);
  CHECK(atomic_load(&ib.idle));
  myc__inbox_post(&ib, &j); /* any hand-over clears it */
  CHECK(!atomic_load(&ib.idle));
  myc__inbox_set_idle(&ib, 1); /* a job still queued: not idle */
  CHECK(!atomic_load(&ib.idle));
  myc__inbox_take(&ib, &b);
  myc__inbox_done(&ib, &b);
  myc__inbox_set_idle(&ib, 0); /* the owner has work of its own */
  CHECK(!atomic_load(&ib.idle));
  myc__inbox_set_idle(&ib, 1);
  CHECK(atomic_load(&ib.idle));
  myc__inbox_destroy(&ib);
}

/* Producers on other threads lose nothing and keep their own order. */
#define PRODUCERS 4
#define PER_PRODUCER 20000
static myc__inbox shared;
static myc_buf tokens[PRODUCERS];

static void produce(void *arg) {
  myc__handoff h;
  uintptr_t p = (uintptr_t)arg, i;
  for (i = 0; i < PER_PRODUCER; i++) {
    h.task = (struct myc__task *)(i + 1); /* the sequence number */
    h.buf = &tokens[p];
    while (myc__inbox_put(&shared, &h, 1) < 0)
      ;
  }
}

static void concurrent_producers_keep_their_order(void) {
  uv_thread_t t[PRODUCERS];
  uintptr_t next[PRODUCERS] = {0}, got = 0, p;
  int bad = 0;
  CHECK_EQ(myc__inbox_init(&shared, &heap), 0);
  for (p = 0; p < PRODUCERS; p++)
    CHECK_EQ(uv_thread_create(&t[p], produce, (void *)p), 0);
  while (got < PRODUCERS * PER_PRODUCER) {
    myc__inbox_batch b;
    uint32_t i;
    myc__inbox_take(&shared, &b);
    for (i = 0; i < b.n; i++) {
      uintptr_t who = (uintptr_t)(b.items[i].buf - tokens);
      uintptr_t seq = (uintptr_t)b.items[i].task;
      bad += seq != next[who] + 1;
      next[who] = seq;
    }
    got += b.n;
    myc__inbox_done(&shared, &b);
  }
  for (p = 0; p < PRODUCERS; p++)
    uv_thread_join(&t[p]);
  CHECK_EQ(bad, 0);
  myc__inbox_destroy(&shared);
}

/* A sender's vector handed to an empty inbox is taken as it is (no copy
 * of its items), and the sender gets the vector the owner gave back;
 * into an inbox that already holds items it is appended, in order. */
static void an_empty_inbox_takes_the_senders_vector(void) {
  myc__inbox ib;
  myc__inbox_batch b;
  myc__handoff *v = myc__malloc(&heap, 4 * sizeof *v), *first = v;
  myc_buf bufs[6];
  uint32_t cap = 4, i;
  CHECK_EQ(myc__inbox_init(&ib, &heap), 0);
  for (i = 0; i < 3; i++) {
    v[i].task = NULL;
    v[i].buf = &bufs[i];
    v[i].len = i;
  }
  CHECK_EQ(myc__inbox_give(&ib, &v, &cap, 3), 1);
  CHECK(v == NULL && cap == 0); /* the inbox had none yet */
  myc__inbox_take(&ib, &b);
  CHECK(b.items == first); /* the very vector, not a copy */
  CHECK_EQ(b.n, 3);
  CHECK(b.items[2].buf == &bufs[2] && b.items[2].len == 2);
  myc__inbox_done(&ib, &b);
  /* The next sender gets that vector back once the inbox swapped again. */
  v = myc__malloc(&heap, 8 * sizeof *v);
  cap = 8;
  v[0].task = NULL;
  v[0].buf = &bufs[3];
  v[0].len = 3;
  CHECK_EQ(myc__inbox_give(&ib, &v, &cap, 1), 1);
  CHECK(v != first); /* the inbox's own (empty) vector */
  /* Not empty now: appended by copy, the sender keeps its vector. */
  {
    myc__handoff *mine = v;
    uint32_t mine_cap = cap;
    if (cap < 2) {
      mine = v = myc__realloc(&heap, v, cap * sizeof *v, 2 * sizeof *v);
      mine_cap = cap = 2;
    }
    v[0].task = v[1].task = NULL;
    v[0].buf = &bufs[4];
    v[1].buf = &bufs[5];
    v[0].len = v[1].len = 0;
    CHECK_EQ(myc__inbox_give(&ib, &v, &cap, 2), 0); /* already woken */
    CHECK(v == mine && cap == mine_cap);
  }
  myc__inbox_take(&ib, &b);
  CHECK_EQ(b.n, 3);
  CHECK(b.items[0].buf == &bufs[3] && b.items[1].buf == &bufs[4] &&
        b.items[2].buf == &bufs[5]);
  myc__inbox_done(&ib, &b);
  myc__free(&heap, v, cap * sizeof *v);
  myc__inbox_destroy(&ib);
}

int main(void) {
  static const test_case cases[] = {
      {"messages_and_jobs_travel_apart", messages_and_jobs_travel_apart},
      {"idle_only_while_nothing_is_queued", idle_only_while_nothing_is_queued},
      {"concurrent_producers_keep_their_order",
       concurrent_producers_keep_their_order},
      {"an_empty_inbox_takes_the_senders_vector",
       an_empty_inbox_takes_the_senders_vector},
      {NULL, NULL}};
  return run_tests(cases);
}
