# Shared by the project's scripts: find Swift, install what the build and tests need.
# Idempotent: installs only what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="$PATH:/opt/swift/usr/bin"

log() { printf '==> %s\n' "$*" >&2; }

# Debian packages: the guest build (gcc, binutils, make), QEMU (the yardstick the tests and
# benchmarks compare against), and python3 for the benchmark timer.
ensure_packages() {
    local wanted=(gcc make binutils qemu-system-x86 python3)
    local missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if [[ $(id -u) -ne 0 ]]; then
            log "missing packages: ${missing[*]} (run as root, or install them with apt-get)"
            return 1
        fi
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    command -v swift >/dev/null || { log "swift not found (expected in /opt/swift/usr/bin)"; return 1; }
    # The metrics test parses GET /metrics with the reference Python parser.
    python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install -q prometheus-client >/dev/null \
        || log "could not install prometheus-client (pip); the metrics test will be skipped"
    # Network tests run UDP echo peers with socat inside their namespaces.
    command -v socat >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null || true; }
}

build_guest() {
    log "building the test guest (make -C guest)"
    make -s -C "$ROOT/guest"
}

kvm_status() {
    if [[ -r /dev/kvm && -w /dev/kvm ]]; then echo "available"; else echo "absent"; fi
}
