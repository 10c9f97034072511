#!/usr/bin/env bash
# The test suite under AddressSanitizer and ThreadSanitizer (not part of CI: each build is a
# separate full build, 10+ minutes on two cores).
#
#   orchestration/scripts/sanitizers.sh [address|thread]... [-- SWIFT_TEST_ARGS...]
#
# Each sanitizer gets its own scratch path (.build-asan, .build-tsan; git-ignored). Extra
# arguments after `--` go to `swift test`, e.g. `-- --filter 'BulkheadVirtioTests|BulkheadChannelTests'`.
# Logs go to .build-<san>/test-output.txt. Exits non-zero if any run failed.
source "$(dirname "$0")/common.sh"
cd "$ROOT"

sanitizers=()
while (($#)); do
    case $1 in
        --) shift; break ;;
        address|thread) sanitizers+=("$1"); shift ;;
        *) log "usage: $0 [address|thread]... [-- SWIFT_TEST_ARGS...]"; exit 2 ;;
    esac
done
((${#sanitizers[@]})) || sanitizers=(address thread)

ensure_packages
build_guest
# The Swift runtime's crash backtracer can sit for minutes on a sanitizer abort; the
# sanitizer's own report is what we want.
export SWIFT_BACKTRACE=enable=no
# TSan keeps going after a report so that one run lists everything; the run fails at the end.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1}
base_asan_options=$ASAN_OPTIONS
base_tsan_options=$TSAN_OPTIONS

overall=0
for san in "${sanitizers[@]}"; do
    case $san in address) scratch=.build-asan ;; thread) scratch=.build-tsan ;; esac
    log "building with --sanitize=$san ($scratch)"
    start=$SECONDS
    if ! swift build --build-tests --sanitize="$san" --scratch-path "$scratch"; then
        log "build with --sanitize=$san failed"; overall=1; continue
    fi
    log "built in $((SECONDS - start)) s; running the tests under --sanitize=$san"
    start=$SECONDS
    # The integration tests run the instrumented `bulkhead` and `bulkhead-domain` as child
    # processes whose stderr the tests swallow: every process writes its reports here instead.
    # (A sandboxed domain cannot open files: its reports are lost, but it is the same code as
    # the unit tests run in-process.)
    reports_dir="$ROOT/$scratch/sanitizer-reports"
    rm -rf "$reports_dir"; mkdir -p "$reports_dir"
    export ASAN_OPTIONS="$base_asan_options:log_path=$reports_dir/asan"
    export TSAN_OPTIONS="$base_tsan_options:log_path=$reports_dir/tsan"
    set +e
    swift test --skip-build --sanitize="$san" --scratch-path "$scratch" "$@" 2>&1 \
        | tee "$ROOT/$scratch/test-output.txt" | grep -v '^◇'
    status=${PIPESTATUS[0]}
    set -e
    reports=$(cat "$reports_dir"/* 2>/dev/null | grep -c -E '^(==[0-9]+==ERROR: AddressSanitizer|WARNING: ThreadSanitizer)' || true)
    log "--sanitize=$san: swift test exit status $status, $reports sanitizer report(s) in $scratch/sanitizer-reports/, $((SECONDS - start)) s (log: $scratch/test-output.txt)"
    if ((status != 0 || reports != 0)); then overall=1; fi
done
exit "$overall"
