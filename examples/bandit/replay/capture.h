/* capture.h -- a recorded subscription: line 1 is the node's reply to
 * eth_subscribe, every later line one notification exactly as the node
 * sent it.  Loaded once and pre-encoded as server WebSocket frames laid
 * end to end, so streaming is a copy of a byte range. */
#ifndef REPLAY_CAPTURE_H
#define REPLAY_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char sub_id[80]; /* the subscription id notifications carry */
  size_t n;        /* notifications */
  char *frames;    /* every notification as a text frame, in order */
  size_t *offset;  /* n + 1 offsets into 'frames' */
  uint64_t *block; /* block number of each (the previous one's if none) */
  size_t bytes;    /* payload bytes, without frame headers */
} capture;

/* Loads 'path'.  'sub_id' (or NULL to keep the capture's) replaces the
 * capture's subscription id in every notification that carries it.
 * Returns 0, or -1 with the reason in 'err'. */
int capture_load(capture *c, const char *path, const char *sub_id, char *err,
                 size_t errlen);

void capture_free(capture *c);

#endif
