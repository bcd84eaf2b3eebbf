/* request.c -- answering requests (see request.h).  The asker is named by
 * the request's source; the last one found is kept on the responder, as
 * a responder usually answers the same few services over and over and
 * the registry lookup takes a lock.  A removed service is freed only
 * after its worker's turn boundaries, so the kept pointer is good as long
 * as no service was removed since it was found (e->removals). */
#include "runtime/request.h"

#include "runtime/emit.h"
#include "runtime/engine.h"

#include <string.h>

static myc_service *asker(myc_service *s, myc_buf *req) {
  const char *name = myc__buf_source(req);
  uint8_t len = req->hdr.source_len;
  myc_service *to = s->asker;
  uint64_t gen = atomic_load_explicit(&s->eng->removals, memory_order_acquire);
  if (to != NULL && s->asker_gen == gen && to->name_len == len &&
      memcmp(to->name, name, len) == 0)
    return to;
  to = myc__engine_find(s->eng, name, len);
  s->asker = to;
  s->asker_gen = gen;
  return to;
}

int myc__request_reply(myc_service *s, myc_buf *req, int kind, uint16_t type,
                       const void *data, size_t len, int failed) {
  myc_service *to;
  if (!(req->hdr.flags & MYC_FRAME_REQUEST))
    return MYC_EINVAL;
  /* A request from another engine goes back over its link. */
  if (req->hdr.flags & MYC_FRAME_REMOTE)
    return s->eng->reply_remote == NULL
               ? MYC_ENOENT
               : s->eng->reply_remote(s->eng->reply_remote_ud, s, req, kind,
                                      type, data, len, failed);
  if ((to = asker(s, req)) == NULL)
    return MYC_ENOENT;
  return myc__emit_reply(s, to, s->eng->reply_topic, req, kind, type, data,
                         len, failed);
}

void myc__request_fail(myc_service *s, myc_buf *req, const char *why) {
  if (req->hdr.flags & MYC_FRAME_REQUEST)
    (void)myc__request_reply(s, req, MYC_KIND_RAW, 0, why, strlen(why), 1);
}

void myc__request_fail_queued(myc_service *s, const char *why) {
  uint32_t i, n = atomic_load_explicit(&s->task.mb.len, memory_order_relaxed);
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  for (i = s->batch_pos; i < s->view.batch_n; i++)
    myc__request_fail(s, s->batch[i], why);
  for (i = 0; i < n; i++)
    myc__request_fail(s, myc__mailbox_peek(&s->task.mb, i), why);
}

void myc__request_drop_pending(myc_service *s) {
  if (s->view.requests > 0)
    myc__counter_add(&s->n_requests_dropped, s->view.requests);
  s->view.requests = 0;
}
