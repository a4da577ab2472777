#!/usr/bin/env bash
# Makes sure the chart tests' schema validator is installed: `kubernetes-validate` from PyPI, in a
# virtualenv under .cache/ (never into the system Python). Prints the venv's bin directory last.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=".cache/chart-venv"
mkdir -p .cache
# why: test binaries may run this at the same time; one installs, the others wait for it.
exec 9>.cache/chart-tools.lock
flock 9
if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
  python="$(command -v python3 || true)"
  if [[ -z "$python" ]]; then
    echo "ensure-chart-tools: python3 is required to install kubernetes-validate" >&2
    exit 1
  fi
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # why: Debian splits venv support out of python3; install it once, then retry.
    if command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    rm -rf "$venv"
    "$python" -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
fi
echo "kubernetes-validate is in $venv/bin" >&2
cd "$venv/bin" && pwd
