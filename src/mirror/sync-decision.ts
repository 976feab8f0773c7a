/**
 * What two nodes must do when they connect, decided from their generation identifiers alone (in
 * the spirit of DRBD's UUID comparison). Pure: no I/O, so every case is unit- and property-tested.
 *
 * Rules a node follows so that the comparison means something:
 * - A store created empty has current = GENERATION_EMPTY (1): its content is known, all zeroes.
 * - 0 (GENERATION_NONE) means "no generation": an unset bitmap generation, or a store whose
 *   content must be replaced entirely (after `resolve --discard-my-data`).
 * - A primary that writes while its peer is away first rotates: bitmap = current, current = new
 *   random id; its dirty bitmap then records every region changed since `bitmap`.
 * - A resync target adopts the source's current generation once the resync is complete.
 */
export interface Generations {
  current: bigint;
  bitmap: bigint;
  history0: bigint;
  history1: bigint;
}

export type SyncDecision =
  /** Same data apart from the regions either side has marked (possibly none). */
  | { kind: 'inSync' }
  /** The primary changed the volume since the secondary's state: resync marked regions primary → secondary. */
  | { kind: 'resyncFromPrimary' }
  /** The secondary is empty (never synced) and the primary holds data: full sync primary → secondary. */
  | { kind: 'fullSync' }
  /** The secondary has changes the primary lacks: this primary is stale and must not overwrite them. */
  | { kind: 'primaryStale'; reason: string }
  /** Both changed the volume since they split: nothing is overwritten automatically. */
  | { kind: 'splitBrain'; reason: string }
  /** No common history. */
  | { kind: 'unrelated'; reason: string };

export const GENERATION_NONE = 0n;
export const GENERATION_EMPTY = 1n;

/** Decide from the primary's and the secondary's generations. */
export function decideSync(primary: Generations, secondary: Generations): SyncDecision {
  const NONE = GENERATION_NONE;
  if (primary.current !== NONE && primary.current === secondary.current) return { kind: 'inSync' };
  if (primary.bitmap !== NONE && primary.bitmap === secondary.current) return { kind: 'resyncFromPrimary' };
  if (secondary.bitmap !== NONE && secondary.bitmap === primary.current) {
    return { kind: 'primaryStale', reason: "the secondary was written to (as a promoted primary) since it last had this primary's data" };
  }
  if (primary.bitmap !== NONE && primary.bitmap === secondary.bitmap) {
    return { kind: 'splitBrain', reason: 'both nodes wrote to the volume while they were apart (split brain)' };
  }
  if (primary.current === NONE && secondary.current === NONE) {
    return {
      kind: 'primaryStale',
      reason: "neither node's data is known (new or discarded metadata on both): start the node whose data is to be kept as primary with --force-new-metadata",
    };
  }
  if (primary.current === GENERATION_EMPTY || primary.current === NONE) {
    return { kind: 'primaryStale', reason: 'the primary has an empty or discarded store and the secondary holds other data' };
  }
  if (secondary.current === GENERATION_EMPTY || secondary.current === NONE) return { kind: 'fullSync' };
  if (primary.history0 === secondary.current || primary.history1 === secondary.current) return { kind: 'fullSync' };
  if (primary.bitmap !== NONE && (secondary.history0 === primary.bitmap || secondary.history1 === primary.bitmap)) {
    return { kind: 'splitBrain', reason: 'the nodes share history but both changed the volume since (split brain)' };
  }
  return { kind: 'unrelated', reason: 'the nodes hold unrelated data (no common generation)' };
}

/** Rotate before the first write without the peer: the old current becomes the bitmap generation. */
export function rotateForDegradedWrites(g: Generations, newId: bigint): Generations {
  if (g.bitmap !== GENERATION_NONE) return g; // already tracking changes since an earlier split
  return { current: newId, bitmap: g.current, history0: g.history0, history1: g.history1 };
}

/** After a completed resync the source forgets the bitmap generation (it moves into history). */
export function afterResyncSource(g: Generations): Generations {
  if (g.bitmap === GENERATION_NONE) return g;
  return { current: g.current, bitmap: GENERATION_NONE, history0: g.bitmap, history1: g.history0 };
}

/** A resync target adopts the source's current generation. */
export function afterResyncTarget(g: Generations, sourceCurrent: bigint): Generations {
  return { current: sourceCurrent, bitmap: GENERATION_NONE, history0: g.current, history1: g.history0 };
}
