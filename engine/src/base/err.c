/* err.c -- error codes: one X-macro table (mycelium.h) drives the names
 * and messages; libuv and errno codes pass through to libuv's tables. */
#include "mycelium.h"

#include <uv.h>

const char *myc_strerror(int err) {
  switch (err) {
#define XX(name, value, text)                                                  \
  case MYC_##name:                                                             \
    return text;
    MYC_ERRNO_MAP(XX)
#undef XX
  case 0:
    return "success";
  default:
    return uv_strerror(err);
  }
}

const char *myc_err_name(int err) {
  switch (err) {
#define XX(name, value, text)                                                  \
  case MYC_##name:                                                             \
    return #name;
    MYC_ERRNO_MAP(XX)
#undef XX
  case 0:
    return "OK";
  default:
    return uv_err_name(err);
  }
}

const char *myc_version(void) { return MYC_VERSION; }
