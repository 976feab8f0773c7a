/** The connect-time decision from generation identifiers, through the life of a pair. */
import { strict as assert } from 'node:assert';
import { afterResyncSource, afterResyncTarget, decideSync, GENERATION_EMPTY, GENERATION_NONE, rotateForDegradedWrites, type Generations } from '../../src/mirror/sync-decision';

const fresh = (): Generations => ({ current: GENERATION_EMPTY, bitmap: GENERATION_NONE, history0: GENERATION_NONE, history1: GENERATION_NONE });

describe('sync decision (generation identifiers)', function () {
  it('two fresh stores are in sync; writes without the peer make the primary the resync source', function () {
    assert.deepEqual(decideSync(fresh(), fresh()), { kind: 'inSync' });
    const p = rotateForDegradedWrites(fresh(), 100n);
    assert.deepEqual(decideSync(p, fresh()), { kind: 'resyncFromPrimary' });
    const s = afterResyncTarget(fresh(), p.current);
    const p2 = afterResyncSource(p);
    assert.deepEqual(decideSync(p2, s), { kind: 'inSync' });
    assert.equal(rotateForDegradedWrites(p, 200n), p, 'rotates once per split');
  });

  it('a promoted secondary that wrote makes the old primary stale, and the old primary as secondary a resync target', function () {
    const shared: Generations = { current: 50n, bitmap: GENERATION_NONE, history0: 7n, history1: GENERATION_NONE };
    const promoted = rotateForDegradedWrites(shared, 60n);
    assert.equal(decideSync(shared, promoted).kind, 'primaryStale');
    assert.deepEqual(decideSync(promoted, shared), { kind: 'resyncFromPrimary' });
  });

  it('both sides written while apart is split brain, whichever is primary', function () {
    const shared: Generations = { current: 50n, bitmap: GENERATION_NONE, history0: GENERATION_NONE, history1: GENERATION_NONE };
    const a = rotateForDegradedWrites(shared, 61n);
    const b = rotateForDegradedWrites(shared, 62n);
    assert.equal(decideSync(a, b).kind, 'splitBrain');
    assert.equal(decideSync(b, a).kind, 'splitBrain');
    // The node whose data is discarded goes back to the split point: then it is a plain resync target.
    const discarded: Generations = { ...b, current: b.bitmap, bitmap: GENERATION_NONE };
    assert.deepEqual(decideSync(a, discarded), { kind: 'resyncFromPrimary' });
  });

  it('an empty or discarded secondary gets a full sync; unrelated data is refused; an empty primary never overwrites data', function () {
    const p: Generations = { current: 70n, bitmap: GENERATION_NONE, history0: 3n, history1: GENERATION_NONE };
    assert.deepEqual(decideSync(p, fresh()), { kind: 'fullSync' });
    assert.deepEqual(decideSync(p, { ...fresh(), current: GENERATION_NONE }), { kind: 'fullSync' });
    assert.deepEqual(decideSync(p, { ...fresh(), current: 3n }), { kind: 'fullSync' });
    assert.equal(decideSync(p, { ...fresh(), current: 999n }).kind, 'unrelated');
    assert.equal(decideSync(fresh(), { ...fresh(), current: 999n }).kind, 'primaryStale');
  });

  it('new metadata on existing stores: an authoritative primary (a new generation) full-syncs an unknown secondary; both unknown is refused and says how to choose', function () {
    const unknown: Generations = { current: GENERATION_NONE, bitmap: GENERATION_NONE, history0: GENERATION_NONE, history1: GENERATION_NONE };
    const authoritative: Generations = { ...unknown, current: 4242n };
    assert.deepEqual(decideSync(authoritative, unknown), { kind: 'fullSync' });
    const neither = decideSync(unknown, unknown);
    assert.equal(neither.kind, 'primaryStale');
    assert.match(neither.kind === 'primaryStale' ? neither.reason : '', /neither node's data is known.*--force-new-metadata/);
    // A secondary that holds the pair's known data is not overwritten by a primary that declared its own.
    assert.equal(decideSync(authoritative, { ...unknown, current: 50n, history0: 7n }).kind, 'unrelated');
  });
});
