import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative } from '../../src/native';

/** Number of open fds of this process (to check failed attaches leak nothing). */
function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

// The kernel attach itself (NBD_DO_IT against /dev/nbdN) needs the nbd module, which only the VM has:
// test/vm/kernel-nbd.test.ts covers it. Here: the failure paths.
describe('native nbd device attach (failure paths)', () => {
  const native = loadNative();
  const options = { sizeBytes: 64 * 1024 * 1024, blockSizeBytes: 4096, flags: 0, timeoutSeconds: 30 };

  it('attach to a missing device path throws ENOENT from open and leaks no fd', () => {
    const before = openFdCount();
    assert.throws(
      () => native.attachNbdDevice({ ...options, devicePath: '/dev/nbd-does-not-exist' }, () => undefined),
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'open' && e.errno === 2 && /nbd-does-not-exist/.test(e.message),
    );
    assert.equal(openFdCount(), before);
  });

  it('attach to something that is not an nbd device fails at the first ioctl and leaks no fd', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-dev-'));
    const file = path.join(dir, 'not-a-device');
    fs.writeFileSync(file, '');
    const before = openFdCount();
    try {
      assert.throws(
        () => native.attachNbdDevice({ ...options, devicePath: file }, () => undefined),
        (e: NodeJS.ErrnoException) => e.code === 'ENOTTY' && e.syscall === 'ioctl NBD_SET_BLKSIZE',
      );
      assert.equal(openFdCount(), before);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects invalid geometry with TypeError before touching the device', () => {
    assert.throws(() => native.attachNbdDevice({ ...options, devicePath: '/dev/null', blockSizeBytes: 3000 }, () => undefined), TypeError);
    assert.throws(() => native.attachNbdDevice({ ...options, devicePath: '/dev/null', sizeBytes: 4096 * 3 + 1 }, () => undefined), TypeError);
  });

  it('disconnectNbdDevice on a missing device throws ENOENT', () => {
    assert.throws(() => native.disconnectNbdDevice('/dev/nbd-does-not-exist'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  });
});
