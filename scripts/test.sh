#!/usr/bin/env bash
# The whole test suite: formatting, lints, every unit and integration test
# (real components, real runtime, real child processes), and doc tests.
# Sets up what it needs on a fresh machine: the wasm32-wasip2 target, the
# Debian packages of the real servers the tests use (scripts/test-deps.sh),
# and the Kubernetes binaries (kube-apiserver, and for the tests on a real
# node kubelet, kube-scheduler, kube-controller-manager, with Debian's
# containerd) built from Debian's source package (scripts/kube-apiserver.sh
# --node, cached in ~/.cache/capstan).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> test dependencies" >&2
scripts/test-deps.sh
echo "==> Kubernetes binaries (built once per machine, in the background)" >&2
mkdir -p target
scripts/kube-apiserver.sh --node >target/kube-apiserver.log 2>&1 &
kube_build=$!
echo "==> components" >&2
scripts/build-components.sh >/dev/null
echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
if ! wait "$kube_build"; then
    echo "scripts/kube-apiserver.sh failed; the Kubernetes-mode tests need it:" >&2
    tail -n 40 target/kube-apiserver.log >&2
    exit 1
fi
echo "==> tests" >&2
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
echo "==> doc tests" >&2
cargo test --workspace --locked --doc
