/** The controller never leaves a request hanging when the replicator cannot prepare it durably. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Controller, type BlockRequest, type Replicator, type RequestSource } from '../../src/controller';
import { LocalStore } from '../../src/store/local-store';
import { createLogger } from '../../src/util/log';
import { REQUEST_ROW_FIELDS } from '../../src/native';

function batchOf(rows: number[][]): { count: number; rows: Float64Array; largeBuffers: (Buffer | null)[] } {
  const data = new Float64Array(rows.length * REQUEST_ROW_FIELDS);
  rows.forEach((r, i) => data.set(r, i * REQUEST_ROW_FIELDS));
  return { count: rows.length, rows: data, largeBuffers: rows.map(() => Buffer.alloc(4096, 1)) };
}

describe('controller: prepareWrite failures', function () {
  it('a write whose durable preparation throws or rejects completes with EIO, in order, and later writes still run', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-ctl-'));
    const store = LocalStore.open({ path: path.join(dir, 's.img'), sizeBytes: 1024 * 1024, direct: false });
    try {
      const controller = new Controller(store, createLogger('test'));
      let call = 0;
      const replicator: Replicator = {
        replicate: (_r: BlockRequest, done) => done(0),
        prepareWrite: () => {
          call += 1;
          if (call === 1) throw new Error('metadata write failed');
          if (call === 2) return Promise.reject(new Error('metadata write failed later'));
          return undefined;
        },
      };
      controller.setReplicator(replicator);
      const completions: [number, number][] = [];
      const source: RequestSource = { name: 'test', complete: (tag, e) => completions.push([tag, e]), slotBuffer: () => Buffer.alloc(0) };
      // rows: tag, command(WRITE=1), flags, offset, length, slot(-1: large buffer)
      controller.handleBatch(source, batchOf([[1, 1, 0, 0, 4096, -1], [2, 1, 0, 8192, 4096, -1], [3, 1, 0, 16384, 4096, -1]]));
      await controller.whenIdle();
      assert.deepEqual(completions, [[1, 5], [2, 5], [3, 0]]);
    } finally {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
