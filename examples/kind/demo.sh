#!/usr/bin/env bash
# imagegate in a local kind cluster: builds the image from this repository,
# installs the chart with a policy, and shows one allowed and one denied pod.
#
# Needs docker, kind, kubectl, helm and gpg on the machine, and internet access
# from the cluster (the demo pods use registry.k8s.io and Docker Hub images).
#
#   examples/kind/demo.sh            create the cluster (if needed), install, demonstrate
#   examples/kind/demo.sh --delete   delete the demo cluster
#
# IMAGEGATE_DEMO_CLUSTER names the kind cluster (default imagegate-demo).
set -euo pipefail

cluster="${IMAGEGATE_DEMO_CLUSTER:-imagegate-demo}"
namespace=imagegate-system
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }

if [[ "${1:-}" == "--delete" ]]; then
  kind delete cluster --name "$cluster"
  exit 0
fi
for tool in docker kind kubectl helm gpg; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

work="$(mktemp -d)"
cleanup() {
  GNUPGHOME="$work/gnupg" gpgconf --kill gpg-agent 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say "kind cluster $cluster"
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

say "building the imagegate image and loading it into the cluster"
docker build -t imagegate:dev "$root"
kind load docker-image imagegate:dev --name "$cluster"

say "a throwaway signing key (the policy trusts it; nothing is signed with it)"
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
  --quick-gen-key 'imagegate kind demo <demo@example.com>' ed25519 sign 1d
gpg --armor --export demo@example.com > "$work/demo.asc"

say "installing the chart with one ClusterImagePolicy"
cat > "$work/values.yaml" <<EOF
image:
  repository: docker.io/library/imagegate
  tag: dev
  pullPolicy: Never
replicaCount: 2
trustedKeys:
  armored:
    demo.asc: |
$(sed 's/^/      /' "$work/demo.asc")
clusterImagePolicies:
  demo:
    mode: Enforce
    policy:
      transports:
        docker:
          # Kubernetes' own images: admitted without signatures.
          registry.k8s.io:
            - type: insecureAcceptAnything
          # busybox must be signed by the demo key. Nothing is, so it is denied.
          docker.io/library/busybox:
            - type: signedBy
              keyType: GPGKeys
              keyRef:
                configMap: imagegate-trusted-keys
                key: demo.asc
EOF
helm upgrade --install imagegate "$root/charts/imagegate" \
  --namespace "$namespace" --create-namespace \
  --values "$work/values.yaml" --wait --timeout 5m

say "waiting for imagegate to put its CA into the webhook configuration"
ca=""
for _ in $(seq 60); do
  ca="$(kubectl get validatingwebhookconfiguration imagegate -o jsonpath='{.webhooks[0].clientConfig.caBundle}')"
  [[ -n "$ca" ]] && break
  sleep 2
done
[[ -n "$ca" ]] || die "no caBundle after two minutes: kubectl -n $namespace logs deployment/imagegate"
kubectl get clusterimagepolicies

say "allowed: registry.k8s.io/pause:3.10 (scope registry.k8s.io, insecureAcceptAnything)"
kubectl delete pod allowed --ignore-not-found --wait=true >/dev/null
kubectl run allowed --image=registry.k8s.io/pause:3.10 --restart=Never
kubectl wait pod/allowed --for=condition=Ready --timeout=120s

say "denied: busybox:1.36 (scope docker.io/library/busybox, signedBy the demo key)"
if kubectl run denied --image=busybox:1.36 --restart=Never -- sleep 3600; then
  die "busybox was admitted: the policy did not apply"
fi

say "done"
cat <<EOF
The denial above names the image, the document (ClusterImagePolicy/demo), the
scope that matched and c/image's reason. Try also:

  kubectl create deployment web --image=busybox:1.36    # denied at apply time
  kubectl label namespace default imagegate.dev/ignore=true   # stop checking default
  kubectl -n $namespace logs deployment/imagegate | tail  # one JSON line per decision

Remove everything with: $0 --delete
EOF
