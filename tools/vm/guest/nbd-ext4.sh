#!/usr/bin/env bash
# Inside the VM: blockmirror attach on /dev/nbd0 over a sparse 256 MiB file, mkfs.ext4, write a tree of
# files, remount and verify checksums, detach, then verify the same files straight from the store file.
set -uo pipefail
readonly TEST_NAME=nbd-ext4
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly SIZE_BYTES=268435456
readonly DEVICE=/dev/nbd0
readonly WORK_DIR=/tmp/$TEST_NAME
readonly STORE=$WORK_DIR/store.img
readonly CONTROL=$WORK_DIR/store.ctl
readonly ATTACH_LOG=$WORK_DIR/attach.log
readonly SOURCE_DIR=$WORK_DIR/source
readonly MOUNT_DIR=$WORK_DIR/mnt
readonly SUMS=$WORK_DIR/sha256sums
# File sizes of the tree written to the file system (bytes): small, odd, block-crossing and multi-MiB.
readonly FILE_SIZES_BYTES=(1 511 4096 4097 65536 131073 1048576 3145728 8388608 16777216)
readonly DIRECTORY_COUNT=3

# Give up: verdict line with the step that failed, then diagnostics, then leave the device as clean as we can.
fail() {
  result "fail step=$1 ${2:-}"
  dump_diagnostics "$ATTACH_LOG"
  umount "$MOUNT_DIR" 2>/dev/null
  kill "$ATTACH_PID" 2>/dev/null
  exit 1
}

# Random files of the chosen sizes in a few directories, built in tmpfs so their checksums are known up front.
make_source_tree() {
  local dir_index size_index=0 size
  for ((dir_index = 0; dir_index < DIRECTORY_COUNT; dir_index++)); do
    mkdir -p "$SOURCE_DIR/dir$dir_index/nested"
  done
  for size in "${FILE_SIZES_BYTES[@]}"; do
    head -c "$size" /dev/urandom > "$SOURCE_DIR/dir$((size_index % DIRECTORY_COUNT))/nested/file$size_index.bin"
    size_index=$((size_index + 1))
  done
  (cd "$SOURCE_DIR" && find . -type f | sort | xargs sha256sum) > "$SUMS"
}

# Check every file under DIR against the recorded sums and that no file is missing or extra.
verify_tree() {
  local dir=$1
  (cd "$dir" && sha256sum --quiet -c "$SUMS") || return 1
  [[ $(cd "$dir" && find . -type f ! -path './lost+found/*' | wc -l) == $(wc -l < "$SUMS") ]]
}

rm -rf "$WORK_DIR"; mkdir -p "$WORK_DIR" "$MOUNT_DIR"
truncate -s "$SIZE_BYTES" "$STORE" || fail create-store
make_source_tree || fail make-source-tree
file_count=$(wc -l < "$SUMS")
total_bytes=$(du -sb --apparent-size "$SOURCE_DIR" | cut -f1)

start_attach "$STORE" 256M "$DEVICE" "$CONTROL" "$ATTACH_LOG"
wait_for_device_size "$DEVICE" "$SIZE_BYTES" "$ATTACH_PID" || fail device-ready
say "device ready: $(blockdev --getsize64 $DEVICE) bytes"

timeout "$STEP_TIMEOUT_SECONDS" mkfs.ext4 -q -F "$DEVICE" || fail mkfs "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" mount -t ext4 "$DEVICE" "$MOUNT_DIR" || fail mount "exit=$?"
say "mounted; copying $file_count files ($total_bytes bytes)"
timeout "$STEP_TIMEOUT_SECONDS" cp -a "$SOURCE_DIR/." "$MOUNT_DIR/" || fail copy "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" sync || fail sync "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" umount "$MOUNT_DIR" || fail umount "exit=$?"
blockdev --flushbufs "$DEVICE"
echo 3 > /proc/sys/vm/drop_caches
say "remounting and verifying"
timeout "$STEP_TIMEOUT_SECONDS" mount -t ext4 -o ro "$DEVICE" "$MOUNT_DIR" || fail remount "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" bash -c "$(declare -f verify_tree); SUMS=$SUMS verify_tree $MOUNT_DIR" || fail verify-remount
timeout "$STEP_TIMEOUT_SECONDS" umount "$MOUNT_DIR" || fail umount-2 "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" e2fsck -f -n "$DEVICE" > "$WORK_DIR/fsck.log" 2>&1 || { cat "$WORK_DIR/fsck.log"; fail fsck; }

say "detaching"
timeout "$STEP_TIMEOUT_SECONDS" node "$BLOCKMIRROR_BIN" detach --device "$DEVICE" || fail detach "exit=$?"
wait_for_exit "$ATTACH_PID"
attach_status=$EXIT_STATUS
[[ "$attach_status" == 0 ]] || fail attach-exit "attach_status=$attach_status"

say "verifying the store file through a loop device"
timeout "$STEP_TIMEOUT_SECONDS" mount -t ext4 -o loop,ro "$STORE" "$MOUNT_DIR" || fail loop-mount "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" bash -c "$(declare -f verify_tree); SUMS=$SUMS verify_tree $MOUNT_DIR" || fail verify-store
umount "$MOUNT_DIR"
store_allocated_bytes=$(du -B1 "$STORE" | cut -f1)

result "ok files=$file_count bytes=$total_bytes attach_exit=$attach_status store_allocated_bytes=$store_allocated_bytes"
