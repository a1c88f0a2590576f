#!/usr/bin/env bash
# Quick start: build Capstan and its plugins, then run the example pipeline
# (examples/hello/pipeline.yaml) on the embedded default: a local state store
# in ~/.capstan (or $CAPSTAN_STATE_DIR), the project's plugins published to
# the local registry in it (STATE_DIR/registry), no cluster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> building the plugins for wasm32-wasip2" >&2
scripts/build-components.sh plugins >/dev/null
echo "==> building capstan" >&2
cargo build -p capstan >&2
echo "==> publishing the project's plugins to the local registry" >&2
for plugin in write_file sha256sum word_count git_clone approve script; do
    # --skip-existing: a version already there stays (versions are immutable).
    target/debug/capstan plugin publish --skip-existing \
        "target/guest/wasm32-wasip2/guest/$plugin.wasm" >&2
done
echo "==> running examples/hello/pipeline.yaml" >&2
exec target/debug/capstan run examples/hello/pipeline.yaml "$@"
