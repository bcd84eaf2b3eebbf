/* job.h -- work handed to another thread's loop: an intrusive node with
 * the function to run there.  A queue of jobs is the control channel of a
 * loop (a worker's, the monitor's), apart from its data: a job never
 * rides among messages.  The queue itself takes no lock; its owner holds
 * one around push and take.
 */
#ifndef MYC_JOB_H
#define MYC_JOB_H

#include <stddef.h>

typedef struct myc__job myc__job;
struct myc__job {
  myc__job *next;
  /* Runs on the target's thread with 'run' set, or, when the target is
   * gone (stopped or freed) first, on whichever thread cancels the queue
   * with 'run' 0: then it only releases what it holds. */
  void (*fn)(myc__job *j, int run);
};

typedef struct {
  myc__job *head, *tail;
} myc__jobs;

/* Appends 'j'.  Returns nonzero when the queue was empty. */
static inline int myc__jobs_push(myc__jobs *q, myc__job *j) {
  int was_empty = q->head == NULL;
  j->next = NULL;
  if (q->tail != NULL)
    q->tail->next = j;
  else
    q->head = j;
  q->tail = j;
  return was_empty;
}

/* Empties the queue and returns its jobs, oldest first. */
static inline myc__job *myc__jobs_take(myc__jobs *q) {
  myc__job *list = q->head;
  q->head = q->tail = NULL;
  return list;
}

/* Runs (or cancels, 'run' 0) every job of 'list' in order.  A job may
 * free itself. */
static inline void myc__jobs_run(myc__job *list, int run) {
  while (list != NULL) {
    myc__job *next = list->next;
    list->fn(list, run);
    list = next;
  }
}

#endif
