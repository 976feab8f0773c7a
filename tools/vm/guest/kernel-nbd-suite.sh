#!/usr/bin/env bash
# Inside the VM: every kernel NBD test in one boot; exits non-zero when any of them failed.
set -uo pipefail
guest_dir=$(dirname "${BASH_SOURCE[0]}")
failed=0
for test_script in nbd-ext4.sh nbd-kill.sh nbd-mirror.sh; do
  bash "$guest_dir/$test_script" || failed=1
done
exit "$failed"
