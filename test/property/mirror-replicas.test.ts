/**
 * Property: random overlapping writes, trims, zeroes and flushes, pipelined concurrently through
 * the primary of a real loopback pair, leave both replicas byte-identical and equal to a model.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import fc from 'fast-check';
import { tempDir } from '../helpers/node-process';
import { startPair } from '../helpers/pair';
import { connectTransmission } from '../helpers/raw-nbd-client';

const SIZE = 4 * 1024 * 1024;

type Op =
  | { kind: 'write'; offset: number; length: number; fill: number; fua: boolean }
  | { kind: 'trim' | 'zero'; offset: number; length: number }
  | { kind: 'flush' };

const extent = fc.tuple(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: 300 * 1024 })).map(([offset, length]) => ({ offset, length: Math.min(length, SIZE - offset) }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(extent, fc.integer({ min: 1, max: 255 }), fc.boolean()).map(([e, fill, fua]) => ({ kind: 'write' as const, ...e, fill, fua })) },
  { weight: 2, arbitrary: extent.map((e) => ({ kind: 'trim' as const, ...e })) },
  { weight: 2, arbitrary: extent.map((e) => ({ kind: 'zero' as const, ...e })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
);

describe('property: concurrent overlapping operations keep replicas identical', function () {
  it('both replicas equal the model after random pipelined batches', async function () {
    const seed = Number(process.env.FC_SEED ?? Date.now() % 1_000_000);
    console.log(`      fast-check seed ${seed}`);
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 20, maxLength: 120 }), async (ops) => {
        const dir = tempDir('prop');
        const pair = await startPair(dir, { size: String(SIZE), primaryArgs: ['--inline-threshold', '16K'] });
        try {
          const { client } = await connectTransmission(pair.socket);
          const model = Buffer.alloc(SIZE);
          // All requests are pipelined without waiting: the server sees them concurrently.
          ops.forEach((op, i) => {
            const cookie = BigInt(i);
            if (op.kind === 'write') {
              const data = Buffer.alloc(op.length, op.fill);
              client.sendRequest(1, cookie, BigInt(op.offset), op.length, data, { flags: op.fua ? 1 : 0 });
              model.fill(op.fill, op.offset, op.offset + op.length);
            } else if (op.kind === 'trim' || op.kind === 'zero') {
              client.sendRequest(op.kind === 'trim' ? 4 : 6, cookie, BigInt(op.offset), op.length);
              model.fill(0, op.offset, op.offset + op.length);
            } else {
              client.sendRequest(3, cookie, 0n, 0);
            }
          });
          for (let i = 0; i < ops.length; i++) assert.equal((await client.readSimpleReply()).error, 0);
          client.destroy();
          assert.equal((await pair.primary.stop()).code, 0);
          assert.equal((await pair.secondary.stop()).code, 0);
          const primary = fs.readFileSync(pair.primaryStore);
          const secondary = fs.readFileSync(pair.secondaryStore);
          assert.ok(primary.equals(secondary), 'replicas differ');
          assert.ok(primary.equals(model), 'primary differs from the model (overlapping requests were pipelined: NBD lets the server reorder them, but ours applies them in arrival order)');
        } finally {
          await pair.primary.stop();
          await pair.secondary.stop();
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 6, seed },
    );
  });
});
