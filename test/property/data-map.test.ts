/**
 * DataMap (the resync's extent map, one FIEMAP per window) against the kernel's own answer, lseek
 * SEEK_DATA, on real files with data written and holes punched at random and their pages still
 * dirty: for any query, the first offset that may hold data is the same, and the map makes far
 * fewer calls than one per query.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { LocalStore } from '../../src/store/local-store';
import { DataMap, DATA_MAP_WINDOW_BYTES } from '../../src/mirror/data-map';

const BLOCK = 64 * 1024;
const VOLUME = 256 * 1024 * 1024; // four map windows

describe('DataMap: extent map from FIEMAP against SEEK_DATA', function () {
  this.timeout(120000);
  let dir: string;
  let shmDir: string | undefined;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-datamap-'));
    // tmpfs has no FIEMAP: the store maps its extents with SEEK_DATA / SEEK_HOLE there.
    if (fs.existsSync('/dev/shm')) shmDir = fs.mkdtempSync(path.join('/dev/shm', 'bm-datamap-'));
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    if (shmDir !== undefined) fs.rmSync(shmDir, { recursive: true, force: true });
  });

  for (const where of ['the test directory', 'tmpfs (no FIEMAP)'] as const) {
  it(`answers every query as SEEK_DATA does, on files with dirty pages and punched holes, in ${where}`, function () {
    if (where !== 'the test directory' && shmDir === undefined) this.skip();
    const base = where === 'the test directory' ? dir : shmDir!;
    let fileNo = 0;
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: VOLUME / BLOCK - 1 }), { minLength: 0, maxLength: 300 }),
        fc.uniqueArray(fc.integer({ min: 0, max: VOLUME / BLOCK - 1 }), { maxLength: 40 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: VOLUME - 1 }), fc.integer({ min: 1, max: 80 * 1024 * 1024 })), { minLength: 1, maxLength: 200 }),
        (written, punched, queries) => {
          const file = path.join(base, `v${fileNo++}.img`);
          const store = LocalStore.open({ path: file, sizeBytes: VOLUME, direct: false });
          try {
            const block = Buffer.alloc(BLOCK, 0x5a);
            for (const b of written) assert.equal(store.writeSync(block, b * BLOCK), 0);
            for (const b of punched) assert.equal(store.trimSync(b * BLOCK, BLOCK), 0);
            assert.ok(store.dataExtents(0, VOLUME, new Float64Array(2048)) >= 0, 'the store maps its extents (FIEMAP, or SEEK_DATA / SEEK_HOLE)');
            // Sorted queries, as the engine makes them, then the same ones shuffled back and forth.
            const sorted = [...queries].sort((a, b) => a[0] - b[0]);
            for (const order of [sorted, queries]) {
              const map = new DataMap(store);
              for (const [offset, length] of order) {
                const end = Math.min(VOLUME, offset + length);
                assert.equal(map.nextData(offset, end), store.nextDataOffset(offset, end), `nextData(${offset}, ${end})`);
              }
              if (order === sorted) assert.ok(map.fills <= order.length + VOLUME / DATA_MAP_WINDOW_BYTES, `${map.fills} FIEMAP calls for ${order.length} forward queries`);
            }
          } finally {
            store.close();
            fs.rmSync(file, { force: true });
          }
        },
      ),
      { numRuns: 25 },
    );
  });
  }

  it('a forward pass over scattered regions costs one FIEMAP per window', function () {
    const store = LocalStore.open({ path: path.join(dir, 'scan.img'), sizeBytes: VOLUME, direct: false });
    try {
      const block = Buffer.alloc(BLOCK, 1);
      const regions: number[] = [];
      for (let r = 3; r < VOLUME / BLOCK; r += 10) regions.push(r);
      for (const r of regions) store.writeSync(block, r * BLOCK);
      const map = new DataMap(store);
      for (const r of regions) {
        assert.equal(map.nextData(r * BLOCK, (r + 1) * BLOCK), r * BLOCK, `region ${r} holds data`);
        assert.equal(map.nextData((r + 1) * BLOCK, (r + 2) * BLOCK), (r + 2) * BLOCK, `region ${r + 1} is a hole`);
      }
      assert.equal(map.fills, VOLUME / DATA_MAP_WINDOW_BYTES);
    } finally {
      store.close();
    }
  });
});
