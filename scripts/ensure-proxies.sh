#!/usr/bin/env bash
# Installs the real clients the verifier's proxy tests and benchmark run: nginx (auth_request),
# caddy (forward_auth) and wrk, from Debian, when missing. Idempotent and quiet.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
echo "ensure-proxies: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
quietly() {
  local output
  if ! output=$("$@" 2>&1); then
    printf '%s\n' "$output" >&2
    return 1
  fi
}
quietly "${sudo[@]}" apt-get update -qq
quietly "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# why: the Debian nginx package starts a system nginx on port 80; the tests run their own.
if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null 2>&1; then
  "${sudo[@]}" systemctl disable --now nginx >/dev/null 2>&1 || true
fi
