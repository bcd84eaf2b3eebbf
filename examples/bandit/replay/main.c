/* main.c -- myc-replay: serves a Polygon capture over WebSocket on
 * 127.0.0.1 (see --help, and docs/WEBSOCKET.md). */
#include "server.h"

#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: myc-replay [options] CAPTURE.jsonl\n"
    "\n"
    "Serves a capture (line 1: the eth_subscribe reply, then one\n"
    "notification per line) over WebSocket on 127.0.0.1 as a Polygon node\n"
    "would: eth_subscribe gets the capture's subscription id and starts the\n"
    "stream, eth_unsubscribe stops it, eth_call answers token0(), token1(),\n"
    "symbol(), decimals() and name() of the known pools and tokens.\n"
    "JSON-RPC POSTs on the same port are answered too (eth_call over HTTP).\n"
    "\n"
    "  -p, --port N          port (default 0: a free one, printed on stdout)\n"
    "      --pools FILE      pools.json (default: next to the capture)\n"
    "      --tokens FILE     tokens.json (default: next to the capture)\n"
    "      --fast            stream as fast as the client reads (default)\n"
    "      --block-ms MS     recorded pace: a block's notifications together,\n"
    "                        MS per block number step (Polygon: 2000)\n"
    "      --rate N          N notifications per second\n"
    "      --loop N          play the capture N times (0: forever; default 1)\n"
    "      --drop-after N    drop a connection (TCP close, no close frame)\n"
    "                        after N notifications on it\n"
    "      --drops K         drop that way K connections (default 1)\n"
    "      --restart         each subscription starts at the first "
    "notification\n"
    "                        (default: continue where the chain is, as a "
    "node)\n"
    "      --sub-id ID       announce and stream this subscription id instead\n"
    "                        of the capture's\n"
    "      --tls-cert FILE   serve wss:// with this certificate chain (PEM)\n"
    "      --tls-key FILE    ... and this key\n"
    "      --once            exit once the capture was played and every "
    "client\n"
    "                        has gone\n"
    "      --ttl SECONDS     exit after that long whatever happens (tests)\n"
    "      --hold            answer subscriptions but send no notification\n"
    "                        until SIGUSR1 (a launcher whose consumers are\n"
    "                        still starting)\n"
    "  -q, --quiet           no connection messages on stderr\n"
    "  -h, --help            this text\n"
    "\n"
    "stdout: 'listening on ws://127.0.0.1:PORT/ (...)' once ready.\n"
    "stderr: at exit, notifications sent and the rate per second.\n";

static char *sibling(const char *file, const char *name) {
  char *copy = strdup(file), *dir = dirname(copy);
  char *path = malloc(strlen(dir) + strlen(name) + 2);
  sprintf(path, "%s/%s", dir, name);
  free(copy);
  if (access(path, R_OK) != 0) {
    free(path);
    return NULL;
  }
  return path;
}

static int number(const char *arg, const char *opt, double *out) {
  char *end;
  *out = strtod(arg, &end);
  if (*arg == '\0' || *end != '\0' || *out < 0) {
    fprintf(stderr, "myc-replay: %s needs a number >= 0, got '%s'\n", opt, arg);
    return -1;
  }
  return 0;
}

enum {
  O_POOLS = 256,
  O_TOKENS,
  O_FAST,
  O_BLOCK,
  O_RATE,
  O_LOOP,
  O_DROP,
  O_DROPS,
  O_RESTART,
  O_SUB,
  O_CERT,
  O_KEY,
  O_ONCE,
  O_TTL,
  O_HOLD
};

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"port", 1, 0, 'p'},         {"pools", 1, 0, O_POOLS},
      {"tokens", 1, 0, O_TOKENS},  {"fast", 0, 0, O_FAST},
      {"block-ms", 1, 0, O_BLOCK}, {"rate", 1, 0, O_RATE},
      {"loop", 1, 0, O_LOOP},      {"drop-after", 1, 0, O_DROP},
      {"drops", 1, 0, O_DROPS},    {"restart", 0, 0, O_RESTART},
      {"sub-id", 1, 0, O_SUB},     {"tls-cert", 1, 0, O_CERT},
      {"tls-key", 1, 0, O_KEY},    {"once", 0, 0, O_ONCE},
      {"ttl", 1, 0, O_TTL},        {"quiet", 0, 0, 'q'},
      {"hold", 0, 0, O_HOLD},
      {"help", 0, 0, 'h'},         {0, 0, 0, 0}};
  server_options o;
  capture cap;
  chain *ch;
  char *pools = NULL, *tokens = NULL, *sub = NULL, err[512];
  double v = 0;
  int c, rc;

  memset(&o, 0, sizeof o);
  o.loops = 1;
  o.drops = 1;
  o.block_ms = 2000;
  while ((c = getopt_long(argc, argv, "p:qh", opts, NULL)) != -1) {
    if (c != 'q' && c != 'h' && c != O_FAST && c != O_RESTART && c != O_ONCE &&
        c != O_HOLD &&
        c != '?' && c != O_POOLS && c != O_TOKENS && c != O_SUB &&
        c != O_CERT && c != O_KEY && number(optarg, argv[optind - 1], &v) != 0)
      return 2;
    switch (c) {
    case 'p':
      o.port = (int)v;
      break;
    case O_POOLS:
      pools = optarg;
      break;
    case O_TOKENS:
      tokens = optarg;
      break;
    case O_FAST:
      o.pace = PACE_FAST;
      break;
    case O_BLOCK:
      o.pace = PACE_BLOCK;
      o.block_ms = v;
      break;
    case O_RATE:
      o.pace = PACE_RATE;
      o.rate = v;
      break;
    case O_LOOP:
      o.loops = (uint64_t)v;
      break;
    case O_DROP:
      o.drop_after = (uint64_t)v;
      break;
    case O_DROPS:
      o.drops = (uint64_t)v;
      break;
    case O_RESTART:
      o.restart = 1;
      break;
    case O_SUB:
      sub = optarg;
      break;
    case O_CERT:
      o.cert = optarg;
      break;
    case O_KEY:
      o.key = optarg;
      break;
    case O_ONCE:
      o.once = 1;
      break;
    case O_TTL:
      o.ttl = v;
      break;
    case O_HOLD:
      o.hold = 1;
      break;
    case 'q':
      o.quiet = 1;
      break;
    case 'h':
      fputs(usage, stdout);
      return 0;
    default:
      fputs(usage, stderr);
      return 2;
    }
  }
  if (optind != argc - 1 || (!o.cert != !o.key) || o.port > 65535 ||
      (o.pace == PACE_RATE && o.rate <= 0)) {
    fputs(usage, stderr);
    return 2;
  }
  if (pools == NULL)
    pools = sibling(argv[optind], "pools.json");
  if (tokens == NULL)
    tokens = sibling(argv[optind], "tokens.json");
  if (capture_load(&cap, argv[optind], sub, err, sizeof err) != 0 ||
      (ch = chain_load(pools, tokens, err, sizeof err)) == NULL) {
    fprintf(stderr, "myc-replay: %s\n", err);
    return 1;
  }
  rc = server_run(&o, &cap, ch);
  chain_free(ch);
  capture_free(&cap);
  return rc;
}
