/* secure.c -- TLS on TCP links (see secure.h).
 *
 * Sessions run over the memory BIOs of net/tls.h: what the socket read
 * goes in, what OpenSSL wrote comes out and is sent by the link thread,
 * so no call here waits for the network.
 */
#include "link/secure.h"

#include "mycelium.h"

#include <stdio.h>
#include <string.h>

#ifdef MYC_WITH_NET

#include <errno.h>

#include "net/tls.h"

/* Plaintext gathered per record: the most one TLS record carries. */
#define RECORD 16384
/* A large buffer is encrypted in steps of this many bytes, the
 * ciphertext moved out after each, so OpenSSL's output BIO stays small. */
#define STEP (256u * 1024)

struct myc__secure_ctx {
  const myc__alloc *a;
  SSL_CTX *server, *client;
};

struct myc__secure {
  const myc__alloc *a;
  myc__tls t;
};

/* OpenSSL says "system lib" of a file it cannot open: say it here. */
static int unreadable(const char *path, const char *key, char *err,
                      size_t errlen) {
  FILE *f;
  if (path[0] == '\0')
    return 0;
  if ((f = fopen(path, "r")) != NULL) {
    fclose(f);
    return 0;
  }
  snprintf(err, errlen, "link.tls.%s '%s': cannot open: %s", key, path,
           strerror(errno));
  return 1;
}

int myc__secure_ctx_new(myc__secure_ctx **out, const myc__alloc *a,
                        const myc__link_config *c, int server, int client,
                        char *err, size_t errlen) {
  myc__secure_ctx *x;
  myc__tls_config tc;
  char why[512];
  *out = NULL;
  if (server && (c->tls_cert[0] == '\0' || c->tls_key[0] == '\0')) {
    snprintf(err, errlen, "a tls+tcp:// listener needs link.tls.cert and "
             "link.tls.key (this node's certificate and private key)");
    return MYC_EINVAL;
  }
  if (c->tls_verify_client && c->tls_ca[0] == '\0') {
    snprintf(err, errlen, "link.tls.verify_client needs link.tls.ca (the "
             "CA that signs the peers' certificates)");
    return MYC_EINVAL;
  }
  if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0')) {
    snprintf(err, errlen, "link.tls.cert and link.tls.key go together");
    return MYC_EINVAL;
  }
  if (unreadable(c->tls_cert, "cert", err, errlen) ||
      unreadable(c->tls_key, "key", err, errlen) ||
      unreadable(c->tls_ca, "ca", err, errlen))
    return MYC_EINVAL;
  x = myc__calloc(a, sizeof *x);
  if (x == NULL)
    return MYC_ENOMEM;
  x->a = a;
  memset(&tc, 0, sizeof tc);
  tc.ca_file = c->tls_ca[0] ? c->tls_ca : NULL;
  tc.cert_file = c->tls_cert[0] ? c->tls_cert : NULL;
  tc.key_file = c->tls_key[0] ? c->tls_key : NULL;
  tc.verify_client = c->tls_verify_client;
  if (server && (x->server = myc__tls_ctx_new(1, &tc, why, sizeof why)) == NULL)
    goto fail;
  if (client && (x->client = myc__tls_ctx_new(0, &tc, why, sizeof why)) == NULL)
    goto fail;
  *out = x;
  return 0;
fail:
  snprintf(err, errlen, "link.tls: %s", why);
  myc__secure_ctx_free(x);
  return MYC_EINVAL;
}

void myc__secure_ctx_free(myc__secure_ctx *x) {
  if (x == NULL)
    return;
  SSL_CTX_free(x->server);
  SSL_CTX_free(x->client);
  myc__free(x->a, x, sizeof *x);
}

myc__secure *myc__secure_new(myc__secure_ctx *x, int server, const char *host) {
  myc__secure *s = myc__calloc(x->a, sizeof *s);
  char err[256];
  if (s == NULL)
    return NULL;
  s->a = x->a;
  if (myc__tls_init(&s->t, server ? x->server : x->client, server, host) !=
          0 ||
      (!server && myc__tls_start(&s->t, err, sizeof err) != 0)) {
    myc__secure_free(s);
    return NULL;
  }
  return s;
}

void myc__secure_free(myc__secure *s) {
  if (s == NULL)
    return;
  myc__tls_free(&s->t);
  myc__free(s->a, s, sizeof *s);
}

int myc__secure_done(const myc__secure *s) { return s->t.done; }

const char *myc__secure_version(const myc__secure *s) {
  return SSL_get_version(s->t.ssl);
}

int myc__secure_open(myc__secure *s, const void *cipher, size_t n,
                     myc__secure_plain_cb cb, void *ud, int *opened,
                     char *err, size_t errlen) {
  return myc__tls_feed(&s->t, cipher, n, cb, ud, opened, err, errlen);
}

size_t myc__secure_pending(const myc__secure *s) {
  return myc__tls_pending(&s->t);
}

int myc__secure_take(myc__secure *s, const myc__alloc *a, uint8_t **out,
                     size_t *len, size_t *cap) {
  size_t n;
  while ((n = myc__tls_pending(&s->t)) > 0) {
    if (*len + n > *cap) {
      size_t ncap = *cap ? *cap : 4096;
      uint8_t *nv;
      while (ncap < *len + n)
        ncap *= 2;
      if ((nv = myc__realloc(a, *out, *cap, ncap)) == NULL)
        return MYC_ENOMEM;
      *out = nv;
      *cap = ncap;
    }
    *len += myc__tls_take(&s->t, *out + *len, *cap - *len);
  }
  return 0;
}

int myc__secure_seal(myc__secure *s, const myc__alloc *a, const uv_buf_t *iov,
                     uint32_t n, uint8_t **out, size_t *len, size_t *cap) {
  uint8_t stage[RECORD];
  size_t sl = 0;
  uint32_t i;
  /* What is waiting (a session ticket, say) goes first. */
  if (myc__secure_take(s, a, out, len, cap) != 0)
    return MYC_ENOMEM;
  for (i = 0; i < n; i++) {
    const uint8_t *b = (const uint8_t *)iov[i].base;
    size_t left = iov[i].len;
    while (left > 0) {
      size_t k;
      if (sl == 0 && left >= RECORD) {
        /* Large: straight from the buffer, records of the full size. */
        k = left < STEP ? left : STEP;
        if (myc__tls_write(&s->t, b, k) != 0)
          return MYC_ETLS;
        if (myc__secure_take(s, a, out, len, cap) != 0)
          return MYC_ENOMEM;
      } else {
        /* Small frames share records: one per frame would cost a
         * record's header, tag and cipher call each. */
        k = RECORD - sl < left ? RECORD - sl : left;
        memcpy(stage + sl, b, k);
        sl += k;
        if (sl == RECORD) {
          /* Moved out at once: OpenSSL's buffer grows by copying. */
          if (myc__tls_write(&s->t, stage, sl) != 0)
            return MYC_ETLS;
          if (myc__secure_take(s, a, out, len, cap) != 0)
            return MYC_ENOMEM;
          sl = 0;
        }
      }
      b += k;
      left -= k;
    }
  }
  if (sl > 0 && myc__tls_write(&s->t, stage, sl) != 0)
    return MYC_ETLS;
  return myc__secure_take(s, a, out, len, cap);
}

/* OpenSSL's words for the usual failures, and what they mean here. */
static const struct {
  const char *says;
  int server; /* -1: either side */
  const char *hint;
} HINTS[] = {
    {"alert unknown ca", -1,
     "the peer does not trust this node's certificate: its link.tls.ca "
     "must hold the CA that signed this node's link.tls.cert"},
    {"alert bad certificate", -1,
     "the peer refused this node's certificate: check link.tls.cert "
     "against the peer's link.tls.ca"},
    {"alert certificate unknown", -1,
     "the peer refused this node's certificate: check link.tls.cert "
     "against the peer's link.tls.ca"},
    {"alert certificate expired", -1,
     "the peer says this node's certificate has expired: renew "
     "link.tls.cert"},
    {"alert certificate required", 0,
     "the listener requires a client certificate (link.tls.verify_client "
     "there): give this node link.tls.cert and link.tls.key"},
    {"peer did not return a certificate", 1,
     "link.tls.verify_client requires a client certificate and the peer "
     "sent none: give it link.tls.cert and link.tls.key"},
    {"certificate has expired", -1,
     "the peer's certificate has expired: it must renew it"},
    {"self-signed certificate in certificate chain", -1,
     "the peer's certificate chains to a CA that is not in link.tls.ca "
     "(one of the same name, maybe, with another key)"},
    {"self-signed certificate", -1,
     "the peer's certificate is self-signed and not in link.tls.ca"},
    {"unable to get local issuer certificate", -1,
     "the peer's certificate is not signed by a CA in link.tls.ca"},
    {"IP address mismatch", 0,
     "the peer's certificate does not name the address dialled (its "
     "subjectAltName must hold IP:ADDRESS)"},
    {"hostname mismatch", 0,
     "the peer's certificate does not name the host dialled"},
    {"wrong version number", -1,
     "the peer does not speak TLS here: both sides must use tls+tcp://"},
    {"packet length too long", -1,
     "the peer does not speak TLS here: both sides must use tls+tcp://"},
    {"unsupported protocol", -1,
     "the peer offers no TLS version this node accepts (1.2 or later)"},
};

const char *myc__secure_hint(const char *why, int server) {
  size_t i;
  for (i = 0; i < sizeof HINTS / sizeof HINTS[0]; i++)
    if ((HINTS[i].server < 0 || HINTS[i].server == !!server) &&
        strstr(why, HINTS[i].says) != NULL)
      return HINTS[i].hint;
  return "";
}

#else /* no network layer: no TLS */

int myc__secure_ctx_new(myc__secure_ctx **out, const myc__alloc *a,
                        const myc__link_config *c, int server, int client,
                        char *err, size_t errlen) {
  *out = NULL;
  snprintf(err, errlen, "tls+tcp:// links need TLS, and this mycelium was "
           "built without it (-DMYC_WITH_NET=OFF)");
  return MYC_EINVAL;
}

void myc__secure_ctx_free(myc__secure_ctx *x) { (void)x; }

myc__secure *myc__secure_new(myc__secure_ctx *x, int server, const char *host) {
  return NULL;
}

void myc__secure_free(myc__secure *s) { (void)s; }

int myc__secure_done(const myc__secure *s) {
  return 0;
}

const char *myc__secure_version(const myc__secure *s) {
  return "";
}

int myc__secure_open(myc__secure *s, const void *cipher, size_t n,
                     myc__secure_plain_cb cb, void *ud, int *opened,
                     char *err, size_t errlen) {
  *opened = 0;
  snprintf(err, errlen, "built without TLS");
  return MYC_ETLS;
}

int myc__secure_seal(myc__secure *s, const myc__alloc *a, const uv_buf_t *iov,
                     uint32_t n, uint8_t **out, size_t *len, size_t *cap) {
  return MYC_ETLS;
}

int myc__secure_take(myc__secure *s, const myc__alloc *a, uint8_t **out,
                     size_t *len, size_t *cap) {
  return 0;
}

size_t myc__secure_pending(const myc__secure *s) {
  return 0;
}

const char *myc__secure_hint(const char *why, int server) {
  return "";
}

#endif
