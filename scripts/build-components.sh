#!/usr/bin/env bash
# Build every plugin, benchmark and test component for wasm32-wasip2.
#
# Output: target/guest/wasm32-wasip2/guest/<name>.wasm (a separate target dir,
# so this can run from a build script while the outer cargo holds target/).
# Installs the wasm32-wasip2 target if it is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "build-components: installing the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2 >&2
fi

pkgs=()
# `build-components.sh plugins` builds the plugins only (the quick start).
manifests=(plugins/*/Cargo.toml)
if [ "${1:-}" != plugins ]; then
    manifests+=(benches/*/Cargo.toml tests/components/*/Cargo.toml tests/attacks/*/Cargo.toml)
fi
for manifest in "${manifests[@]}"; do
    [ -f "$manifest" ] || continue
    # Only components (cdylibs); shared guest libraries come in as dependencies.
    grep -q 'crate-type = \["cdylib"\]' "$manifest" || continue
    name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n1)
    pkgs+=(-p "$name")
done

# A build script's environment carries the outer build's flags and wrappers
# (clippy, coverage); none of them apply to the guests.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_TARGET CARGO_TARGET_DIR
# Reproducible components: no checkout or home paths in the bytes, so every
# clone of a commit builds the same digests (and publishes the same versions).
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export RUSTFLAGS="--remap-path-prefix=$root=/capstan --remap-path-prefix=$cargo_home=/cargo"

cargo build --profile guest --target wasm32-wasip2 --target-dir "$root/target/guest" "${pkgs[@]}" >&2
# The components of this checkout (not stale outputs of removed crates).
for ((i = 1; i < ${#pkgs[@]}; i += 2)); do
    echo "$root/target/guest/wasm32-wasip2/guest/${pkgs[i]//-/_}.wasm"
done
