#!/usr/bin/env bash
# Recovery time of the blk driver domain: while blk-verify runs on a 64 MiB disk, SIGKILL the
# serving domain KILLS times (default 60) at random 50-150 ms intervals; print what the core
# measured from each death to the first request the next domain completed (median, p99) and
# whether the guest's data survived. Release build.
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_packages
build_guest
swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"
KILLS="${KILLS:-60}"
DISK="$(mktemp /tmp/bulkhead-recovery-XXXXXX.img)"
OUT="$(mktemp)" ERR="$(mktemp)"
trap 'rm -f "$DISK" "$OUT" "$ERR"' EXIT
truncate -s 64M "$DISK"

"$BIN/bulkhead" run --kernel guest/build/guest.elf --disk "$DISK" \
    --cmdline "workload=blk-verify seconds=$((KILLS / 8 + 4)) seed=9 qd=32" >"$OUT" 2>"$ERR" &
CORE=$!
active_domain() {
    for child in $(cat /proc/$CORE/task/*/children 2>/dev/null); do
        [[ "$(cat /proc/$child/comm 2>/dev/null)" == blk0 ]] && { echo "$child"; return; }
    done
}
killed=0
sleep 0.5
while ((killed < KILLS)) && kill -0 "$CORE" 2>/dev/null; do
    sleep "$(printf "0.%03d" $((RANDOM % 100 + 50)))"
    pid=$(active_domain)
    [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1))
done
wait "$CORE"
status=$?
result=$(grep '^BULKHEAD-RESULT' "$OUT")
report=$(grep 'bulkhead: domain blk0' "$ERR")
passes=$(sed -n 's/.* passes=\([0-9]*\).*/\1/p' <<<"$result")
check=$(python3 guest/tools/check-blk-verify.py "$DISK" --seed 9 --pass "$passes" 2>&1)
echo "SIGKILLs sent: $killed; bulkhead exit status: $status"
echo "guest:  $result"
echo "core:   ${report#bulkhead: }"
echo "host:   $check"
