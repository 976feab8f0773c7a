#!/usr/bin/env bash
# Prepare (once, cached) the Debian kernel and busybox initramfs that run-in-vm.sh boots.
# Prints "KERNEL_PATH INITRD_PATH" on stdout; progress goes to stderr.
# Exit codes: 0 ready, 77 the kernel package cannot be fetched (caller skips), 92 preparation failed.
set -euo pipefail

readonly EXIT_SKIP=77
readonly EXIT_PREPARE_FAILED=92
readonly PACKAGE_PATTERN='^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$'
readonly VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly MODULES_LIST="$VM_DIR/modules.list"
readonly INIT_SCRIPT="$VM_DIR/guest/init.sh"

# Progress messages go to stderr so stdout stays machine-readable.
log() { echo "vm-prepare: $*" >&2; }

# A reason to skip: the caller turns exit 77 into a skipped test with this message.
skip() { log "SKIP: $*"; exit "$EXIT_SKIP"; }

# A broken preparation is an error, not a skip.
die() { log "ERROR: $*"; exit "$EXIT_PREPARE_FAILED"; }

# Root uses a system cache (kept across clones); others use XDG_CACHE_HOME. BLOCKMIRROR_VM_CACHE overrides both.
cache_dir() {
  if [[ -n "${BLOCKMIRROR_VM_CACHE:-}" ]]; then echo "$BLOCKMIRROR_VM_CACHE"
  elif [[ $(id -u) -eq 0 ]]; then echo /var/cache/blockmirror-vm
  else echo "${XDG_CACHE_HOME:-$HOME/.cache}/blockmirror-vm"
  fi
}

# Newest matching kernel package known to apt; runs apt-get update once (as root) when apt knows none.
resolve_package() {
  local name
  name=$(apt-cache search --names-only "$PACKAGE_PATTERN" 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1)
  if [[ -z "$name" && $(id -u) -eq 0 ]]; then
    log "no kernel package in the apt lists; running apt-get update"
    apt-get update -qq >&2 || log "apt-get update failed"
    name=$(apt-cache search --names-only "$PACKAGE_PATTERN" 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1)
  fi
  echo "$name"
}

# Fetch the .deb into DEB_DIR without installing it (the host kernel is left alone).
download_package() {
  local package=$1 deb_dir=$2
  mkdir -p "$deb_dir"
  if compgen -G "$deb_dir/${package}_*.deb" >/dev/null; then return 0; fi
  command -v apt-get >/dev/null || skip "apt-get not available: cannot download $package"
  log "downloading $package"
  (cd "$deb_dir" && apt-get download -q -o APT::Sandbox::User=root "$package" >&2) ||
    skip "apt-get download $package failed (no network to the Debian archive?)"
}

# Hash of everything that goes into the initramfs, so edits to the guest init rebuild it.
inputs_hash() {
  cat "$MODULES_LIST" "$INIT_SCRIPT" "${BASH_SOURCE[0]}" /bin/busybox | sha256sum | cut -c1-16
}

# Ordered insmod list (relative .ko paths, dependencies first) for every module in modules.list.
module_load_order() {
  local tree=$1 version=$2 name flag line path depends
  declare -A seen=()
  while read -r name flag; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    if ! depends=$(modprobe --show-depends -d "$tree" -S "$version" "$name" 2>&1); then
      [[ "$flag" == required ]] && die "required module $name not in the kernel package: $depends"
      log "optional module $name not in the kernel package"
      continue
    fi
    while read -r line; do
      case "$line" in
        insmod\ *) path=${line#insmod }; path=${path%% *}; path=${path#"$tree/lib/modules/$version/"}
          if [[ -z "${seen[$path]:-}" ]]; then seen[$path]=1; echo "$path"; fi ;;
        builtin\ *|'') ;;
        *) die "unexpected modprobe output for $name: $line" ;;
      esac
    done <<< "$depends"
  done < "$MODULES_LIST"
}

# Module names that must be present in /sys/module for the guest to go on.
required_modules() {
  awk '$2 == "required" && $1 !~ /^#/ { gsub("-", "_", $1); print $1 }' "$MODULES_LIST"
}

# Build the initramfs: static busybox, the guest init, decompressed modules and their load order.
build_initrd() {
  local tree=$1 version=$2 out=$3 stage path
  stage=$(mktemp -d)
  mkdir -p "$stage"/{bin,dev,proc,sys,newroot,results,tmp} "$stage/lib/modules/$version"
  cp /bin/busybox "$stage/bin/busybox"
  ln -s busybox "$stage/bin/sh"
  install -m 0755 "$INIT_SCRIPT" "$stage/init"
  module_load_order "$tree" "$version" > "$stage/lib/modules/$version/load.list"
  required_modules > "$stage/lib/modules/$version/required.list"
  while read -r path; do
    mkdir -p "$stage/lib/modules/$version/$(dirname "$path")"
    xz -dc "$tree/lib/modules/$version/$path" > "$stage/lib/modules/$version/${path%.xz}"
  done < "$stage/lib/modules/$version/load.list"
  sed -i 's/\.xz$//' "$stage/lib/modules/$version/load.list"
  cp "$tree/lib/modules/$version"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$version/" 2>/dev/null || true
  depmod -b "$stage" "$version"
  (cd "$stage" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1) > "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$stage"
}

# Everything needed to build, checked up front with the package that provides it.
check_tools() {
  local tool package
  for tool in dpkg-deb:dpkg modprobe:kmod depmod:kmod cpio:cpio xz:xz-utils gzip:gzip; do
    package=${tool#*:}; tool=${tool%%:*}
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install $package"
  done
  file_is_static /bin/busybox || die "/bin/busybox missing or not static: apt-get install busybox-static"
}

# The guest has no libc of its own before it reaches the host root, so busybox must be static.
file_is_static() {
  [[ -x "$1" ]] && ! ldd "$1" >/dev/null 2>&1
}

main() {
  check_tools
  local cache package_file package version dir hash deb
  cache=$(cache_dir)
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  rm -rf "$cache"/extract.*   # left by an interrupted run; we hold the lock, so none is in use
  package_file="$cache/package"
  package=$(cat "$package_file" 2>/dev/null || true)
  if [[ -z "$package" || -n "${BLOCKMIRROR_VM_REFRESH:-}" ]]; then
    command -v apt-cache >/dev/null || skip "apt-cache not available: cannot find the kernel package"
    package=$(resolve_package)
    [[ -n "$package" ]] || skip "no package matches $PACKAGE_PATTERN in apt (Debian 12 archive unreachable?)"
  fi
  version=${package#linux-image-}; version=${version%-unsigned}
  dir="$cache/$version"
  hash=$(inputs_hash)
  if [[ -f "$dir/vmlinuz" && -f "$dir/initrd-$hash.img" ]]; then
    echo "$package" > "$package_file"
    echo "$dir/vmlinuz $dir/initrd-$hash.img"
    return 0
  fi
  download_package "$package" "$cache/deb"
  find "$cache/deb" -name '*.deb' ! -name "${package}_*" -delete
  deb=$(compgen -G "$cache/deb/${package}_*.deb" | head -n 1)
  tree=$(mktemp -d "$cache/extract.XXXXXX")
  trap 'rm -rf "$tree"' EXIT   # global on purpose: the trap runs after main returns
  log "extracting $(basename "$deb")"
  dpkg-deb -x "$deb" "$tree" || die "dpkg-deb -x $deb failed"
  [[ -d "$tree/lib/modules/$version" ]] || die "package has no /lib/modules/$version"
  depmod -b "$tree" "$version" || die "depmod failed"
  mkdir -p "$dir"
  cp "$tree/boot/vmlinuz-$version" "$dir/vmlinuz.tmp" && mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
  log "building initramfs"
  rm -f "$dir"/initrd-*.img
  build_initrd "$tree" "$version" "$dir/initrd-$hash.img"
  echo "$package" > "$package_file"
  log "ready: $dir"
  echo "$dir/vmlinuz $dir/initrd-$hash.img"
}

main "$@"
