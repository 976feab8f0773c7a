#!/usr/bin/env bash
# Boot a throwaway Linux VM (Debian 6.12 kernel, QEMU TCG) whose root is this host's root, read-only,
# and run COMMAND there as root in the repository directory. Prints the command's output and exits
# with its exit code. See docs/vm.md.
#
# usage: tools/vm/run-in-vm.sh [--timeout SECONDS] [--memory MIB] [--env NAME=VALUE]... [--keep] [--console] -- COMMAND...
#
# Exit codes besides the command's own: 77 skipped (QEMU cannot run or the kernel package cannot be
# fetched), 90 the guest did not boot or did not report an exit code, 91 timeout, 92 preparation failed,
# 2 usage error.
set -euo pipefail

readonly EXIT_SKIP=77
readonly EXIT_BOOT_FAILED=90
readonly EXIT_TIMEOUT=91
readonly EXIT_USAGE=2
readonly DEFAULT_TIMEOUT_SECONDS=300
readonly DEFAULT_MEMORY_MIB=2048
readonly CPU_COUNT=2
readonly NINEP_ROOT_TAG=hostroot
readonly NINEP_RESULTS_TAG=results
readonly CONSOLE_TAIL_LINES=40
readonly VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly REPO_DIR="$(cd "$VM_DIR/../.." && pwd -P)"

# Harness messages go to stderr, tagged, so they never mix with the guest command's stdout.
log() { echo "run-in-vm: $*" >&2; }

usage() {
  sed -n '6,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "$EXIT_USAGE"
}

timeout_seconds=$DEFAULT_TIMEOUT_SECONDS
memory_mib=$DEFAULT_MEMORY_MIB
keep_results=${BLOCKMIRROR_VM_KEEP:-}
show_console=
guest_env=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --timeout) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; timeout_seconds=$2; shift 2 ;;
    --memory) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; memory_mib=$2; shift 2 ;;
    --env) [[ $# -ge 2 && "$2" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage; guest_env+=("$2"); shift 2 ;;
    --keep) keep_results=1; shift ;;
    --console) show_console=1; shift ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) usage ;;
  esac
done
[[ $# -gt 0 ]] || usage

# QEMU missing or unable to start at all is the one host condition that skips instead of failing.
check_qemu() {
  command -v qemu-system-x86_64 >/dev/null ||
    { log "SKIP: qemu-system-x86_64 not found (apt-get install qemu-system-x86)"; exit "$EXIT_SKIP"; }
  qemu-system-x86_64 -version >/dev/null 2>&1 ||
    { log "SKIP: qemu-system-x86_64 cannot run: $(qemu-system-x86_64 -version 2>&1 | head -n 3)"; exit "$EXIT_SKIP"; }
}

# Write the command and its environment where the guest init reads them.
write_guest_inputs() {
  local results=$1; shift
  {
    printf 'REPO_DIR=%q\n' "$REPO_DIR"
    printf 'GUEST_PATH=%q\n' "$PATH"
  } > "$results/guest.env"
  {
    echo '# Written by tools/vm/run-in-vm.sh; runs as root inside the VM.'
    local assignment
    for assignment in ${guest_env[@]+"${guest_env[@]}"}; do printf 'export %q\n' "$assignment"; done
    printf 'cd %q || exit 90\n' "$REPO_DIR"
    printf '%q ' "$@"; echo
  } > "$results/command.sh"
  : > "$results/output.log"
}

# The last lines of the serial console explain most boot failures (missing module, 9p mount, panic).
print_console_tail() {
  local results=$1
  log "last $CONSOLE_TAIL_LINES lines of the guest console:"
  tail -n "$CONSOLE_TAIL_LINES" "$results/console.log" 2>/dev/null | sed 's/^/  console| /' >&2 || true
}

check_qemu
prepared=$("$VM_DIR/prepare-kernel.sh") || exit $?
read -r kernel_path initrd_path <<< "$prepared"

results=$(mktemp -d "${TMPDIR:-/tmp}/blockmirror-vm.XXXXXX")
qemu_pid=
cleanup() {
  [[ -n "$qemu_pid" ]] && kill "$qemu_pid" 2>/dev/null || true
  if [[ -n "$keep_results" ]]; then log "results kept in $results"; else rm -rf "$results"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

write_guest_inputs "$results" "$@"

qemu_args=(
  -accel tcg -cpu max -m "$memory_mib" -smp "$CPU_COUNT"
  -nodefaults -no-user-config -display none -no-reboot
  -serial "file:$results/console.log" -monitor none
  -kernel "$kernel_path" -initrd "$initrd_path"
  -append "console=ttyS0 panic=-1 quiet loglevel=4"
  -device virtio-rng-pci
  -virtfs "local,path=/,mount_tag=$NINEP_ROOT_TAG,security_model=none,readonly=on,multidevs=remap"
  -virtfs "local,path=$results,mount_tag=$NINEP_RESULTS_TAG,security_model=none,multidevs=remap"
)
started_s=$SECONDS
qemu-system-x86_64 "${qemu_args[@]}" > "$results/qemu.log" 2>&1 &
qemu_pid=$!
if [[ -n "$show_console" ]]; then tail -n +1 -F --pid="$qemu_pid" "$results/console.log" 2>/dev/null | sed 's/^/console| /' >&2 & fi
tail -n +1 -F --pid="$qemu_pid" "$results/output.log" 2>/dev/null &
tail_pid=$!

timed_out=
while kill -0 "$qemu_pid" 2>/dev/null; do
  if (( SECONDS - started_s >= timeout_seconds )); then
    timed_out=1
    kill "$qemu_pid" 2>/dev/null || true
    break
  fi
  sleep 1
done
qemu_status=0
wait "$qemu_pid" || qemu_status=$?
qemu_pid=
wait "$tail_pid" 2>/dev/null || true

boot_s=$(cat "$results/boot-ready" 2>/dev/null || echo "?")
if [[ -n "$timed_out" ]]; then
  log "TIMEOUT: the guest did not finish within $timeout_seconds s (guest boot took $boot_s s)"
  print_console_tail "$results"
  exit "$EXIT_TIMEOUT"
fi
if [[ ! -f "$results/exit-code" ]]; then
  log "BOOT FAILURE: the guest reported no exit code (qemu exit status $qemu_status)"
  sed 's/^/  qemu| /' "$results/qemu.log" >&2 || true
  print_console_tail "$results"
  exit "$EXIT_BOOT_FAILED"
fi
code=$(cat "$results/exit-code")
log "guest command exited with $code (boot $boot_s s, total $((SECONDS - started_s)) s)"
exit "$code"
