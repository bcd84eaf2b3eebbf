/* stage_test.c -- what a worker holds for another worker's services until
 * the end of its turn: messages for several services interleaved (a
 * fan-out) count in their targets' 'incoming' in runs, the transit bound
 * holds for each of them all the same, and the hand-over keeps every
 * service's order.  A request or reply hands what is staged for a
 * sleeping worker over at once (myc__worker_hurry), in order, and only
 * then. */
#include "test.h"

#include "runtime/worker.h"

#include <unistd.h>

static myc__alloc heap = {myc__default_alloc, NULL};

typedef struct {
  myc__clock clock;
  myc__sched sched;
  myc__worker workers[2];
  myc__task tasks[2]; /* both on worker 1 */
} rig;

static void rig_init(rig *r, uint32_t capacity) {
  myc_mailbox_config mb = {capacity, MYC_POLICY_DROP_NEWEST, 0.8, 0, 0};
  int i;
  memset(r, 0, sizeof *r);
  myc__clock_init(&r->clock, 0);
  r->sched.alloc = &heap;
  r->sched.clock = &r->clock;
  r->sched.manual = 1; /* no loop threads: this thread turns both */
  r->sched.workers = r->workers;
  r->sched.nworkers_max = 2;
  for (i = 0; i < 2; i++) {
    CHECK_EQ(myc__worker_init(&r->workers[i], &r->sched, (uint32_t)i), 0);
    r->sched.nworkers++;
  }
  for (i = 0; i < 2; i++) {
    CHECK_EQ(myc__mailbox_init(&r->tasks[i].mb, &heap, &mb), 0);
    r->tasks[i].worker = &r->workers[1];
  }
}

static void rig_free(rig *r) {
  myc_buf *out[64];
  uint32_t n;
  int i;
  for (i = 0; i < 2; i++) {
    while ((n = myc__mailbox_pop(&r->tasks[i].mb, out, 64)) > 0) {
      uint32_t k;
      for (k = 0; k < n; k++)
        myc__buf_release(&r->workers[0].pool, &heap, out[k]);
      myc__mailbox_done(&r->tasks[i].mb, n, 0);
    }
    myc__mailbox_destroy(&r->tasks[i].mb, &heap);
  }
  for (i = 0; i < 2; i++)
    myc__worker_destroy(&r->workers[i]);
}

static myc_buf *numbered(rig *r, uint64_t seq) {
  myc_buf *b = myc__buf_alloc(&r->workers[0].pool, &heap, 64);
  b->hdr.payload_len = 0;
  b->hdr.seq = seq;
  return b;
}

static uint32_t incoming(const myc__task *t) {
  return atomic_load(&t->mb.incoming);
}

static void interleaved_services_count_in_runs(void) {
  rig r;
  myc__worker *w = &r.workers[0];
  myc_buf *out[300];
  uint32_t i, n;
  int k;
  rig_init(&r, 1000);
  for (i = 0; i < 300; i++)
    for (k = 0; k < 2; k++)
      CHECK_EQ(myc__worker_stage(w, &r.tasks[k], numbered(&r, i)), 0);
  /* One full run of each counted, not a count per switch (which would
   * show 300 and 299 here). */
  CHECK_EQ(incoming(&r.tasks[0]), MYC_STAGE_RUN);
  CHECK_EQ(incoming(&r.tasks[1]), MYC_STAGE_RUN);
  myc__worker_flush(w);
  CHECK_EQ(incoming(&r.tasks[0]), 300);
  CHECK_EQ(incoming(&r.tasks[1]), 300);
  myc__worker_drain_inbox(&r.workers[1]);
  for (k = 0; k < 2; k++) {
    CHECK_EQ(incoming(&r.tasks[k]), 0);
    CHECK_EQ(atomic_load(&r.tasks[k].mb.incoming_bytes), 0);
    CHECK_EQ(myc__mailbox_depth(&r.tasks[k].mb), 300);
    n = myc__mailbox_pop(&r.tasks[k].mb, out, 300);
    CHECK_EQ(n, 300);
    for (i = 0; i < n; i++) {
      CHECK_EQ(out[i]->hdr.seq, i);
      myc__buf_release(&w->pool, &heap, out[i]);
    }
    myc__mailbox_done(&r.tasks[k].mb, n, 0);
  }
  rig_free(&r);
}

/* The transit bound (two mailboxes' worth) counts the run not counted
 * yet: with the services interleaved, each gets exactly its bound, and
 * the rest is refused and counted. */
static void interleaved_services_keep_the_transit_bound(void) {
  rig r;
  myc__worker *w = &r.workers[0];
  uint32_t i, sent[2] = {0, 0};
  int k;
  rig_init(&r, 10);
  for (i = 0; i < 30; i++)
    for (k = 0; k < 2; k++) {
      myc_buf *b = numbered(&r, i);
      if (myc__worker_stage(w, &r.tasks[k], b) == 0)
        sent[k]++;
      else
        myc__buf_release(&w->pool, &heap, b);
    }
  for (k = 0; k < 2; k++) {
    CHECK_EQ(sent[k], 20);
    CHECK_EQ(atomic_load(&r.tasks[k].mb.dropped[MYC_DROP_NEWEST]), 10);
  }
  myc__worker_flush(w);
  CHECK_EQ(incoming(&r.tasks[0]), 20);
  myc__worker_drain_inbox(&r.workers[1]);
  /* The mailbox takes its capacity; the rest is dropped on arrival. */
  for (k = 0; k < 2; k++) {
    CHECK_EQ(incoming(&r.tasks[k]), 0);
    CHECK_EQ(myc__mailbox_depth(&r.tasks[k].mb), 10);
    CHECK_EQ(atomic_load(&r.tasks[k].mb.dropped[MYC_DROP_NEWEST]), 20);
  }
  rig_free(&r);
}

/* Early hand-overs go only to a worker whose inbox is idle, take
 * everything staged for it in order, wake it (its descriptor readable)
 * and flag the items urgent; once handed over, the next one waits for
 * the end of the turn again. */
static void hurry_hands_over_to_a_sleeping_worker_only(void) {
  rig r;
  myc__worker *w = &r.workers[0], *to = &r.workers[1];
  myc_buf *out[8];
  uint64_t count = 0;
  uint32_t i, n;
  rig_init(&r, 100);
  r.sched.manual = 0; /* hurry and wake as threaded workers do */
  for (i = 0; i < 3; i++)
    CHECK_EQ(myc__worker_stage(w, &r.tasks[0], numbered(&r, i)), 0);
  atomic_store(&to->inbox.idle, 0); /* busy: it takes them itself */
  myc__worker_hurry(w);
  CHECK_EQ(w->staged, 3);
  CHECK_EQ(atomic_load(&to->inbox.nonempty), 0);
  CHECK_EQ(atomic_load(&to->inbox.urgent), 0);
  CHECK(read(to->wake_fd, &count, sizeof count) < 0);
  atomic_store(&to->inbox.idle, 1); /* asleep */
  myc__worker_hurry(w);
  CHECK_EQ(w->staged, 0);
  CHECK_EQ(incoming(&r.tasks[0]), 3);
  CHECK_EQ(atomic_load(&to->inbox.nonempty), 1);
  CHECK_EQ(atomic_load(&to->inbox.urgent), 1);
  CHECK_EQ(read(to->wake_fd, &count, sizeof count), (ssize_t)sizeof count);
  CHECK_EQ(count, 1);
  /* The hand-over woke it: the next waits for the flush. */
  CHECK_EQ(myc__worker_stage(w, &r.tasks[0], numbered(&r, 3)), 0);
  myc__worker_hurry(w);
  CHECK_EQ(w->staged, 1);
  /* Asleep again within the same turn: still one early hand-over per
   * turn. */
  atomic_store(&to->inbox.idle, 1);
  myc__worker_hurry(w);
  CHECK_EQ(w->staged, 1);
  myc__worker_flush(w);
  /* The next turn may hurry again. */
  CHECK_EQ(myc__worker_stage(w, &r.tasks[0], numbered(&r, 4)), 0);
  atomic_store(&to->inbox.idle, 1);
  myc__worker_hurry(w);
  CHECK_EQ(w->staged, 0);
  myc__worker_drain_inbox(to);
  CHECK_EQ(incoming(&r.tasks[0]), 0);
  n = myc__mailbox_pop(&r.tasks[0].mb, out, 8);
  CHECK_EQ(n, 5);
  for (i = 0; i < n; i++) {
    CHECK_EQ(out[i]->hdr.seq, i);
    myc__buf_release(&w->pool, &heap, out[i]);
  }
  myc__mailbox_done(&r.tasks[0].mb, n, 0);
  r.sched.manual = 1;
  rig_free(&r);
}

int main(void) {
  static const test_case cases[] = {
      {"interleaved_services_count_in_runs",
       interleaved_services_count_in_runs},
      {"interleaved_services_keep_the_transit_bound",
       interleaved_services_keep_the_transit_bound},
      {"hurry_hands_over_to_a_sleeping_worker_only",
       hurry_hands_over_to_a_sleeping_worker_only},
      {NULL, NULL}};
  return run_tests(cases);
}
