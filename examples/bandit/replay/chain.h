/* chain.h -- what the replay server knows of the chain beyond the
 * capture: the pools (token0, token1) and tokens (symbol, decimals, name)
 * of pools.json and tokens.json, answered to eth_call as a node would,
 * ABI-encoded. */
#ifndef REPLAY_CHAIN_H
#define REPLAY_CHAIN_H

#include <stddef.h>

typedef struct chain chain;

/* Loads the two registries; either path may be NULL.  Returns the chain,
 * or NULL with the reason in 'err'. */
chain *chain_load(const char *pools, const char *tokens, char *err,
                  size_t errlen);
void chain_free(chain *ch);

/* Answers eth_call of 'data' (0x-hex calldata) on contract 'to'.  Returns
 * 0 with the 0x-hex return data in '*out' (malloc'd; "0x" for an address
 * with no code, as a node answers), or -1 when the call reverts. */
int chain_call(const chain *ch, const char *to, const char *data, char **out);

size_t chain_pools(const chain *ch);
size_t chain_tokens(const chain *ch);

#endif
