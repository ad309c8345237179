#!/usr/bin/env bash
# Removes the kind cluster of e2e/kind/run.sh (KIND_CLUSTER, default strom) and with it
# everything installed in it. The image stays in the local Docker.
set -euo pipefail
CLUSTER=${KIND_CLUSTER:-strom}
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind delete cluster --name "$CLUSTER"
else
    echo "no kind cluster named $CLUSTER" >&2
fi
