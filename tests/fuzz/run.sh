#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] [TARGET...] — build the libFuzzer targets of
# tests/fuzz (clang, ASan+UBSan with leak detection, the library
# instrumented for coverage; build tree build-fuzz/) and run each TARGET
# (default: all) for SECONDS (default 30) from its seed corpus. Fails on any
# finding: crash, undefined behaviour, leak, timeout (10 s per input), or
# out-of-memory (4 GiB).
#   findings (the input that failed):  build-fuzz/fuzz-findings/TARGET/
#   corpus grown by the run:           build-fuzz/fuzz-corpus/TARGET/
#   libFuzzer's output:                build-fuzz/fuzz-logs/TARGET.log
# Environment: DSV4_SHARED_DIR (default ../shared), DSV4_FUZZ_BUILD (build
# tree, default build-fuzz), CC (default clang), DSV4_FUZZ_JOBS (parallel
# fuzzing processes per target, default 1), DSV4_FUZZ_PARALLEL (targets run
# at once, default 1; CI: 2, one per core). docs/fuzzing.md says more.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
secs=${1:-30}
[ $# -gt 0 ] && shift
all=(chat_render chat_parser request messages tokenizer tokenizer_load config checkpoint schema constraint session size)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
build=${DSV4_FUZZ_BUILD:-build-fuzz}
shared=${DSV4_SHARED_DIR:-$root/../shared}
jobs=${DSV4_FUZZ_JOBS:-1}
par=${DSV4_FUZZ_PARALLEL:-1}

if [ ! -d "$build/meson-private" ]; then
    CC=${CC:-clang} meson setup "$build" --buildtype=debugoptimized -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link \
        -Dshared_dir="$shared" >/dev/null
fi
exes=()
for t in "${targets[@]}"; do exes+=("tests/fuzz/fuzz_$t"); done
ninja -C "$build" tools/dsv4-synth "${exes[@]}" >/dev/null

export DSV4_SHARED_DIR=$shared
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# the library's worker threads: one per process, no OpenMP spinning
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
status=0
# one target: run it for $secs, then print its line (and its findings)
run_one() {
    local t=$1 corpus findings log dict rc execs rate n_found result
    corpus=$build/fuzz-corpus/$t findings=$build/fuzz-findings/$t log=$build/fuzz-logs/$t.log
    mkdir -p "$corpus" "$findings" "$(dirname "$log")"
    local args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
                -artifact_prefix="$findings/")
    dict=tests/fuzz/dict/$t.dict
    [ -f "$dict" ] || dict=""
    case $t in
        chat_parser) dict=tests/fuzz/dict/dsml.dict ;;
        chat_render | request | messages | tokenizer_load | config | checkpoint | schema | constraint)
            dict=tests/fuzz/dict/json.dict ;;
    esac
    [ -n "$dict" ] && args+=(-dict="$dict")
    [ "$jobs" -gt 1 ] && args+=(-fork="$jobs")
    rc=0
    "$build/tests/fuzz/fuzz_$t" "${args[@]}" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -n 1 | awk '{print $2}')
    rate=$(grep -a 'stat::average_exec_per_sec' "$log" | tail -n 1 | awk '{print $2}')
    n_found=$(find "$findings" -type f | wc -l)
    result=ok
    if [ "$rc" -ne 0 ] || [ "$n_found" -ne 0 ]; then
        result="FINDING (exit $rc, $n_found file(s) in $findings; log $log)"
    fi
    printf '%-16s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$(find "$corpus" -type f | wc -l)" "$result"
    if [ "$result" != ok ]; then
        grep -a -m 5 -E 'ERROR|runtime error|fuzz property failed|SUMMARY' "$log" | sed 's/^/    /' || true
        return 1
    fi
}
printf '%-16s %12s %10s %8s  %s\n' target executions exec/s corpus result
if [ "$par" -le 1 ]; then
    for t in "${targets[@]}"; do run_one "$t" || status=1; done
else
    # $par targets at a time, each printing its line when it ends
    pids=()
    for t in "${targets[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do wait -n || true; done
        run_one "$t" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || status=1; done
fi
exit $status
