#!/usr/bin/env bash
# Runs a command with its output kept in a log, shown only if it fails:
#   scripts/quiet.sh "what it does" COMMAND...
set -uo pipefail
what=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$@" >"$log" 2>&1; then
  cat "$log" >&2
  echo "make: $what failed: $*" >&2
  exit 1
fi
