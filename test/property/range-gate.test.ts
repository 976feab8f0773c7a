/** RangeGate: overlapping operations never run together and start in arrival order; disjoint ones never wait. */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { RangeGate } from '../../src/range-gate';

interface Op {
  offset: number;
  length: number;
  /** Completes synchronously inside start() (like a page-cache write) or later. */
  sync: boolean;
}

const opArb = fc.record({ offset: fc.integer({ min: 0, max: 60 }), length: fc.integer({ min: 1, max: 12 }), sync: fc.boolean() });

function overlaps(a: Op, b: Op): boolean {
  return a.offset < b.offset + b.length && b.offset < a.offset + a.length;
}

/** Many ops over a wide range: hundreds run at once, so the gate's sorted running set is exercised. */
const sparseOpArb = fc.record({ offset: fc.integer({ min: 0, max: 20000 }), length: fc.integer({ min: 1, max: 60 }), sync: fc.boolean() });

describe('property: RangeGate ordering', function () {
  for (const [name, arb, minOps, maxOps] of [
    ['dense', opArb, 1, 40],
    ['sparse', sparseOpArb, 150, 300],
  ] as const) {
    it(`overlapping ops are serialized in arrival order; every op eventually runs (${name})`, function () {
      fc.assert(
        fc.property(fc.array(arb, { minLength: minOps, maxLength: maxOps }), fc.array(fc.nat(), { minLength: 1, maxLength: 200 }), (ops, picks) => {
          const gate = new RangeGate();
          const startedAt: number[] = new Array(ops.length).fill(-1);
          const running = new Map<number, () => void>();
          let clock = 0;
          ops.forEach((op, i) => {
            gate.enter(op.offset, op.length, (release) => {
              for (const j of running.keys()) assert.ok(!overlaps(ops[j]!, op), `op ${i} started while overlapping op ${j} runs`);
              startedAt[i] = clock++;
              if (op.sync) release();
              else running.set(i, release);
            });
            if (i === 0 || !ops.slice(0, i).some((prev) => overlaps(prev, op))) assert.ok(startedAt[i]! >= 0, `disjoint op ${i} had to wait`);
          });
          let p = 0;
          while (running.size > 0) {
            const keys = [...running.keys()];
            const k = keys[(picks[p++ % picks.length] ?? 0) % keys.length]!;
            const release = running.get(k)!;
            running.delete(k);
            release();
          }
          ops.forEach((op, i) => {
            assert.ok(startedAt[i]! >= 0, `op ${i} never ran`);
            for (let j = 0; j < i; j++) if (overlaps(ops[j]!, op)) assert.ok(startedAt[j]! < startedAt[i]!, `op ${i} overtook overlapping op ${j}`);
          });
          assert.equal(gate.runningCount + gate.waitingCount, 0);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('refuses a second release of the same op, and leaves the gate usable', function () {
    const gate = new RangeGate();
    let release: (() => void) | undefined;
    gate.enter(0, 10, (r) => (release = r));
    release!();
    assert.throws(() => release!(), /released twice/);
    let ran = false;
    gate.enter(5, 10, (r) => {
      ran = true;
      r();
    });
    assert.ok(ran);
    assert.equal(gate.runningCount + gate.waitingCount, 0);
  });
});
