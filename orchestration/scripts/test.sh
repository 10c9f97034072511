#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests that boot real guests under KVM
# (skipped, with the reason printed, where /dev/kvm is absent) and under QEMU.
source "$(dirname "$0")/common.sh"
cd "$ROOT"

ensure_packages
build_guest
log "building bulkhead and the tests (swift build --build-tests)"
swift build --build-tests
if [[ $(kvm_status) != available ]]; then
    log "NOTE: /dev/kvm is not usable here: the tests that boot guests will be skipped"
fi
log "running the tests (swift test)"
# The full log goes to .build/test-output.txt; the terminal gets it without the "started" lines.
set +e
# --no-parallel: the integration suites each boot VMs whose guests poll at full speed; on two
# cores, running them side by side starves them into timeouts.
swift test --skip-build --no-parallel 2>&1 | tee "$ROOT/.build/test-output.txt" | grep -v '^◇'
status=${PIPESTATUS[0]}
set -e
# Fuzz smoke run: every libFuzzer target for a few seconds, then the regression inputs
# (orchestration/scripts/fuzz.sh; longer runs: fuzz.sh 600). The tests' status decides first;
# a fuzz crash fails the run too.
log "fuzz smoke run (orchestration/scripts/fuzz.sh ${BULKHEAD_FUZZ_SECONDS:-10})"
fuzz_status=0
"$ROOT/orchestration/scripts/fuzz.sh" "${BULKHEAD_FUZZ_SECONDS:-10}" || fuzz_status=$?
if ((status == 0 && fuzz_status != 0)); then status=$fuzz_status; fi
exit "$status"
