/** DirtyRegions.touchesDirty (may the peer serve this range?) against a plain per-region check. */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { DirtyRegions } from '../../src/mirror/dirty-regions';

describe('DirtyRegions: whether a byte range touches an out-of-sync region', () => {
  it('agrees with checking every region the range overlaps', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }).map((n) => n * 512),
        fc.integer({ min: 12, max: 16 }).map((shift) => 2 ** shift),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 30 }),
        (volumeSizeBytes, regionBytes, marks, queries) => {
          const dirty = new DirtyRegions(volumeSizeBytes, regionBytes);
          for (const m of marks) dirty.mark(m % volumeSizeBytes, 1);
          for (const [o, l] of queries) {
            const offsetBytes = o % volumeSizeBytes;
            const lengthBytes = l % (volumeSizeBytes - offsetBytes + 1);
            let expected = false;
            for (let r = 0; r < dirty.regionCount; r++) {
              const start = r * regionBytes;
              if (dirty.isDirty(r) && lengthBytes > 0 && start < offsetBytes + lengthBytes && offsetBytes < start + regionBytes) expected = true;
            }
            assert.equal(dirty.touchesDirty(offsetBytes, lengthBytes), expected, `${offsetBytes}+${lengthBytes}`);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
