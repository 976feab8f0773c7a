#!/bin/sh
# PID 1 of the test VM (busybox sh from the initramfs): load modules, mount the host root read-only
# over 9p, run the command that run-in-vm.sh left in the results share inside a chroot, power off.
# Protocol with the host (results share, mount_tag "results"):
#   in:  guest.env (REPO_DIR=...), command.sh (bash script run in REPO_DIR)
#   out: boot-ready, output.log (command stdout+stderr), exit-code, init.log (this script's log)

NINEP_MSIZE_BYTES=262144
CHROOT_RUN_DIR=/run/blockmirror-vm

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1

# One tagged line per step, on the serial console (and in init.log once the results share is up).
log() { echo "vm-init: $*"; [ -d /results/.mounted ] || return 0; echo "vm-init: $*" >> /results/init.log; }

# Stop the VM at once; the host sees the missing exit-code file and reports a boot failure.
power_off() { sync; echo o > /proc/sysrq-trigger; sleep 5; poweroff -f; }

# Boot cannot continue: say why on the console (the host prints its tail) and power off.
fail() { log "BOOT FAILURE: $*"; echo "VM_BOOT_FAILURE: $*"; power_off; }

# Load every module in dependency order; a missing optional one only logs.
load_modules() {
  dir=/lib/modules/$(uname -r)
  while read -r path; do
    insmod "$dir/$path" 2>/tmp/insmod.err || log "insmod $path failed: $(cat /tmp/insmod.err)"
  done < "$dir/load.list"
  while read -r name; do
    [ -d "/sys/module/$name" ] || fail "required module $name did not load"
  done < "$dir/required.list"
}

# Host root (read-only) at /newroot with fresh proc/sys/dev and writable tmpfs at /tmp and /run.
mount_host_root() {
  mount -t 9p -o "trans=virtio,version=9p2000.L,msize=$NINEP_MSIZE_BYTES,ro,cache=loose" hostroot /newroot ||
    fail "cannot mount the host root (9p tag hostroot)"
  mount -t proc proc /newroot/proc
  mount -t sysfs sys /newroot/sys
  mkdir -p /repo
  mount --bind "/newroot$REPO_DIR" /repo || fail "the repository $REPO_DIR is not visible in the guest"
  mount -t devtmpfs dev /newroot/dev
  mkdir -p /newroot/dev/pts /newroot/dev/shm 2>/dev/null
  mount -t devpts devpts /newroot/dev/pts
  mount -t tmpfs shm /newroot/dev/shm
  mount -t tmpfs run /newroot/run
  mount -t tmpfs -o mode=1777 tmp /newroot/tmp
  mount -t tmpfs -o mode=1777 vartmp /newroot/var/tmp 2>/dev/null || true
}

# The repo may live under a directory we just covered with tmpfs (/tmp in some CI clones): bring it back.
expose_repo() {
  [ -d "/newroot$REPO_DIR" ] && return 0
  mkdir -p "/newroot$REPO_DIR"
  mount --bind /repo "/newroot$REPO_DIR" || fail "cannot expose $REPO_DIR again"
}

load_modules
mkdir -p /results
mount -t 9p -o "trans=virtio,version=9p2000.L,msize=$NINEP_MSIZE_BYTES" results /results ||
  fail "cannot mount the results share (9p tag results)"
mkdir -p /results/.mounted
. /results/guest.env
mount_host_root
expose_repo
mkdir -p "/newroot$CHROOT_RUN_DIR/results"
mount --bind /results "/newroot$CHROOT_RUN_DIR/results"
# The guest's own modules, for modprobe inside the chroot, where the host has a /lib/modules to cover.
[ -d /newroot/lib/modules ] && mount --bind /lib/modules /newroot/lib/modules
ip link set lo up
hostname blockmirror-vm
cp /results/command.sh "/newroot$CHROOT_RUN_DIR/command.sh"
log "boot ready after $(cut -d' ' -f1 /proc/uptime) s"
cut -d' ' -f1 /proc/uptime > /results/boot-ready
chroot /newroot /usr/bin/env -i HOME=/tmp TERM=dumb PATH="$GUEST_PATH" BLOCKMIRROR_IN_VM=1 \
  /bin/bash "$CHROOT_RUN_DIR/command.sh" > /results/output.log 2>&1 < /dev/null
code=$?
log "command exited with $code after $(cut -d' ' -f1 /proc/uptime) s"
echo "$code" > /results/exit-code.tmp
mv /results/exit-code.tmp /results/exit-code
power_off
