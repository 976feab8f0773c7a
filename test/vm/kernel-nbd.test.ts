/**
 * The real kernel NBD driver against `blockmirror attach`, inside a QEMU VM (Debian's 6.12 kernel) because
 * the host kernel has no nbd module. One boot runs tools/vm/guest/kernel-nbd-suite.sh; each test here
 * asserts on that suite's verdict line for it.
 */
import { strict as assert } from 'node:assert';
import type { RunResult } from '../helpers/run';
import { parseVerdicts, runInVm, VM_EXIT_SKIPPED, type GuestVerdict } from './vm-run';

/** Boot (~5-15 s under TCG) plus the three guest tests; the guest scripts bound each of their own steps. */
const VM_TIMEOUT_SECONDS = 240;
const SUITE_COMMAND = ['bash', 'tools/vm/guest/kernel-nbd-suite.sh'];

describe('kernel NBD device in a VM (tools/vm)', function () {
  this.timeout((VM_TIMEOUT_SECONDS + 60) * 1000);
  let vm: RunResult;
  let verdicts: Map<string, GuestVerdict>;

  /** Everything the guest and the harness printed, for failure messages. */
  function transcript(): string {
    return `exit code ${vm.code ?? vm.signal}\n--- guest output ---\n${vm.stdout}\n--- harness ---\n${vm.stderr}`;
  }

  /** The verdict line a guest test printed, or a failure that shows the whole transcript. */
  function verdict(name: string): GuestVerdict {
    const found = verdicts.get(name);
    assert.ok(found, `no "VMTEST RESULT ${name}" line from the guest\n${transcript()}`);
    return found;
  }

  before(async function () {
    vm = await runInVm(SUITE_COMMAND, VM_TIMEOUT_SECONDS);
    if (vm.code === VM_EXIT_SKIPPED) {
      const reason = `VM harness cannot run here: ${vm.stderr.trim().split('\n').filter((l) => l.includes('SKIP')).join('; ')}`;
      if (process.env.CI === 'true') throw new Error(reason);
      console.log(`      SKIPPED: ${reason}`);
      this.skip();
    }
    verdicts = parseVerdicts(vm.stdout);
  });

  it('ext4 on /dev/nbd0: mkfs, write, remount, checksums, detach, and the store file holds the same files', function () {
    const result = verdict('nbd-ext4');
    assert.ok(result.ok, `nbd-ext4 failed: ${result.details}\n${transcript()}`);
    assert.match(result.details, /attach_exit=0\b/);
  });

  it('after the node is killed with SIGKILL, reads fail with an error (held open) or see an empty device, never hang', function () {
    const result = verdict('nbd-kill');
    assert.ok(result.ok, `nbd-kill failed: ${result.details}\n${transcript()}`);
    assert.match(result.details, /\bheld_exit=\d+/);
    assert.doesNotMatch(result.details, /\bheld_exit=(0|124)\b/);
    assert.doesNotMatch(result.details, /\breleased_exit=124\b/);
  });

  it('mirrored pair: ext4 written on /dev/nbd0 of a primary reaches a secondary across a veth, stores byte-identical', function () {
    const result = verdict('nbd-mirror');
    assert.ok(result.ok, `nbd-mirror failed: ${result.details}\n${transcript()}`);
    assert.match(result.details, /\bprimary_exit=0\b/);
    assert.match(result.details, /\bsecondary_exit=0\b/);
    assert.match(result.details, /\bstores_identical=yes\b/);
    const mode = /\bmode=(\S+)/.exec(result.details)?.[1];
    if (mode !== 'veth') console.log(`      note: nbd-mirror ran with mode=${mode}: no network namespace in the guest, the pair used 127.0.0.1`);
    const writesInline = Number(/\bwrites_inline=(\d+)/.exec(result.details)?.[1] ?? NaN);
    const writesLarge = Number(/\bwrites_large=(\d+)/.exec(result.details)?.[1] ?? NaN);
    assert.ok(writesInline + writesLarge > 0, `no mirrored writes counted: ${result.details}`);
  });

  it('the guest suite exits 0', function () {
    assert.equal(vm.code, 0, transcript());
  });
});
