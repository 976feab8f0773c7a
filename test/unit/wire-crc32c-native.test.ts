/**
 * The native hardware CRC32C (src/native.ts) must give the software CRC's results, so it can be
 * swapped in with useCrc32cImplementation without changing a single byte on the wire.
 */
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadNative } from '../../src/native';
import { crc32cSoftware, decodeStream, useCrc32cImplementation, type Crc32cFunction } from '../../src/wire';

const REPO_ROOT = path.join(__dirname, '..', '..', '..');

/** The addon's crc32c adapted to the wire signature, or the reason it cannot be loaded. */
function nativeCrc(): Crc32cFunction | string {
  try {
    const native = loadNative();
    return (buf, seed = 0) => native.crc32c(Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength), seed);
  } catch (error) {
    return `native addon not loadable (${(error as Error).message.split('\n')[0]})`;
  }
}

describe('wire: native CRC32C agrees with the software one', () => {
  const impl = nativeCrc();

  beforeEach(function () {
    if (typeof impl === 'string') {
      if (process.env.CI === 'true') throw new Error(impl);
      console.log(`      skipped: ${impl}; build it with npm run build`);
      this.skip();
    }
  });

  it('gives the same CRC for every length 0..300 and for seeded continuations', () => {
    const native = impl as Crc32cFunction;
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 131 + 17) & 0xff));
    for (let n = 0; n <= data.length; n++) {
      const part = data.subarray(0, n);
      assert.equal(native(part) >>> 0, crc32cSoftware(part), `length ${n}`);
      assert.equal(native(part, 0xdeadbeef) >>> 0, crc32cSoftware(part, 0xdeadbeef), `seeded, length ${n}`);
    }
  });

  it('agrees on long inputs, where the native CRC runs three lanes side by side and joins them', () => {
    const native = impl as Crc32cFunction;
    const data = crypto.randomBytes(3 * 2048 * 4 + 777);
    // Around every multiple of the three-lane block (6 KiB), plus odd offsets for unaligned loads.
    const lengths = [6143, 6144, 6145, 12287, 12288, 12289, 3 * 2048 * 4, data.length - 1];
    for (const start of [0, 1, 5]) {
      for (const n of lengths) {
        const part = data.subarray(start, start + Math.min(n, data.length - start));
        assert.equal(native(part) >>> 0, crc32cSoftware(part), `start ${start}, length ${part.length}`);
        assert.equal(native(part, 0x12345678) >>> 0, crc32cSoftware(part, 0x12345678), `seeded, start ${start}, length ${part.length}`);
      }
    }
    // A continuation across a lane boundary equals the CRC of the whole.
    const whole = crc32cSoftware(data);
    assert.equal(native(data.subarray(7000), native(data.subarray(0, 7000))) >>> 0, whole);
  });

  it('decodes every valid test vector with the native CRC installed', () => {
    const vectors: { name: string; hex: string; valid: boolean; limits?: unknown }[] = JSON.parse(
      fs.readFileSync(path.join(REPO_ROOT, 'test', 'vectors', 'wire.json'), 'utf8'),
    ).vectors;
    const previous = useCrc32cImplementation(impl as Crc32cFunction);
    try {
      for (const v of vectors.filter((x) => x.valid)) {
        const result = decodeStream(Buffer.from(v.hex, 'hex'));
        assert.ok(result.ok, `${v.name}: ${result.ok ? '' : result.reason}`);
      }
    } finally {
      useCrc32cImplementation(previous);
    }
  });
});
