/* tls.c -- TLS sessions over memory BIOs (see tls.h).
 *
 * The owner writes what the socket read into 'net_in' (myc__tls_feed) and
 * sends what appears in 'net_out'.  Memory BIOs grow as needed, so
 * SSL_write never returns WANT_WRITE: the owner bounds what it queues.
 */
#include "net/tls.h"

#include "mycelium.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

/* The most precise reason OpenSSL has for the failure of 'what'.  A chain
 * or name that did not verify says so in words: that is the error users
 * see most and must understand without OpenSSL's error codes. */
static void describe(SSL *ssl, const char *what, char *err, size_t errlen) {
  long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
  unsigned long e = ERR_peek_last_error();
  char buf[256];
  if (v != X509_V_OK) {
    snprintf(err, errlen, "certificate verification failed: %s",
             X509_verify_cert_error_string(v));
  } else if (e != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "%s: %s", what,
             ERR_reason_error_string(e) ? ERR_reason_error_string(e) : buf);
  } else {
    snprintf(err, errlen, "%s failed", what);
  }
  ERR_clear_error();
}

static int load_keys(SSL_CTX *c, const myc__tls_config *cfg, char *err,
                     size_t errlen) {
  if (cfg->cert_file == NULL || cfg->key_file == NULL) {
    snprintf(err, errlen, "a TLS server needs a certificate and a key");
    return -1;
  }
  if (SSL_CTX_use_certificate_chain_file(c, cfg->cert_file) != 1) {
    describe(NULL, "cannot load certificate", err, errlen);
    snprintf(err + strlen(err), errlen - strlen(err), " (%s)", cfg->cert_file);
    return -1;
  }
  if (SSL_CTX_use_PrivateKey_file(c, cfg->key_file, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(c) != 1) {
    describe(NULL, "cannot load private key", err, errlen);
    snprintf(err + strlen(err), errlen - strlen(err), " (%s)", cfg->key_file);
    return -1;
  }
  return 0;
}

static int load_trust(SSL_CTX *c, const myc__tls_config *cfg, char *err,
                      size_t errlen) {
  if (cfg->insecure) {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    return 0;
  }
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
  if (cfg->ca_file != NULL) {
    if (SSL_CTX_load_verify_locations(c, cfg->ca_file, NULL) != 1) {
      describe(NULL, "cannot load CA file", err, errlen);
      snprintf(err + strlen(err), errlen - strlen(err), " (%s)", cfg->ca_file);
      return -1;
    }
  } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
    describe(NULL, "cannot load the system CA store", err, errlen);
    return -1;
  }
  return 0;
}

SSL_CTX *myc__tls_ctx_new(int server, const myc__tls_config *cfg, char *err,
                          size_t errlen) {
  SSL_CTX *c;
  ERR_clear_error();
  c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (c == NULL) {
    describe(NULL, "cannot create a TLS context", err, errlen);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  if ((server || cfg->cert_file != NULL) && load_keys(c, cfg, err, errlen) != 0)
    goto fail;
  if (!server && load_trust(c, cfg, err, errlen) != 0)
    goto fail;
  if (server && cfg->verify_client) {
    if (cfg->ca_file == NULL) {
      snprintf(err, errlen, "verifying clients needs a CA file");
      goto fail;
    }
    if (load_trust(c, cfg, err, errlen) != 0)
      goto fail;
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
  }
  return c;
fail:
  SSL_CTX_free(c);
  return NULL;
}

static int is_ip(const char *host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host, buf) == 1 ||
         inet_pton(AF_INET6, host, buf) == 1;
}

/* Clients name the host twice: SNI (never an IP address, RFC 6066) and
 * the name or address the certificate must carry. */
static int set_peer_name(SSL *ssl, const char *host) {
  X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
  if (host == NULL || *host == '\0')
    return 1;
  if (is_ip(host))
    return X509_VERIFY_PARAM_set1_ip_asc(p, host);
  X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set_tlsext_host_name(ssl, host) == 1 &&
         SSL_set1_host(ssl, host) == 1;
}

int myc__tls_init(myc__tls *t, SSL_CTX *ctx, int server, const char *host) {
  memset(t, 0, sizeof *t);
  t->ssl = SSL_new(ctx);
  t->net_in = BIO_new(BIO_s_mem());
  t->net_out = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->net_in == NULL || t->net_out == NULL ||
      (!server && set_peer_name(t->ssl, host) != 1)) {
    BIO_free(t->net_in);
    BIO_free(t->net_out);
    SSL_free(t->ssl);
    memset(t, 0, sizeof *t);
    ERR_clear_error();
    return MYC_ENOMEM;
  }
  /* An empty memory BIO reports "retry" rather than end of file. */
  BIO_set_mem_eof_return(t->net_in, -1);
  SSL_set_bio(t->ssl, t->net_in, t->net_out);
  if (server)
    SSL_set_accept_state(t->ssl);
  else
    SSL_set_connect_state(t->ssl);
  return 0;
}

void myc__tls_free(myc__tls *t) {
  if (t->ssl != NULL)
    SSL_free(t->ssl); /* frees both BIOs */
  memset(t, 0, sizeof *t);
}

static int handshake(myc__tls *t, int *opened, char *err, size_t errlen) {
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->done = 1;
    *opened = 1;
    return 0;
  }
  switch (SSL_get_error(t->ssl, r)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    return 0;
  default:
    describe(t->ssl, "TLS handshake", err, errlen);
    return MYC_ETLS;
  }
}

int myc__tls_start(myc__tls *t, char *err, size_t errlen) {
  int opened = 0;
  ERR_clear_error();
  return handshake(t, &opened, err, errlen);
}

int myc__tls_feed(myc__tls *t, const void *cipher, size_t n,
                  myc__tls_plain_cb cb, void *ud, int *opened, char *err,
                  size_t errlen) {
  char buf[16384]; /* one TLS record */
  int r;
  *opened = 0;
  ERR_clear_error();
  if (n > 0 && BIO_write(t->net_in, cipher, (int)n) != (int)n)
    return MYC_ENOMEM;
  if (!t->done) {
    /* Records after the handshake wait for the next call: the owner
     * first marks the session open, then drains them with n == 0. */
    r = handshake(t, opened, err, errlen);
    return r;
  }
  for (;;) {
    r = SSL_read(t->ssl, buf, sizeof buf);
    if (r > 0) {
      if (cb(ud, buf, (size_t)r) != 0)
        return 0;
      continue;
    }
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return 0;
    case SSL_ERROR_ZERO_RETURN:
      snprintf(err, errlen, "peer closed the TLS session");
      return UV_EOF;
    default:
      describe(t->ssl, "TLS record", err, errlen);
      return MYC_ETLS;
    }
  }
}

int myc__tls_write(myc__tls *t, const void *plain, size_t n) {
  ERR_clear_error();
  if (n == 0)
    return 0;
  if (SSL_write(t->ssl, plain, (int)n) != (int)n) {
    ERR_clear_error();
    return MYC_ETLS;
  }
  return 0;
}

void myc__tls_shutdown(myc__tls *t) {
  ERR_clear_error();
  if (t->ssl != NULL && t->done)
    (void)SSL_shutdown(t->ssl);
  ERR_clear_error();
}

size_t myc__tls_pending(const myc__tls *t) {
  return t->net_out ? BIO_ctrl_pending(t->net_out) : 0;
}

size_t myc__tls_take(myc__tls *t, void *dst, size_t cap) {
  int r = BIO_read(t->net_out, dst, cap > INT32_MAX ? INT32_MAX : (int)cap);
  return r > 0 ? (size_t)r : 0;
}
