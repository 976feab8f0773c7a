#!/usr/bin/env bash
# Inside the VM: once the node behind /dev/nbd1 is killed with SIGKILL, I/O on the device must fail
# (not hang): a direct read under `timeout 60` must exit non-zero, and not with timeout's 124.
set -uo pipefail
readonly TEST_NAME=nbd-kill
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly SIZE_BYTES=67108864
readonly DEVICE=/dev/nbd1
readonly WORK_DIR=/tmp/$TEST_NAME
readonly STORE=$WORK_DIR/store.img
readonly CONTROL=$WORK_DIR/store.ctl
readonly ATTACH_LOG=$WORK_DIR/attach.log
readonly READ_TIMEOUT_SECONDS=60
readonly TIMEOUT_EXIT_CODE=124

# Give up: verdict line with the step that failed, then diagnostics.
fail() {
  result "fail step=$1 ${2:-}"
  dump_diagnostics "$ATTACH_LOG"
  kill -9 "$ATTACH_PID" 2>/dev/null
  exit 1
}

rm -rf "$WORK_DIR"; mkdir -p "$WORK_DIR"
truncate -s "$SIZE_BYTES" "$STORE" || fail create-store
start_attach "$STORE" 64M "$DEVICE" "$CONTROL" "$ATTACH_LOG"
wait_for_device_size "$DEVICE" "$SIZE_BYTES" "$ATTACH_PID" || fail device-ready
timeout "$READ_TIMEOUT_SECONDS" dd if="$DEVICE" of=/dev/null bs=4k count=1 iflag=direct status=none ||
  fail read-before-kill "exit=$?"

say "kill -9 $ATTACH_PID"
kill -9 "$ATTACH_PID"
attach_status=$(wait_for_exit "$ATTACH_PID")
[[ "$attach_status" != running ]] || fail attach-still-running "after SIGKILL"

started_s=$SECONDS
read_status=0
timeout "$READ_TIMEOUT_SECONDS" dd if="$DEVICE" of=/dev/null bs=4k count=1 iflag=direct 2> "$WORK_DIR/dd.err" || read_status=$?
read_seconds=$((SECONDS - started_s))
say "dd after kill: exit $read_status in $read_seconds s: $(tr '\n' ' ' < "$WORK_DIR/dd.err")"
[[ $read_status != "$TIMEOUT_EXIT_CODE" ]] || fail read-hung "read_exit=$read_status"
[[ $read_status != 0 ]] || fail read-succeeded "read_exit=0 dd=\"$(tr '\n' ' ' < "$WORK_DIR/dd.err")\""

result "ok attach_exit=$attach_status read_exit=$read_status read_seconds=$read_seconds"
