/* rpc.h -- the JSON-RPC methods the replay server answers, the way a
 * geth/bor node does: eth_subscribe, eth_unsubscribe, eth_call (for the
 * pools and tokens it knows), eth_chainId, eth_blockNumber; anything else
 * is "method not found". */
#ifndef REPLAY_RPC_H
#define REPLAY_RPC_H

#include "chain.h"

#include <stdint.h>

typedef struct {
  const chain *ch;
  const char *new_sub;    /* id a new subscription gets */
  const char *active_sub; /* the connection's subscription, or NULL */
  int websocket;          /* subscriptions need a WebSocket */
  uint64_t head_block;    /* for eth_blockNumber */
  int subscribed;         /* out: a subscription was made */
  int unsubscribed;       /* out: the active one was cancelled */
} rpc_call;

/* Answers one request or batch of 'n' bytes.  Returns the reply as
 * malloc'd JSON text, or NULL when nothing is to be answered (only
 * notifications). */
char *rpc_answer(rpc_call *rc, const char *text, size_t n);

#endif
