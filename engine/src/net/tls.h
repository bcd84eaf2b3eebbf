/* tls.h -- TLS over memory BIOs: OpenSSL runs the handshake and the
 * records, the owner moves ciphertext between the BIOs and its libuv
 * socket.  OpenSSL never sees the file descriptor, so TLS fits any loop.
 * Invariant: a session is used by one thread, its owner's loop thread.
 */
#ifndef MYC_TLS_H
#define MYC_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

typedef struct {
  const char *ca_file;   /* PEM bundle to trust; NULL: the system store */
  int insecure;          /* 1: no certificate or host name verification */
  const char *cert_file; /* servers: PEM certificate chain; clients: one */
  const char *key_file;  /* to present when the server asks (mutual TLS) */
  int verify_client;     /* servers: require a client certificate that
                            'ca_file' verifies */
} myc__tls_config;

/* Creates a client (server == 0) or server context.  Clients verify the
 * peer's chain against 'ca_file' or the system store unless 'insecure',
 * and present 'cert_file' when one is given; servers with
 * 'verify_client' refuse a client without a certificate 'ca_file'
 * verifies.
 * Returns the context (the caller frees it with SSL_CTX_free), or NULL
 * with the reason in 'err' (a CA file or key that cannot be loaded). */
SSL_CTX *myc__tls_ctx_new(int server, const myc__tls_config *cfg, char *err,
                          size_t errlen);

typedef struct {
  SSL *ssl;
  BIO *net_in;  /* ciphertext from the peer, written by the owner */
  BIO *net_out; /* ciphertext for the peer, read by the owner */
  int done;     /* handshake finished */
} myc__tls;

/* Starts a session on 'ctx' (which it references).  Clients pass the peer
 * 'host' for SNI and name verification.  Returns 0, or MYC_ENOMEM and
 * leaves 't' empty. */
int myc__tls_init(myc__tls *t, SSL_CTX *ctx, int server, const char *host);

/* Frees the session.  An empty or already freed 't' is a no-op. */
void myc__tls_free(myc__tls *t);

/* Called with decrypted bytes; returns nonzero to stop reading (the
 * owner is closing). */
typedef int (*myc__tls_plain_cb)(void *ud, const char *p, size_t n);

/* Feeds 'n' bytes of ciphertext, advances the handshake and passes every
 * complete record's plaintext to 'cb'.  '*opened' is set to 1 when this
 * call completed the handshake; then no plaintext was passed yet, and
 * the owner calls again (n == 0) once it is ready for it.  Returns 0, or
 * MYC_ETLS with the reason (a failed verification names the certificate
 * problem) in 'err'. Ciphertext to send may be pending afterwards
 * (myc__tls_pending). */
int myc__tls_feed(myc__tls *t, const void *cipher, size_t n,
                  myc__tls_plain_cb cb, void *ud, int *opened, char *err,
                  size_t errlen);

/* Starts a client handshake (queues the ClientHello).  Returns 0 or
 * MYC_ETLS. */
int myc__tls_start(myc__tls *t, char *err, size_t errlen);

/* Encrypts 'n' bytes of plaintext.  Only after the handshake.  Returns 0
 * or MYC_ETLS. */
int myc__tls_write(myc__tls *t, const void *plain, size_t n);

/* Queues a close_notify alert.  Cannot fail. */
void myc__tls_shutdown(myc__tls *t);

/* Bytes of ciphertext waiting to be sent. */
size_t myc__tls_pending(const myc__tls *t);

/* Moves up to 'cap' bytes of pending ciphertext to 'dst'; returns how
 * many. */
size_t myc__tls_take(myc__tls *t, void *dst, size_t cap);

#endif
