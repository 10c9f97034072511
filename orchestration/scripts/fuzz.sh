#!/usr/bin/env bash
# Fuzzes the parsers of hostile input with libFuzzer (the package in Fuzz/), then replays the
# regression inputs (Fuzz/regressions/<target>/: inputs that once crashed, kept fixed).
#
#   orchestration/scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60; CI's smoke run uses 10)
#
# FUZZ_TARGETS="FuzzVirtqueue FuzzELFLoader" picks targets; FUZZ_JOBS=N runs N workers per target.
# The seed corpus (Fuzz/corpus/<target>/, checked in) is read, never written: what the fuzzer
# finds goes to Fuzz/.build/corpus/<target>/ and a crashing input to Fuzz/.build/artifacts/.
# A crash fails the script; fix it, then keep the input under Fuzz/regressions/<target>/.
# Builds with -sanitize=fuzzer,address into Fuzz/.build (git-ignored), apart from the main build.
source "$(dirname "$0")/common.sh"
cd "$ROOT"

seconds=${1:-60}
targets=(${FUZZ_TARGETS:-FuzzControlMessage FuzzControlChannel FuzzSupervisorMessages FuzzVirtqueue FuzzNetFrames FuzzELFLoader FuzzVMSpec FuzzAPIParsers})
scratch="$ROOT/Fuzz/.build"
# The Swift runtime's crash backtracer can take minutes on a fuzzer's crash; libFuzzer and
# ASan print what we need.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:symbolize=1}

log "building the fuzz targets (swift build -c release --package-path Fuzz, -sanitize=fuzzer,address)"
start=$SECONDS
# The linker's "Cannot export local symbol '__asan_…'" warnings are noise.
set +e
swift build -c release --package-path Fuzz --scratch-path "$scratch" \
    -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address 2>&1 \
    | grep -v -e "Cannot export local symbol" -e "^/usr/bin/ld.gold: warning"
build_status=${PIPESTATUS[0]}
set -e
((build_status == 0)) || { log "the fuzz build failed"; exit "$build_status"; }
log "fuzz build: $((SECONDS - start)) s"
bin=$(swift build -c release --package-path Fuzz --scratch-path "$scratch" --show-bin-path)

if [[ ! -d Fuzz/corpus ]]; then
    log "no seed corpus: writing Fuzz/corpus with FuzzSeeds"
    "$bin/FuzzSeeds" Fuzz/corpus
fi

failed=()
for target in "${targets[@]}"; do
    work="$scratch/corpus/$target"
    artifacts="$scratch/artifacts/$target"
    mkdir -p "$work" "$artifacts" "Fuzz/corpus/$target"
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/")
    # Parallel workers log to fuzz-N.log in the working directory: run them from the scratch path.
    if ((${FUZZ_JOBS:-1} > 1)); then options+=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
    # The channel's input holds a whole ring (64 KiB); libFuzzer would stop at 4 KiB.
    if [[ $target == FuzzControlChannel ]]; then options+=(-max_len=65547); fi
    log "fuzzing $target for $seconds s"
    if ! (cd "$scratch" && "$bin/$target" "${options[@]}" "$work" "$ROOT/Fuzz/corpus/$target") >"$scratch/$target.log" 2>&1; then
        failed+=("$target")
        tail -n 60 "$scratch/$target.log" >&2
        log "$target CRASHED: input in $artifacts/ (reproduce: $bin/$target $artifacts/<file>)"
    else
        { grep -E '^stat::number_of_executed_units|^Done' "$scratch/$target.log" || true; } | tr '\n' ' ' >&2; echo >&2
    fi
done

for target in "${targets[@]}"; do
    dir="Fuzz/regressions/$target"
    [[ -d $dir ]] || continue
    inputs=("$dir"/*)
    [[ -e ${inputs[0]} ]] || continue
    log "replaying ${#inputs[@]} regression input(s) of $target"
    if ! "$bin/$target" -runs=1 "${inputs[@]}" >"$scratch/$target.regressions.log" 2>&1; then
        failed+=("$target (regressions)")
        tail -n 40 "$scratch/$target.regressions.log" >&2
    fi
done

if ((${#failed[@]})); then
    log "fuzzing FAILED: ${failed[*]}"
    exit 1
fi
log "fuzzing OK: ${#targets[@]} targets, $seconds s each, regressions replayed"
