/* chain.c -- pools, tokens and their eth_call answers (see chain.h).
 *
 * Return data is ABI-encoded exactly as the contracts would: an address
 * or uint8 is one 32-byte word; a string is an offset word (0x20), a
 * length word and the bytes padded to a multiple of 32.
 */
#include "chain.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Function selectors: the first 4 bytes of keccak256 of the signature. */
#define SEL_TOKEN0 "0x0dfe1681"   /* token0() */
#define SEL_TOKEN1 "0xd21220a7"   /* token1() */
#define SEL_SYMBOL "0x95d89b41"   /* symbol() */
#define SEL_DECIMALS "0x313ce567" /* decimals() */
#define SEL_NAME "0x06fdde03"     /* name() */

typedef struct {
  char address[43]; /* lowercase 0x-hex */
  char token0[43], token1[43];
} pool;

typedef struct {
  char address[43];
  char *symbol, *name;
  unsigned decimals;
} token;

struct chain {
  pool *pools;
  size_t npools;
  token *tokens;
  size_t ntokens;
};

static int copy_address(char dst[43], json_t *v) {
  const char *s = json_string_value(v);
  size_t i;
  if (s == NULL || strlen(s) != 42 || s[0] != '0' || (s[1] | 32) != 'x')
    return -1;
  for (i = 0; i < 42; i++)
    dst[i] = (char)tolower((unsigned char)s[i]);
  dst[42] = '\0';
  return 0;
}

static json_t *load_array(const char *path, char *err, size_t errlen) {
  json_error_t je;
  json_t *j = json_load_file(path, 0, &je);
  if (j == NULL || !json_is_array(j)) {
    snprintf(err, errlen, "%s: %s", path, j ? "not a JSON array" : je.text);
    json_decref(j);
    return NULL;
  }
  return j;
}

static int load_pools(chain *ch, const char *path, char *err, size_t errlen) {
  json_t *j = load_array(path, err, errlen), *v;
  size_t i;
  if (j == NULL)
    return -1;
  ch->pools = calloc(json_array_size(j) + 1, sizeof *ch->pools);
  json_array_foreach(j, i, v) {
    pool *p = &ch->pools[ch->npools];
    if (copy_address(p->address, json_object_get(v, "address")) ||
        copy_address(p->token0, json_object_get(v, "token0")) ||
        copy_address(p->token1, json_object_get(v, "token1"))) {
      snprintf(err, errlen, "%s: entry %zu needs address, token0 and token1",
               path, i);
      json_decref(j);
      return -1;
    }
    ch->npools++;
  }
  json_decref(j);
  return 0;
}

static int load_tokens(chain *ch, const char *path, char *err, size_t errlen) {
  json_t *j = load_array(path, err, errlen), *v;
  size_t i;
  if (j == NULL)
    return -1;
  ch->tokens = calloc(json_array_size(j) + 1, sizeof *ch->tokens);
  json_array_foreach(j, i, v) {
    token *t = &ch->tokens[ch->ntokens];
    const char *sym = json_string_value(json_object_get(v, "symbol"));
    const char *name = json_string_value(json_object_get(v, "name"));
    json_t *dec = json_object_get(v, "decimals");
    if (copy_address(t->address, json_object_get(v, "address")) ||
        sym == NULL || !json_is_integer(dec)) {
      snprintf(err, errlen,
               "%s: entry %zu needs address, symbol and "
               "decimals",
               path, i);
      json_decref(j);
      return -1;
    }
    t->symbol = strdup(sym);
    t->name = strdup(name ? name : sym);
    t->decimals = (unsigned)json_integer_value(dec);
    ch->ntokens++;
  }
  json_decref(j);
  return 0;
}

chain *chain_load(const char *pools, const char *tokens, char *err,
                  size_t errlen) {
  chain *ch = calloc(1, sizeof *ch);
  if ((pools && load_pools(ch, pools, err, errlen)) ||
      (tokens && load_tokens(ch, tokens, err, errlen))) {
    chain_free(ch);
    return NULL;
  }
  return ch;
}

void chain_free(chain *ch) {
  size_t i;
  if (ch == NULL)
    return;
  for (i = 0; i < ch->ntokens; i++) {
    free(ch->tokens[i].symbol);
    free(ch->tokens[i].name);
  }
  free(ch->tokens);
  free(ch->pools);
  free(ch);
}

size_t chain_pools(const chain *ch) {
  return ch->npools;
}
size_t chain_tokens(const chain *ch) {
  return ch->ntokens;
}

static char *word_address(const char *addr) {
  char *out = malloc(2 + 64 + 1);
  sprintf(out, "0x%024d%s", 0, addr + 2);
  return out;
}

static char *word_uint(unsigned v) {
  char *out = malloc(2 + 64 + 1);
  sprintf(out, "0x%056d%08x", 0, v);
  return out;
}

static char *abi_string(const char *s) {
  size_t n = strlen(s), words = (n + 31) / 32, i;
  char *out = malloc(2 + 128 + words * 64 + 1), *p = out;
  p += sprintf(p, "0x%062d20%056d%08zx", 0, 0, n);
  for (i = 0; i < words * 32; i++)
    p += sprintf(p, "%02x", i < n ? (unsigned char)s[i] : 0);
  return out;
}

int chain_call(const chain *ch, const char *to, const char *data, char **out) {
  size_t i;
  if (to == NULL || data == NULL || strlen(data) < 10)
    return -1;
  for (i = 0; i < ch->npools; i++)
    if (strcasecmp(ch->pools[i].address, to) == 0) {
      if (strncasecmp(data, SEL_TOKEN0, 10) == 0)
        return *out = word_address(ch->pools[i].token0), 0;
      if (strncasecmp(data, SEL_TOKEN1, 10) == 0)
        return *out = word_address(ch->pools[i].token1), 0;
      return -1;
    }
  for (i = 0; i < ch->ntokens; i++)
    if (strcasecmp(ch->tokens[i].address, to) == 0) {
      if (strncasecmp(data, SEL_SYMBOL, 10) == 0)
        return *out = abi_string(ch->tokens[i].symbol), 0;
      if (strncasecmp(data, SEL_NAME, 10) == 0)
        return *out = abi_string(ch->tokens[i].name), 0;
      if (strncasecmp(data, SEL_DECIMALS, 10) == 0)
        return *out = word_uint(ch->tokens[i].decimals), 0;
      return -1;
    }
  *out = strdup("0x"); /* no code at that address */
  return 0;
}
