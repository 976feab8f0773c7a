#!/usr/bin/env bash
# Inside the VM: a mirrored pair. The secondary runs in its own network namespace behind a veth pair
# (10.77.0.1/30 <-> 10.77.0.2/30, both created here, inside the guest), the primary exports the volume on
# /dev/nbd0. Once the primary reports the peer connected: mkfs.ext4, write files of known SHA-256, sync,
# unmount, detach, stop the secondary; then the two store files must be byte-identical and the secondary's
# store, loop-mounted read-only, must hold the same files. If network namespaces cannot be built in the
# guest, the pair talks over 127.0.0.1 instead and the verdict says mode=loopback.
set -uo pipefail
readonly TEST_NAME=nbd-mirror
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly SIZE_BYTES=268435456
readonly DEVICE=/dev/nbd0
readonly WORK_DIR=/tmp/$TEST_NAME
readonly PRIMARY_STORE=$WORK_DIR/primary.img
readonly PRIMARY_CONTROL=$WORK_DIR/primary.ctl
readonly PRIMARY_LOG=$WORK_DIR/primary.log
readonly SECONDARY_STORE=$WORK_DIR/secondary.img
readonly SECONDARY_CONTROL=$WORK_DIR/secondary.ctl
readonly SECONDARY_LOG=$WORK_DIR/secondary.log
readonly SOURCE_DIR=$WORK_DIR/source
readonly MOUNT_DIR=$WORK_DIR/mnt
readonly SUMS=$WORK_DIR/sha256sums
readonly NETNS=bm-mirror-secondary
readonly VETH_PRIMARY=bm-veth-p
readonly VETH_SECONDARY=bm-veth-s
readonly PRIMARY_ADDRESS=10.77.0.1
readonly SECONDARY_ADDRESS=10.77.0.2
readonly VETH_PREFIX_LENGTH=30
readonly LOOPBACK_ADDRESS=127.0.0.1
readonly PEER_PORT=17790
# TCG emulation is slow and mkfs/sync bursts are long: a generous keepalive keeps the pair from degrading.
readonly KEEPALIVE_TIMEOUT_MS=30000
readonly PEER_CONNECTED_TIMEOUT_SECONDS=60
# File sizes written through the mirror (bytes): small, odd, block-crossing, and above the 1 MiB inline slot.
readonly FILE_SIZES_BYTES=(1 511 4096 4097 65536 131073 1048576 3145728 8388608)

PRIMARY_PID=
SECONDARY_PID=
NETNS_CREATED=
# Runs the secondary inside the namespace, or directly in loopback mode (an array: empty prefix).
SECONDARY_PREFIX=()

# Both nodes' logs and the kernel's, for telling a harness problem from a blockmirror one.
dump_pair_diagnostics() {
  dump_diagnostics "$PRIMARY_LOG"
  echo "----- $TEST_NAME: secondary log ($SECONDARY_LOG) -----"
  tail -n 60 "$SECONDARY_LOG" 2>/dev/null || echo "(none)"
  echo "----- $TEST_NAME: end of secondary log -----"
}

# Remove what this test built in the guest: mounts, nodes, the namespace and its veth.
cleanup() {
  umount "$MOUNT_DIR" 2>/dev/null
  [[ -n "$PRIMARY_PID" ]] && kill "$PRIMARY_PID" 2>/dev/null
  [[ -n "$SECONDARY_PID" ]] && kill "$SECONDARY_PID" 2>/dev/null
  if [[ -n "$NETNS_CREATED" ]]; then
    ip link del "$VETH_PRIMARY" 2>/dev/null
    ip netns del "$NETNS" 2>/dev/null
  fi
  return 0
}

# Give up: verdict line with the step that failed, then diagnostics, then clean up.
fail() {
  result "fail step=$1 mode=${MODE:-unknown} ${2:-}"
  dump_pair_diagnostics
  cleanup
  exit 1
}

# The veth pair and the secondary's namespace; returns non-zero (after undoing half-built state) if any step fails.
build_namespace() {
  command -v ip >/dev/null || { say "no ip command in the guest"; return 1; }
  ip netns add "$NETNS" || return 1
  NETNS_CREATED=1
  ip link add "$VETH_PRIMARY" type veth peer name "$VETH_SECONDARY" &&
    ip link set "$VETH_SECONDARY" netns "$NETNS" &&
    ip addr add "$PRIMARY_ADDRESS/$VETH_PREFIX_LENGTH" dev "$VETH_PRIMARY" &&
    ip link set "$VETH_PRIMARY" up &&
    ip netns exec "$NETNS" ip link set lo up &&
    ip netns exec "$NETNS" ip addr add "$SECONDARY_ADDRESS/$VETH_PREFIX_LENGTH" dev "$VETH_SECONDARY" &&
    ip netns exec "$NETNS" ip link set "$VETH_SECONDARY" up &&
    ip netns exec "$NETNS" ip -brief address show dev "$VETH_SECONDARY" | grep -q "$SECONDARY_ADDRESS/" ||
    { cleanup; NETNS_CREATED=; return 1; }
}

# Random files of the chosen sizes, built in tmpfs so their checksums are known before they cross the mirror.
make_source_tree() {
  local index=0 size
  mkdir -p "$SOURCE_DIR/nested"
  for size in "${FILE_SIZES_BYTES[@]}"; do
    head -c "$size" /dev/urandom > "$SOURCE_DIR/nested/file$index.bin"
    index=$((index + 1))
  done
  (cd "$SOURCE_DIR" && find . -type f | sort | xargs sha256sum) > "$SUMS"
}

# Check every file under DIR against the recorded sums, and that there are no more and no fewer files.
verify_tree() {
  local dir=$1
  (cd "$dir" && sha256sum --quiet -c "$SUMS") || return 1
  [[ $(cd "$dir" && find . -type f ! -path './lost+found/*' | wc -l) == $(wc -l < "$SUMS") ]]
}

# The primary's status as JSON (one control request); empty when the node does not answer.
primary_status_json() {
  timeout 30 node "$BLOCKMIRROR_BIN" status --control "$PRIMARY_CONTROL" --json 2>/dev/null
}

# Wait until the primary says peer.state is connected and the kernel shows the full device size.
wait_for_peer_connected() {
  local deadline=$((SECONDS + PEER_CONNECTED_TIMEOUT_SECONDS)) state=none size=0
  while (( SECONDS < deadline )); do
    kill -0 "$PRIMARY_PID" 2>/dev/null || { say "primary $PRIMARY_PID exited before the peer connected"; return 1; }
    kill -0 "$SECONDARY_PID" 2>/dev/null || { say "secondary $SECONDARY_PID exited before the peer connected"; return 1; }
    state=$(primary_status_json | jq -r '.peer.state // "none"' 2>/dev/null)
    size=$(blockdev --getsize64 "$DEVICE" 2>/dev/null || echo 0)
    [[ "$state" == connected && "$size" == "$SIZE_BYTES" ]] && return 0
    sleep 0.5
  done
  say "after $PEER_CONNECTED_TIMEOUT_SECONDS s: peer.state=${state:-none}, $DEVICE size=$size"
  return 1
}

rm -rf "$WORK_DIR"; mkdir -p "$WORK_DIR" "$MOUNT_DIR"
say "building the secondary's network namespace $NETNS ($PRIMARY_ADDRESS <-> $SECONDARY_ADDRESS over veth)"
if build_namespace; then
  MODE=veth
  SECONDARY_PREFIX=(ip netns exec "$NETNS")
  listen_address=$SECONDARY_ADDRESS
else
  say "network namespaces unavailable in the guest; falling back to $LOOPBACK_ADDRESS"
  MODE=loopback
  listen_address=$LOOPBACK_ADDRESS
fi
make_source_tree || fail make-source-tree
file_count=$(wc -l < "$SUMS")
total_bytes=$(du -sb --apparent-size "$SOURCE_DIR" | cut -f1)

say "starting the secondary on $listen_address:$PEER_PORT ($MODE)"
# `ip netns exec` execs the command, so $! is the node process itself.
"${SECONDARY_PREFIX[@]}" node "$BLOCKMIRROR_BIN" secondary --store "$SECONDARY_STORE" --size 256M \
  --listen "$listen_address:$PEER_PORT" --control "$SECONDARY_CONTROL" --keepalive-timeout "$KEEPALIVE_TIMEOUT_MS" \
  > "$SECONDARY_LOG" 2>&1 &
SECONDARY_PID=$!
say "starting the primary on $DEVICE, peer $listen_address:$PEER_PORT"
node "$BLOCKMIRROR_BIN" primary --store "$PRIMARY_STORE" --size 256M --peer "$listen_address:$PEER_PORT" \
  --device "$DEVICE" --control "$PRIMARY_CONTROL" --keepalive-timeout "$KEEPALIVE_TIMEOUT_MS" \
  > "$PRIMARY_LOG" 2>&1 &
PRIMARY_PID=$!
wait_for_peer_connected || fail peer-connected
say "peer connected; $DEVICE is $(blockdev --getsize64 "$DEVICE") bytes"

timeout "$STEP_TIMEOUT_SECONDS" mkfs.ext4 -q -F "$DEVICE" || fail mkfs "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" mount -t ext4 "$DEVICE" "$MOUNT_DIR" || fail mount "exit=$?"
say "mounted; copying $file_count files ($total_bytes bytes)"
timeout "$STEP_TIMEOUT_SECONDS" cp -a "$SOURCE_DIR/." "$MOUNT_DIR/" || fail copy "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" sync || fail sync "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" umount "$MOUNT_DIR" || fail umount "exit=$?"
blockdev --flushbufs "$DEVICE" || fail flushbufs

status=$(primary_status_json) || fail status
peer_state=$(jq -r '.peer.state' <<< "$status")
out_of_sync_bytes=$(jq -r '.peer.outOfSyncBytes // 0' <<< "$status")
writes_inline=$(jq -r '.mirror.writesInline' <<< "$status")
writes_large=$(jq -r '.mirror.writesLarge' <<< "$status")
acks_received=$(jq -r '.mirror.acksReceived' <<< "$status")
say "primary status before detach: $(jq -c '{peer, mirror}' <<< "$status")"
[[ "$peer_state" == connected ]] || fail peer-state-after-writes "peer_state=$peer_state"
[[ "$out_of_sync_bytes" == 0 ]] || fail out-of-sync "out_of_sync_bytes=$out_of_sync_bytes"
(( writes_inline + writes_large > 0 )) || fail no-mirrored-writes "writes_inline=$writes_inline writes_large=$writes_large"

say "detaching"
timeout "$STEP_TIMEOUT_SECONDS" node "$BLOCKMIRROR_BIN" detach --device "$DEVICE" || fail detach "exit=$?"
wait_for_exit "$PRIMARY_PID"
primary_status=$EXIT_STATUS
[[ "$primary_status" == 0 ]] || fail primary-exit "primary_exit=$primary_status"
PRIMARY_PID=
kill -TERM "$SECONDARY_PID"
wait_for_exit "$SECONDARY_PID"
secondary_status=$EXIT_STATUS
[[ "$secondary_status" == 0 ]] || fail secondary-exit "secondary_exit=$secondary_status"
SECONDARY_PID=

say "comparing the stores and verifying the secondary's store through a loop device"
timeout "$STEP_TIMEOUT_SECONDS" cmp "$PRIMARY_STORE" "$SECONDARY_STORE" || fail stores-differ "cmp_exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" mount -t ext4 -o loop,ro,noload "$SECONDARY_STORE" "$MOUNT_DIR" || fail loop-mount "exit=$?"
timeout "$STEP_TIMEOUT_SECONDS" bash -c "$(declare -f verify_tree); SUMS=$SUMS verify_tree $MOUNT_DIR" || fail verify-secondary
umount "$MOUNT_DIR"
cleanup

result "ok mode=$MODE files=$file_count bytes=$total_bytes writes_inline=$writes_inline writes_large=$writes_large acks_received=$acks_received primary_exit=$primary_status secondary_exit=$secondary_status stores_identical=yes"
