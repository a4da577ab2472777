#!/usr/bin/env bash
# Installs Lua 5.1 (the language Argo CD runs health checks in, through gopher-lua) from Debian
# when missing, for the Argo CD health-check tests. Idempotent and quiet.
set -euo pipefail

if command -v lua5.1 >/dev/null 2>&1; then
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
echo "ensure-lua: installing lua5.1"
export DEBIAN_FRONTEND=noninteractive
quietly() {
  local output
  if ! output=$("$@" 2>&1); then
    printf '%s\n' "$output" >&2
    return 1
  fi
}
quietly "${sudo[@]}" apt-get update -qq
quietly "${sudo[@]}" apt-get install -y -qq --no-install-recommends lua5.1
