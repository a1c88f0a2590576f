#!/usr/bin/env bash
# Run cargo-fuzz targets for a fixed time each, FUZZ_JOBS at a time (default
# 2, one per core), and print each run's executions, coverage and outcome.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 1800 s, all six targets
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). Builds once with
# `-O -a -s none` (release, debug assertions, no sanitizer: the code is safe
# Rust). New inputs go to a scratch corpus seeded from fuzz/corpus/TARGET, so
# the committed corpus is not touched; a crash is saved under
# fuzz/artifacts/TARGET/ and makes the script exit 1; logs in fuzz/logs/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-1800}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pipeline manifest lockfile packfile pktline sync_plan)

cd "$root/fuzz"
export CARGO_TARGET_DIR="$root/fuzz/target"
cargo +nightly fuzz build -O -a -s none >&2
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

run_one() {
    local t=$1
    mkdir -p "$scratch/$t" "$root/fuzz/artifacts/$t" "$root/fuzz/logs"
    local extra=()
    [ "$t" = sync_plan ] && extra=(-timeout=10)
    "$bin/$t" "$scratch/$t" "$root/fuzz/corpus/$t" \
        -max_total_time="$secs" -print_final_stats=1 "${extra[@]}" \
        -artifact_prefix="$root/fuzz/artifacts/$t/" >"$root/fuzz/logs/$t.log" 2>&1
}

failed=0
jobs="${FUZZ_JOBS:-2}"
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    pids=()
    for t in "${targets[@]:i:jobs}"; do
        echo "fuzz: $t for ${secs}s" >&2
        run_one "$t" &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
done

printf '%-10s %12s %8s  %s\n' target executions edges outcome
for t in "${targets[@]}"; do
    log="$root/fuzz/logs/$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if grep -q '^==[0-9]*== ERROR\|^SUMMARY\|panicked at\|deadly signal\|Test unit written' "$log"; then
        outcome="CRASH (see fuzz/artifacts/$t/)"
        failed=1
        tail -30 "$log" >&2
    else
        outcome="no crash"
    fi
    printf '%-10s %12s %8s  %s\n' "$t" "${execs:-?}" "${edges:-?}" "$outcome"
done
exit $failed
