#!/usr/bin/env bash
# Which system calls each driver domain kind makes after `Sandbox.enter`, against its seccomp
# allowlist: runs blk, net, rtl8139 and probe workloads (every fault hook, standby takeover, stop/cont,
# pings, shutdown) with `strace -f` on the core, then prints per domain kind the calls seen
# after the `seccomp(SECCOMP_SET_MODE_FILTER, ...)` boundary, with the arguments that matter,
# and the differences with the lists (allowed but not seen; seen but not allowed).
# Root, /dev/kvm, iproute2. About 3 minutes. Exit status 1 when a call is missing from a list.
#   seccomp-trace.sh [--only blk,net,rtl8139,probe] [--out DIR]
#   seccomp-trace.sh --analyze TRACE...          (re-read traces from an earlier run)
source "$(dirname "$0")/common.sh"
cd "$ROOT"

if [[ $(id -u) -ne 0 ]]; then log "needs root (namespaces, tap devices, strace of the core)"; exit 2; fi
if [[ $(kvm_status) != available ]]; then log "needs /dev/kvm"; exit 2; fi
ensure_packages
command -v strace >/dev/null || {
    log "installing strace"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null
}
if [[ "${1:-}" != --analyze ]]; then
    build_guest
    log "building bulkhead and the tests (swift build --build-tests)"
    swift build --build-tests >/dev/null
fi
exec python3 "$ROOT/orchestration/scripts/seccomp-trace.py" --root "$ROOT" "$@"
