#!/usr/bin/env bash
# Runs `keywarden dev`: devcluster, controller, verifier and the examples in one process, no
# cluster needed. Installs kubectl when missing (to look around) and builds both binaries
# (`keywarden` and the `kubectl-keywarden` plugin) in release mode. Arguments go to `keywarden dev`.
set -euo pipefail
cd "$(dirname "$0")/.."

tools_dir="$(scripts/ensure-kube-tools.sh | tail -n 1)"
cargo build --release --locked --bins
bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/release"

cat <<HINT
kubectl and the kubectl-keywarden plugin for the commands printed below, in another terminal:

  export PATH="$tools_dir:$bin_dir:\$PATH"

HINT
exec "$bin_dir/keywarden" dev "$@"
