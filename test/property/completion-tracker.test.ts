/** CompletionTracker: completeThrough is always the longest complete prefix, in any completion order. */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { CompletionTracker } from '../../src/mirror/completion-tracker';

/** Seqs 1..n in an order drawn from `keys`; with `lag`, seq 1 completes last of all (the ring must grow). */
function completionOrder(keys: number[], lagFirst: boolean): number[] {
  const order = keys.map((k, i) => ({ seq: i + 1, k })).sort((a, b) => a.k - b.k || a.seq - b.seq).map((e) => e.seq);
  if (!lagFirst) return order;
  return [...order.filter((s) => s !== 1), 1];
}

describe('property: CompletionTracker', function () {
  it('completeThrough is the longest complete prefix after every completion, in any order', function () {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 3000, size: 'max' }), fc.boolean(), (keys, lagFirst) => {
        const tracker = new CompletionTracker();
        const done = new Set<number>();
        let prefix = 0;
        for (const seq of completionOrder(keys, lagFirst)) {
          done.add(seq);
          while (done.has(prefix + 1)) prefix += 1;
          assert.equal(tracker.complete(seq), prefix);
          assert.equal(tracker.completeThrough, prefix);
        }
        assert.equal(prefix, keys.length);
      }),
      { numRuns: 200 },
    );
  });

  it('one write that completes after 10,000 later ones (the ring grows) and a reset', function () {
    const tracker = new CompletionTracker();
    for (let seq = 2; seq <= 10_001; seq++) assert.equal(tracker.complete(seq), 0);
    assert.equal(tracker.complete(1), 10_001);
    assert.equal(tracker.complete(10_002), 10_002);
    tracker.reset();
    assert.equal(tracker.completeThrough, 0);
    assert.equal(tracker.complete(2), 0);
    assert.equal(tracker.complete(1), 2);
  });

  it('refuses a seq that is already complete, zero or not an integer', function () {
    const tracker = new CompletionTracker();
    tracker.complete(1);
    assert.throws(() => tracker.complete(1), /already complete through 1/);
    assert.throws(() => tracker.complete(0), RangeError);
    assert.throws(() => tracker.complete(2.5), RangeError);
  });
});
