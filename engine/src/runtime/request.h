/* request.h -- answering requests: finding the service that asked (the
 * request's source) and handing it the reply, including the one that
 * says a responder crashed on the request. */
#ifndef MYC_REQUEST_H
#define MYC_REQUEST_H

#include "runtime/service.h"

/* Replies from 's' to request 'req' (a frame with MYC_FRAME_REQUEST that
 * 's' received), 'failed' when the payload says why it failed.  Returns
 * 0, MYC_EINVAL when 'req' is not a request, MYC_ENOENT when the service
 * that asked is not in this engine (any more), or what
 * myc__emit_reply returns.  Worker thread of 's'. */
int myc__request_reply(myc_service *s, myc_buf *req, int kind, uint16_t type,
                       const void *data, size_t len, int failed);

/* Tells the service that sent request 'req' that 's' failed on it, with
 * 'why': the requester's ctx:request returns nil, "failed" at once.
 * Nothing happens for a message that is not a request.  Worker thread of
 * 's'. */
void myc__request_fail(myc_service *s, myc_buf *req, const char *why);

/* Tells the askers of every request waiting for 's' (in its batch and its
 * mailbox) that it failed, with 'why': 's' will not run again unless
 * reloaded.  The messages stay queued (a reload handles them; its late
 * replies are dropped).  Worker thread of 's'. */
void myc__request_fail_queued(myc_service *s, const char *why);

/* Counts the requests the current instance of 's' still waited for as
 * dropped (it is ending or being replaced).  Worker thread of 's'. */
void myc__request_drop_pending(myc_service *s);

#endif
