-- services/bandit/pg_schema.sql -- the tables MetadataService reads with
-- opts.postgres (docs/POSTGRES.md), filled from the bundled lists by
-- services/bandit/pg_load.lua.  Idempotent: safe to run again.
-- Addresses are stored in lower case ("0x" and 40 hex digits), the form
-- MetadataService looks them up by.
CREATE TABLE IF NOT EXISTS bandit_tokens (
  chain_id integer NOT NULL,
  address  text    NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
  symbol   text    NOT NULL,
  decimals integer NOT NULL CHECK (decimals BETWEEN 0 AND 77),
  name     text,
  PRIMARY KEY (chain_id, address)
);

CREATE TABLE IF NOT EXISTS bandit_pools (
  chain_id integer NOT NULL,
  address  text    NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
  dex      text    NOT NULL,
  kind     text    NOT NULL CHECK (kind IN ('v2', 'v3')),
  token0   text    NOT NULL,
  token1   text    NOT NULL,
  fee_ppm  integer NOT NULL,
  label    text,
  PRIMARY KEY (chain_id, address)
);
