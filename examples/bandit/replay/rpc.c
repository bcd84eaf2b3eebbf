/* rpc.c -- answering JSON-RPC requests (see rpc.h).  Errors use the codes
 * of the JSON-RPC 2.0 specification and geth's -32000 for a revert. */
#include "rpc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *error_reply(json_t *id, int code, const char *msg) {
  return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id",
                   id ? id : json_null(), "error", "code", code, "message",
                   msg);
}

static json_t *result_reply(json_t *id, json_t *result) {
  return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result",
                   result);
}

static json_t *eth_call(json_t *id, json_t *params, const chain *ch) {
  json_t *tx = json_array_get(params, 0);
  const char *to = json_string_value(json_object_get(tx, "to"));
  const char *data = json_string_value(json_object_get(tx, "data"));
  char *out = NULL;
  json_t *r;
  if (data == NULL)
    data = json_string_value(json_object_get(tx, "input"));
  if (!json_is_object(tx) || to == NULL)
    return error_reply(id, -32602,
                       "invalid params: eth_call needs "
                       "[{\"to\": ..., \"data\": ...}, block]");
  if (chain_call(ch, to, data, &out) != 0)
    return error_reply(id, -32000, "execution reverted");
  r = result_reply(id, json_string(out));
  free(out);
  return r;
}

static json_t *subscribe(json_t *id, rpc_call *rc) {
  char msg[120];
  if (!rc->websocket)
    return error_reply(id, -32601, "notifications not supported");
  if (rc->active_sub != NULL || rc->subscribed) {
    snprintf(msg, sizeof msg,
             "this replay server streams one subscription "
             "per connection (%s is active)",
             rc->active_sub ? rc->active_sub : rc->new_sub);
    return error_reply(id, -32000, msg);
  }
  rc->subscribed = 1;
  return result_reply(id, json_string(rc->new_sub));
}

static json_t *unsubscribe(json_t *id, json_t *params, rpc_call *rc) {
  const char *sub = json_string_value(json_array_get(params, 0));
  int ok = sub && rc->active_sub && strcmp(sub, rc->active_sub) == 0;
  if (ok)
    rc->unsubscribed = 1;
  return result_reply(id, json_boolean(ok));
}

/* One request object; NULL for a notification (no id). */
static json_t *answer_one(rpc_call *rc, json_t *req) {
  json_t *id = json_object_get(req, "id");
  json_t *params = json_object_get(req, "params");
  const char *method = json_string_value(json_object_get(req, "method"));
  char msg[200], hex[24];
  if (!json_is_object(req) || method == NULL)
    return error_reply(id, -32600, "invalid request");
  if (id == NULL)
    return NULL;
  if (strcmp(method, "eth_call") == 0)
    return eth_call(id, params, rc->ch);
  if (strcmp(method, "eth_subscribe") == 0)
    return subscribe(id, rc);
  if (strcmp(method, "eth_unsubscribe") == 0)
    return unsubscribe(id, params, rc);
  if (strcmp(method, "eth_chainId") == 0)
    return result_reply(id, json_string("0x89")); /* Polygon PoS: 137 */
  if (strcmp(method, "eth_blockNumber") == 0) {
    snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)rc->head_block);
    return result_reply(id, json_string(hex));
  }
  snprintf(msg, sizeof msg,
           "the method %.100s does not exist/is not "
           "available",
           method);
  return error_reply(id, -32601, msg);
}

char *rpc_answer(rpc_call *rc, const char *text, size_t n) {
  json_error_t je;
  json_t *req = json_loadb(text, n, 0, &je), *reply, *v;
  char *out;
  size_t i;
  if (req == NULL) {
    reply = error_reply(NULL, -32700, "parse error");
  } else if (json_is_array(req)) {
    reply = json_array();
    json_array_foreach(req, i, v) {
      json_t *r = answer_one(rc, v);
      if (r != NULL)
        json_array_append_new(reply, r);
    }
    if (json_array_size(reply) == 0) {
      json_decref(reply);
      reply = NULL;
    }
  } else {
    reply = answer_one(rc, req);
  }
  json_decref(req);
  if (reply == NULL)
    return NULL;
  out = json_dumps(reply, JSON_COMPACT);
  json_decref(reply);
  return out;
}
