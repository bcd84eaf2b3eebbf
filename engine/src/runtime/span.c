/* span.c -- spans of handled messages (see span.h).  The handlers' end
 * times are written by the dispatch loop into view.marks (the Lua host's
 * traced loop, or dispatch_c); a message's span runs from the end of the
 * one before it in the batch (or the batch's start) to its own end.
 */
#include "runtime/span.h"

#include "runtime/engine.h"

#include <string.h>

int myc__span_batch_begin(myc_service *s, uint32_t first, uint32_t n) {
  const myc__tracer *tr = s->eng->tracer;
  uint32_t i;
  for (i = first; i < n; i++)
    if (myc__span_sampled(tr, s->batch[i]->hdr.trace_id))
      break;
  if (i == n)
    return 0;
  if (s->span_marks == NULL) {
    s->span_marks = myc__calloc(&s->eng->alloc,
                                MYC_BATCH * sizeof *s->span_marks);
    if (s->span_marks == NULL) /* no span rather than no message */
      return 0;
  }
  s->span_t0 = myc__clock_now(&s->eng->clock);
  s->view.marks = s->span_marks;
  return 1;
}

static void name_copy(char *dst, uint8_t *len, const char *src, size_t n) {
  if (n > MYC_SPAN_NAME)
    n = MYC_SPAN_NAME;
  memcpy(dst, src, n);
  *len = (uint8_t)n;
}

/* Fills what every span of 's' has; the caller sets the ids and the
 * wait. */
static void fill(myc_service *s, myc__span *sp, int64_t start, int64_t end,
                 const char *error) {
  sp->start_ns = start;
  sp->end_ns = end > start ? end : start;
  sp->worker = s->task.worker->index;
  sp->failed = error != NULL;
  sp->error[0] = '\0';
  if (error != NULL) {
    /* The message, not its traceback. */
    size_t n = strcspn(error, "\n");
    if (n >= MYC_SPAN_ERROR)
      n = MYC_SPAN_ERROR - 1;
    memcpy(sp->error, error, n);
    sp->error[n] = '\0';
  }
  name_copy(sp->service, &sp->service_len, s->name, s->name_len);
}

static void record(myc_service *s, myc_buf *b, int64_t start,
                   int64_t end, const char *error) {
  const myc__tracer *tr = s->eng->tracer;
  uint32_t w = s->task.worker->index;
  myc__span *sp = tr->slot(tr->ud, w);
  if (sp == NULL)
    return;
  memcpy(sp->trace_id, b->hdr.trace_id, 16);
  memcpy(sp->span_id, b->hdr.span_id, 8);
  memcpy(sp->parent_id, b->hdr.parent_id, 8);
  fill(s, sp, start, end, error);
  /* A remote sender's clock is another machine's: no wait from it. */
  sp->remote = (b->hdr.flags & MYC_FRAME_REMOTE) != 0;
  sp->wait_ns = !sp->remote && start > (int64_t)b->hdr.ts_ns
                    ? start - (int64_t)b->hdr.ts_ns
                    : 0;
  name_copy(sp->topic, &sp->topic_len, myc__buf_topic(b), b->hdr.topic_len);
  name_copy(sp->source, &sp->source_len, myc__buf_source(b),
            b->hdr.source_len);
  tr->commit(tr->ud, w);
}

void myc__span_activation(myc_service *s, const char *what, int64_t start,
                          const char *error) {
  const myc__tracer *tr = s->eng->tracer;
  uint32_t w = s->task.worker->index;
  myc__span *sp;
  if (!myc__span_sampled(tr, s->act_trace) ||
      (sp = tr->slot(tr->ud, w)) == NULL)
    return;
  memcpy(sp->trace_id, s->act_trace, 16);
  memcpy(sp->span_id, s->act_span, 8);
  memset(sp->parent_id, 0, 8);
  fill(s, sp, start, myc__clock_now(&s->eng->clock), error);
  sp->remote = 0;
  sp->wait_ns = 0;
  name_copy(sp->topic, &sp->topic_len, what, strlen(what));
  name_copy(sp->source, &sp->source_len, s->name, s->name_len);
  tr->commit(tr->ud, w);
}

void myc__span_batch_end(myc_service *s, uint32_t first, uint32_t last,
                         const char *error) {
  const myc__tracer *tr = s->eng->tracer;
  int64_t start = s->span_t0, now = 0;
  uint32_t i;
  for (i = first; i <= last && i < s->view.batch_n; i++) {
    myc_buf *b = s->batch[i];
    int failed = error != NULL && i == last;
    int64_t end = s->span_marks[i];
    if (failed || end == 0)
      end = now ? now : (now = myc__clock_now(&s->eng->clock));
    if (myc__span_sampled(tr, b->hdr.trace_id))
      record(s, b, start, end, failed ? error : NULL);
    start = end;
  }
  memset(s->span_marks + first, 0,
         (s->view.batch_n - first) * sizeof *s->span_marks);
  s->view.marks = NULL;
}

void myc__span_free(myc_service *s) {
  if (s->span_marks != NULL)
    myc__free(&s->eng->alloc, s->span_marks,
              MYC_BATCH * sizeof *s->span_marks);
  s->span_marks = NULL;
}
