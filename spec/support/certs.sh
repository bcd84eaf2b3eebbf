#!/bin/sh
# spec/support/certs.sh DIR -- a throwaway PKI for TLS tests, made with the
# openssl command in DIR (created; nothing here is committed).  EC P-256
# keys (fast), valid one day unless said otherwise:
#   ca.crt/.key        the test CA
#   srv.crt/.key       signed by it, for IP:127.0.0.1 and DNS:localhost
#   client.crt/.key    signed by it, a client's (also names 127.0.0.1)
#   other.crt/.key     signed by it, for DNS:other.example only
#   wrongca.crt/.key   another CA, which nobody trusts
#   wrong.crt/.key     signed by wrongca, for IP:127.0.0.1
#   expired.crt/.key   signed by ca, for IP:127.0.0.1, expired in 2020
#   self.crt/.key      self-signed, for IP:127.0.0.1
# Used by spec/support/certs.lua and engine/tests/link_test.c.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
q() { "$@" >/dev/null 2>&1 || { echo "certs.sh: failed: $*" >&2; exit 1; }; }

q openssl req -x509 $key -keyout ca.key -out ca.crt -days 1 \
  -subj '/CN=mycelium test CA'
q openssl req -x509 $key -keyout wrongca.key -out wrongca.crt -days 1 \
  -subj '/CN=mycelium wrong CA'

# leaf NAME CA SAN [openssl x509 options]
leaf() {
  printf 'subjectAltName=%s\n' "$3" > "$1.ext"
  q openssl req $key -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
  q openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" \
    -CAcreateserial -days 1 -out "$1.crt" -extfile "$1.ext"
}
leaf srv ca 'IP:127.0.0.1,DNS:localhost'
leaf client ca 'IP:127.0.0.1,DNS:localhost'
leaf other ca 'DNS:other.example'
leaf wrong wrongca 'IP:127.0.0.1,DNS:localhost'

# Expired: `openssl x509 -days` cannot reach the past; `openssl ca` can.
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > expired.ext
printf '[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\nnew_certs_dir=.\n'\
'serial=ca.srl\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' \
  > ca.cnf
: > index.txt
q openssl req $key -keyout expired.key -out expired.csr -subj /CN=expired
q openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key \
  -in expired.csr -out expired.crt -extfile expired.ext \
  -startdate 20200101000000Z -enddate 20200102000000Z

q openssl req -x509 $key -keyout self.key -out self.crt -days 1 \
  -subj /CN=self -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost'
chmod 600 ./*.key
