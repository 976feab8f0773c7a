# Shared helpers for guest test scripts (sourced; bash, run inside the VM as root by run-in-vm.sh).
# Every test prints exactly one line "VMTEST RESULT <name> ok|fail key=value..." that the host asserts on.

readonly GUEST_REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
readonly BLOCKMIRROR_BIN="$GUEST_REPO_DIR/bin/blockmirror"
readonly DEVICE_READY_TIMEOUT_SECONDS=60
readonly PROCESS_EXIT_TIMEOUT_SECONDS=60
readonly STEP_TIMEOUT_SECONDS=120

# Progress line on the guest output, tagged with the test name and uptime (timings are for humans only).
say() { echo "[$TEST_NAME $(cut -d' ' -f1 /proc/uptime)s] $*"; }

# The machine-readable verdict; exactly one per test.
result() { echo "VMTEST RESULT $TEST_NAME $*"; }

# What a reader needs to tell a harness problem from a blockmirror one: the node's log and the kernel's.
dump_diagnostics() {
  local attach_log=$1
  echo "----- $TEST_NAME: attach log ($attach_log) -----"
  tail -n 60 "$attach_log" 2>/dev/null || echo "(none)"
  echo "----- $TEST_NAME: dmesg tail -----"
  dmesg | tail -n 40
  echo "----- $TEST_NAME: end of diagnostics -----"
}

# Start `blockmirror attach` in the background; sets ATTACH_PID.
start_attach() {
  local store=$1 size=$2 device=$3 control=$4 log=$5
  say "starting: blockmirror attach --store $store --size $size --device $device --control $control"
  node "$BLOCKMIRROR_BIN" attach --store "$store" --size "$size" --device "$device" --control "$control" > "$log" 2>&1 &
  ATTACH_PID=$!
}

# Wait until the kernel reports the expected size for DEVICE; fails early if the attach process died.
wait_for_device_size() {
  local device=$1 expected_bytes=$2 pid=$3 deadline=$((SECONDS + DEVICE_READY_TIMEOUT_SECONDS)) size
  while (( SECONDS < deadline )); do
    size=$(blockdev --getsize64 "$device" 2>/dev/null || echo 0)
    if [[ "$size" == "$expected_bytes" ]]; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { say "attach process $pid exited before $device was ready"; return 1; }
    sleep 0.2
  done
  say "$device size is ${size:-?}, not $expected_bytes, after $DEVICE_READY_TIMEOUT_SECONDS s"
  return 1
}

# Wait for PID (a child of this shell: do not call in a subshell) to exit within PROCESS_EXIT_TIMEOUT_SECONDS;
# sets EXIT_STATUS to its exit status, or to "running" when it did not exit.
wait_for_exit() {
  local pid=$1 deadline=$((SECONDS + PROCESS_EXIT_TIMEOUT_SECONDS))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then EXIT_STATUS=running; return 0; fi
  EXIT_STATUS=0
  wait "$pid" || EXIT_STATUS=$?
}
