#!/usr/bin/env bash
# Validates the Kubernetes manifests offline: each overlay under deploy/kubernetes/ is built with
# `kubectl kustomize`, every resource is checked against the Kubernetes API schemas
# (kubernetes-validate, which ships them: no cluster, no network once installed), and each
# overlay's handoff.toml passes `handoff check --no-secrets`.
#
#   packaging/test-kubernetes.sh [HANDOFF_BINARY]    (default: the debug build under the target dir)
set -euo pipefail
cd "$(dirname "$0")/.."
handoff=${1:-${CARGO_TARGET_DIR:-target}/debug/handoff}
k8s_version=1.30.0   # the oldest Kubernetes the manifests promise to fit (docs/deploy.md)

# The validator with its schemas, installed once into a cache directory.
validator_dir=${HANDOFF_CI_CACHE:-/var/cache/handoff-ci}/kubernetes-validate
if [ ! -x "$validator_dir/bin/kubernetes-validate" ]; then
  mkdir -p "$validator_dir"
  pip3 install -q --disable-pip-version-check --target "$validator_dir" kubernetes-validate==1.37.0
fi
validate() { PYTHONPATH="$validator_dir" python3 "$validator_dir/bin/kubernetes-validate" "$@"; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The validator must refuse what a cluster refuses, or a pass would mean nothing.
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n' > "$out/bad.yaml"
if validate --strict --quiet -k "$k8s_version" "$out/bad.yaml" >/dev/null 2>&1; then
  echo "kubernetes-validate accepted an unknown field: it cannot be trusted here" >&2
  exit 1
fi

for overlay in deploy/kubernetes/*/; do
  name=$(basename "$overlay")
  [ "$name" = base ] && continue
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  validate --strict --quiet -k "$k8s_version" "$out/$name.yaml"
  "$handoff" --config "$overlay/handoff.toml" check --no-secrets > /dev/null
  echo "$name: $(grep -c '^kind:' "$out/$name.yaml") resources valid for Kubernetes $k8s_version; handoff.toml ok"
done
