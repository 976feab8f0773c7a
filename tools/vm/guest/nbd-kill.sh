#!/usr/bin/env bash
# Inside the VM: when the node behind /dev/nbd1 is killed with SIGKILL, I/O on the device must not hang
# and must not return data.
#  - While something still holds the device open (as a mounted file system would), the kernel keeps
#    its size, and a direct read under `timeout 60` must fail with an error: not succeed, not 124.
#  - Once nothing holds it open, the NBD ioctl interface has reset the device to size 0 (what the
#    kernel does when the NBD_DO_IT process goes away), so a read either fails or reads 0 bytes.
# Note: SIGSTOP cannot be used to get a request "in flight": any signal interrupts NBD_DO_IT in the
# kernel (wait_event_interruptible) and tears the device down, so the test holds the device open instead.
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
readonly HOLDER_FD=7

# Give up: verdict line with the step that failed, then diagnostics.
fail() {
  result "fail step=$1 ${2:-}"
  dump_diagnostics "$ATTACH_LOG"
  kill -9 "$ATTACH_PID" 2>/dev/null
  exit 1
}

# One direct 4 KiB read at the start of the device under `timeout`; sets READ_STATUS, READ_SECONDS, READ_DD.
direct_read() {
  local started_s=$SECONDS
  READ_STATUS=0
  timeout "$READ_TIMEOUT_SECONDS" dd if="$DEVICE" of=/dev/null bs=4k count=1 iflag=direct 2> "$WORK_DIR/dd.err" || READ_STATUS=$?
  READ_SECONDS=$((SECONDS - started_s))
  READ_DD=$(tr '\n' ' ' < "$WORK_DIR/dd.err")
}

rm -rf "$WORK_DIR"; mkdir -p "$WORK_DIR"
truncate -s "$SIZE_BYTES" "$STORE" || fail create-store
start_attach "$STORE" 64M "$DEVICE" "$CONTROL" "$ATTACH_LOG"
wait_for_device_size "$DEVICE" "$SIZE_BYTES" "$ATTACH_PID" || fail device-ready
direct_read
[[ $READ_STATUS == 0 && "$READ_DD" == *"1+0 records in"* ]] || fail read-before-kill "exit=$READ_STATUS dd=\"$READ_DD\""

eval "exec $HOLDER_FD< $DEVICE"
say "holding $DEVICE open; kill -9 $ATTACH_PID"
kill -9 "$ATTACH_PID"
wait_for_exit "$ATTACH_PID"
attach_status=$EXIT_STATUS
[[ "$attach_status" != running ]] || fail attach-still-running "after SIGKILL"

direct_read
held_status=$READ_STATUS held_seconds=$READ_SECONDS
held_size_bytes=$(blockdev --getsize64 "$DEVICE" 2>/dev/null || echo unknown)
say "read while held open: exit $held_status after $held_seconds s, device size $held_size_bytes: $READ_DD"
[[ $held_status != "$TIMEOUT_EXIT_CODE" ]] || fail held-read-hung "held_exit=$held_status"
[[ $held_status != 0 ]] || fail held-read-succeeded "held_exit=0 held_size_bytes=$held_size_bytes dd=\"$READ_DD\""

eval "exec $HOLDER_FD<&-"
direct_read
released_status=$READ_STATUS
released_size_bytes=$(blockdev --getsize64 "$DEVICE" 2>/dev/null || echo unknown)
say "read after release: exit $released_status after $READ_SECONDS s, device size $released_size_bytes: $READ_DD"
[[ $released_status != "$TIMEOUT_EXIT_CODE" ]] || fail released-read-hung "released_exit=$released_status"
if [[ $released_status == 0 ]]; then
  [[ "$READ_DD" == *"0+0 records in"* ]] ||
    fail released-read-returned-data "released_exit=0 released_size_bytes=$released_size_bytes dd=\"$READ_DD\""
  released_outcome=eof
else
  released_outcome=io-error
fi

result "ok attach_exit=$attach_status held_exit=$held_status held_seconds=$held_seconds held_size_bytes=$held_size_bytes released_exit=$released_status released_outcome=$released_outcome released_size_bytes=$released_size_bytes"
