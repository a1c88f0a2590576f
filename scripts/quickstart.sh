#!/usr/bin/env bash
# Quick start: build Capstan and its plugins, then run the example pipeline
# (examples/hello/pipeline.yaml) on the embedded default: a local state store
# in ~/.capstan (or $CAPSTAN_STATE_DIR), plugins from local files, no cluster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> building the plugins for wasm32-wasip2" >&2
scripts/build-components.sh >/dev/null
echo "==> building capstan" >&2
cargo build -p capstan >&2
echo "==> running examples/hello/pipeline.yaml" >&2
exec target/debug/capstan run examples/hello/pipeline.yaml "$@"
