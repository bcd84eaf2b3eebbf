/* secure.h -- TLS on TCP links (tls+tcp://, link.tls): the contexts made
 * from the config, and one session per connection over memory BIOs
 * (net/tls.h), so the link thread moves ciphertext on its own libuv
 * stream and never blocks.  A batch of frames is sealed into one buffer
 * that goes out in one write.  Without the network layer (MYC_WITH_NET
 * off) every call here refuses, saying so. */
#ifndef MYC_LINK_SECURE_H
#define MYC_LINK_SECURE_H

#include "base/alloc.h"
#include "link/link.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct myc__secure_ctx myc__secure_ctx;
typedef struct myc__secure myc__secure;

/* Contexts for the TLS listeners ('server') and dials ('client') of a
 * link config: the certificate, key and CA of 'c->tls_*'.  Returns 0 and
 * '*out' (free with myc__secure_ctx_free), or MYC_EINVAL with the reason
 * in 'err' (naming the file and the key). */
int myc__secure_ctx_new(myc__secure_ctx **out, const myc__alloc *a,
                        const myc__link_config *c, int server, int client,
                        char *err, size_t errlen);

void myc__secure_ctx_free(myc__secure_ctx *x);

/* A session for one connection: a server one (accepted), or a client one
 * that checks the peer's certificate names 'host' (an IP address or a
 * name) and has its ClientHello waiting (myc__secure_take).  Returns
 * NULL when out of memory. */
myc__secure *myc__secure_new(myc__secure_ctx *x, int server, const char *host);

/* Frees 's'; NULL is a no-op. */
void myc__secure_free(myc__secure *s);

/* Whether the handshake is done. */
int myc__secure_done(const myc__secure *s);

/* The protocol version agreed ("TLSv1.3"), once done. */
const char *myc__secure_version(const myc__secure *s);

/* Called with plaintext; returns nonzero to stop. */
typedef int (*myc__secure_plain_cb)(void *ud, const char *p, size_t n);

/* Takes 'n' bytes read from the socket: advances the handshake (then
 * '*opened' is 1: call again with n == 0 for what followed it) or passes
 * the plaintext to 'cb'.  Returns 0, UV_EOF (the peer ended the session)
 * or MYC_ETLS with the reason in 'err'; ciphertext to send (an alert
 * saying why) may be waiting afterwards. */
int myc__secure_open(myc__secure *s, const void *cipher, size_t n,
                     myc__secure_plain_cb cb, void *ud, int *opened,
                     char *err, size_t errlen);

/* Encrypts the 'n' buffers of 'iov', in order, small ones gathered into
 * full records, and appends the ciphertext (after any already waiting) to
 * '*out' ('*len' bytes of '*cap', grown with 'a').  Returns 0, MYC_ENOMEM
 * or MYC_ETLS. */
int myc__secure_seal(myc__secure *s, const myc__alloc *a, const uv_buf_t *iov,
                     uint32_t n, uint8_t **out, size_t *len, size_t *cap);

/* Appends the ciphertext waiting (handshake, alerts) to '*out' as
 * myc__secure_seal does.  Returns 0 or MYC_ENOMEM. */
int myc__secure_take(myc__secure *s, const myc__alloc *a, uint8_t **out,
                     size_t *len, size_t *cap);

/* Bytes of ciphertext waiting. */
size_t myc__secure_pending(const myc__secure *s);

/* What a TLS failure 'why' (myc__secure_open's) means for this node, and
 * what to check, for the log: "" when there is nothing to add. */
const char *myc__secure_hint(const char *why, int server);

#endif
