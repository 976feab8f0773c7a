import { strict as assert } from 'node:assert';
import { loadNative } from '../../src/native';
import { sharedPool } from './nbd_test_client';

describe('native crc32c', () => {
  const native = loadNative();

  it('matches the standard CRC32C check values', () => {
    assert.equal(native.crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(native.crc32c(Buffer.alloc(0)), 0);
    // RFC 3720 (iSCSI) appendix B.4 vectors.
    assert.equal(native.crc32c(Buffer.alloc(32, 0x00)), 0x8a9136aa);
    assert.equal(native.crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
    assert.equal(native.crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
    assert.equal(native.crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c);
  });

  it('continues from a seed: crc32c(b, crc32c(a)) == crc32c(a + b), for every split and unaligned views', () => {
    const data = Buffer.alloc(1000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 17) & 0xff;
    const whole = native.crc32c(data);
    for (let split = 0; split <= 64; split++) {
      assert.equal(native.crc32c(data.subarray(split), native.crc32c(data.subarray(0, split))), whole, `split ${split}`);
    }
    for (let start = 1; start < 9; start++) {
      const view = data.subarray(start, start + 77);
      assert.equal(native.crc32c(view), native.crc32c(Buffer.from(view)), `view at ${start}`);
    }
    assert.ok(whole >= 0 && whole <= 0xffffffff && Number.isInteger(whole));
  });

  it('rejects non-buffers and bad seeds with TypeError', () => {
    assert.throws(() => native.crc32c('abc' as unknown as Buffer), TypeError);
    assert.throws(() => native.crc32c(Buffer.from('a'), -1), TypeError);
  });
});

describe('native buffer pool', () => {
  const native = loadNative();

  it('slots are page-aligned, non-overlapping views of one external ArrayBuffer', () => {
    const pool = sharedPool(native);
    assert.equal(pool.slots.length, pool.slotCount);
    assert.equal(pool.slotBytes % 4096, 0);
    const arrayBuffer = pool.slots[0]!.buffer;
    assert.equal(arrayBuffer.byteLength, pool.slotBytes * pool.slotCount);
    pool.slots.forEach((slot, i) => {
      assert.ok(Buffer.isBuffer(slot));
      assert.equal(slot.buffer, arrayBuffer, `slot ${i} shares the ArrayBuffer`);
      assert.equal(slot.byteOffset, i * pool.slotBytes);
      assert.equal(slot.length, pool.slotBytes);
    });
    // A write through one view is visible through a view of the whole region (no copies anywhere).
    pool.slots[1]![5] = 0x7e;
    assert.equal(new Uint8Array(arrayBuffer)[pool.slotBytes + 5], 0x7e);
  });

  it('a second initPool with the same sizes returns the same pool; different sizes throw EEXIST', () => {
    const pool = sharedPool(native);
    assert.equal(native.initPool(pool.slotBytes, pool.slotCount), pool);
    assert.throws(() => native.initPool(pool.slotBytes * 2, pool.slotCount), (e: NodeJS.ErrnoException) => e.code === 'EEXIST');
    assert.throws(() => native.initPool(1000, 4), TypeError);
  });
});
