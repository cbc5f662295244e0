#!/usr/bin/env bash
# End-to-end on a real kind cluster (needs Docker, kind, kubectl, helm): builds the images,
# installs livekit-server and the chart, then runs the same e2e check the loopback suite runs
# (tests/test_e2e_check.py), as a Job inside the cluster. Usage: hack/kind-e2e.sh [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-lingo-e2e}
NAMESPACE=lingo
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: '$tool' is required" >&2; exit 2; }
done
bash hack/setup.sh

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --config hack/kind/cluster.yaml
trap '[ "${1:-}" = --keep ] || kind delete cluster --name "$CLUSTER"' EXIT

docker build -f images/operator.Dockerfile -t lingo-operator:e2e .
docker build -f images/worker.Dockerfile -t translation-worker:e2e .
kind load docker-image --name "$CLUSTER" lingo-operator:e2e translation-worker:e2e

key="e2e-$(openssl rand -hex 4)"; secret="$(openssl rand -hex 24)"
kubectl apply -f hack/kind/livekit.yaml
kubectl -n livekit create secret generic livekit-keys --from-literal=keys="$key: $secret" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NAMESPACE" create secret generic livekit-credentials \
  --from-literal=apiKey="$key" --from-literal=apiSecret="$secret" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n livekit rollout status deploy/livekit-server --timeout=180s

helm upgrade --install lingo charts/lingo-operator -n "$NAMESPACE" --wait --timeout 5m \
  --set image.repository=lingo-operator,image.tag=e2e,image.pullPolicy=Never \
  --set worker.image.repository=translation-worker,worker.image.tag=e2e,worker.image.pullPolicy=Never \
  --set livekit.url=ws://livekit-server.livekit.svc.cluster.local:7880 \
  --set livekit.publicUrl=ws://livekit-server.livekit.svc.cluster.local:7880 \
  --set facade.publicUrl=http://lingo-facade.lingo.svc.cluster.local

# Register the e2e client in the sessions namespace (only its hash goes to the cluster; the
# secret goes to the Job).
client_secret=$(openssl rand -hex 24)
.venv/bin/python -m lingo_webhook.clients manifest e2e --namespace "$NAMESPACE-sessions" --secret "$client_secret" \
  | kubectl apply -f -
kubectl -n "$NAMESPACE" create secret generic lingo-e2e-client --from-literal=secret="$client_secret" \
  --dry-run=client -o yaml | kubectl apply -f -

kubectl -n "$NAMESPACE" delete job lingo-e2e-check --ignore-not-found
kubectl apply -f hack/kind/e2e-check-job.yaml
if ! kubectl -n "$NAMESPACE" wait --for=condition=complete job/lingo-e2e-check --timeout=600s; then
  kubectl -n "$NAMESPACE" logs job/lingo-e2e-check || true
  kubectl get streamingsessions -A -o wide || true
  exit 1
fi
kubectl -n "$NAMESPACE" logs job/lingo-e2e-check
kubectl get streamingsessions -A
