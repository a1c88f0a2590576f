#!/usr/bin/env bash
# Run examples/go-service/pipeline.yaml locally: git-clone, then `go vet` and
# `go test` in a Go image built from Debian packages, on podman.
#
# Sets up what it needs, once: podman, runc and mmdebstrap from the
# machine's apt sources (as root), a `podman system service` on a socket
# under $CAPSTAN_STATE_DIR (or ~/.capstan) unless CAPSTAN_CONTAINER_HOST or
# DOCKER_HOST names one, the image localhost/capstan-golang:bookworm
# (Debian's golang-go, ~600 MiB), and the project's plugins in the local
# registry (as the quick start). Extra arguments go to `capstan run`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
state="${CAPSTAN_STATE_DIR:-$HOME/.capstan}"
image=localhost/capstan-golang:bookworm
mkdir -p "$state/podman"

if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null; then
    echo "==> installing podman, runc, catatonit and mmdebstrap (apt-get)" >&2
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y --no-install-recommends podman runc catatonit mmdebstrap >&2
fi
# runc (crun cannot run on a cgroup v1/hybrid host) and rlimits every host accepts.
conf="$state/podman/containers.conf"
printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\nruntime = "runc"\n' > "$conf"
export CONTAINERS_CONF="$conf"

if [ -z "${CAPSTAN_CONTAINER_HOST:-}${DOCKER_HOST:-}" ]; then
    sock="$state/podman/podman.sock"
    if ! curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
        echo "==> starting podman system service on $sock" >&2
        rm -f "$sock"
        nohup podman system service --time=0 "unix://$sock" >"$state/podman/service.log" 2>&1 &
        for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    fi
    export CAPSTAN_CONTAINER_HOST="unix://$sock"
fi

if ! podman image exists "$image"; then
    echo "==> building $image from Debian packages (mmdebstrap, ~1 min)" >&2
    tar="$(mktemp -d)/rootfs.tar"
    mmdebstrap --variant=essential --include=busybox,golang-go,ca-certificates \
        --format=tar bookworm "$tar" >&2
    podman import -q "$tar" "$image" >&2
    rm -rf "$(dirname "$tar")"
fi

echo "==> building capstan and the plugins" >&2
scripts/build-components.sh plugins >/dev/null
cargo build -p capstan >&2
for plugin in git_clone script; do
    target/debug/capstan --state-dir "$state" plugin publish --skip-existing \
        "target/guest/wasm32-wasip2/guest/$plugin.wasm" >&2
done
echo "==> running examples/go-service/pipeline.yaml" >&2
exec target/debug/capstan --state-dir "$state" run examples/go-service/pipeline.yaml "$@"
