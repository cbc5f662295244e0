#!/usr/bin/env bash
# End-to-end on a real kind cluster (needs Docker, kind, kubectl, helm): builds the images,
# installs livekit-server and the chart, then runs the same e2e check the loopback suite runs
# (tests/test_e2e_check.py). Usage: hack/kind-e2e.sh [--keep]
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
  --set livekit.url=ws://livekit-server.livekit.svc.cluster.local:7880,livekit.publicUrl=ws://127.0.0.1:7880 \
  --set facade.publicUrl=http://127.0.0.1:8000,facade.service.type=NodePort
kubectl -n "$NAMESPACE" patch svc lingo-facade --type=json \
  -p='[{"op":"replace","path":"/spec/ports/0/nodePort","value":30800}]'

client_secret_file=$(mktemp); chmod 600 "$client_secret_file"
.venv/bin/python -m lingo_webhook.clients manifest e2e --namespace "$NAMESPACE" 2> >(sed -n 's/.*(shown once): //p' > "$client_secret_file") \
  | kubectl apply -f -
sleep 1
.venv/bin/python -m lingo_loopback.e2e_check --facade http://127.0.0.1:8000 --client-id e2e \
  --client-secret-file "$client_secret_file" --worker-timeout 300
kubectl get streamingsessions -A
