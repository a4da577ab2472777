#!/usr/bin/env bash
# Renders deploy/access-control.yaml from the Helm chart: keywarden's ServiceAccounts, RBAC and
# admission policies for release "keywarden" in namespace "keywarden-system", as plain YAML for
# kubectl and GitOps installs (and what `keywarden dev` and the test suites install).
# tests/chart.rs fails when the committed file differs from this rendering.
#
# Usage: scripts/render-deploy.sh [OUT]   (default OUT: deploy/access-control.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
helm="${KEYWARDEN_HELM:-helm}"
out="${1:-deploy/access-control.yaml}"
# why: a failed render (helm missing, a template error) must not leave a truncated file behind.
rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
{
  cat <<'HEADER'
# keywarden's identities, RBAC and admission policies, rendered from charts/keywarden by
# scripts/render-deploy.sh (release "keywarden", namespace "keywarden-system"). Do not edit.
#
#   kubectl create namespace keywarden-system
#   kubectl apply -f crds/ -f deploy/access-control.yaml
HEADER
  "$helm" template keywarden charts/keywarden --namespace keywarden-system \
    --show-only templates/serviceaccounts.yaml \
    --show-only templates/controller-rbac.yaml \
    --show-only templates/verifier-rbac.yaml \
    --show-only templates/user-roles.yaml \
    --show-only templates/admission-policies.yaml
} > "$rendered"
mv "$rendered" "$out"
