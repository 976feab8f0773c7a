/**
 * Metadata file properties (fast-check): any state round-trips through a slot, and a write torn at
 * any byte boundary (or any mix of old and new 512-byte sectors) leaves a file that loads as either
 * the previous state or the new one, never garbage and never an error. The seed is printed when a
 * property fails; rerun with FC_SEED=<seed> to reproduce.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import {
  ACTIVITY_LOG_CAPACITY,
  MetadataFile,
  activityLogExtentCount,
  decodeImage,
  decodeSlot,
  encodeSlot,
  slotBytesFor,
  type MetadataState,
} from '../../src/meta';

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() % 2 ** 31;
/** Small volumes keep a slot at 8 KiB, so every byte boundary of a slot write can be tried. */
const VOLUME_BYTES_MAX_GENERATED = 64 * 1024 * 1024;
const SECTOR_BYTES = 512;

/** fc.assert with the run's seed, printed on failure. */
function check<T>(property: fc.IProperty<T>, numRuns: number): void {
  try {
    fc.assert(property, { seed: SEED, numRuns });
  } catch (error) {
    console.error(`fast-check failed with seed ${SEED}: rerun with FC_SEED=${SEED}`);
    throw error;
  }
}

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const powerOfTwo = (minLog2: number, maxLog2: number): fc.Arbitrary<number> => fc.integer({ min: minLog2, max: maxLog2 }).map((n) => 2 ** n);

/** Volume geometry: size, bitmap regions, activity-log extents. */
const geometry = fc.record({
  volumeSizeBytes: fc.integer({ min: 1, max: VOLUME_BYTES_MAX_GENERATED }),
  regionBytes: powerOfTwo(12, 26),
  activityLogExtentBytes: powerOfTwo(12, 30),
});
type Geometry = { volumeSizeBytes: number; regionBytes: number; activityLogExtentBytes: number };

/** Everything that changes between two writes of one file (geometry and store identity stay). */
function mutableState(g: Geometry): fc.Arbitrary<Omit<MetadataState, 'sequence' | 'volumeSizeBytes' | 'regionBytes' | 'activityLogExtentBytes' | 'storeKind' | 'storeInode'>> {
  const regionCount = Math.ceil(g.volumeSizeBytes / g.regionBytes);
  const bitmapBytes = Math.ceil(regionCount / 8);
  const extentCount = activityLogExtentCount(g.volumeSizeBytes, g.activityLogExtentBytes);
  return fc.record({
    nodeId: fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }),
    role: fc.constantFrom('primary' as const, 'secondary' as const),
    diskState: fc.constantFrom('upToDate' as const, 'outdated' as const, 'inconsistent' as const),
    generations: fc.record({ current: u64, bitmap: u64, history0: u64, history1: u64 }),
    epoch: u64,
    cleanShutdown: fc.boolean(),
    activityLog: fc.uniqueArray(fc.integer({ min: 0, max: extentCount - 1 }), { maxLength: Math.min(ACTIVITY_LOG_CAPACITY, extentCount) }),
    bitmap: fc.uint8Array({ minLength: bitmapBytes, maxLength: bitmapBytes }).map((bits) => {
      const tailBits = regionCount & 7;
      if (tailBits !== 0) bits[bitmapBytes - 1]! &= (1 << tailBits) - 1;
      return bits;
    }),
  });
}

/** Three successive states of one file: the one being overwritten, the latest durable one, and the one being written. */
const threeStates = geometry.chain((g) =>
  fc.tuple(fc.constant(g), mutableState(g), mutableState(g), mutableState(g), fc.bigInt({ min: 1n, max: 2n ** 60n })).map(([g, older, old, next, firstSequence]) => {
    const fixed = { ...g, storeKind: 'file' as const, storeInode: 12345n };
    return {
      older: { ...fixed, ...older, sequence: firstSequence } as MetadataState,
      old: { ...fixed, ...old, sequence: firstSequence + 1n } as MetadataState,
      next: { ...fixed, ...next, sequence: firstSequence + 2n } as MetadataState,
    };
  }),
);

/** A two-slot image: `older` in the slot about to be rewritten, `old` (the latest) in the other. */
function imageWith(older: MetadataState, old: MetadataState, rewrittenSlot: number): { image: Buffer; slotBytes: number } {
  const slotBytes = slotBytesFor(old.volumeSizeBytes, old.regionBytes);
  const image = Buffer.alloc(2 * slotBytes);
  encodeSlot(older, image, rewrittenSlot * slotBytes);
  encodeSlot(old, image, (1 - rewrittenSlot) * slotBytes);
  return { image, slotBytes };
}

/** Field-by-field equality (fast enough to run on every byte boundary of a slot). */
function sameState(a: MetadataState, b: MetadataState): boolean {
  return (
    a.sequence === b.sequence &&
    a.volumeSizeBytes === b.volumeSizeBytes &&
    a.regionBytes === b.regionBytes &&
    a.activityLogExtentBytes === b.activityLogExtentBytes &&
    a.nodeId === b.nodeId &&
    a.role === b.role &&
    a.diskState === b.diskState &&
    a.generations.current === b.generations.current &&
    a.generations.bitmap === b.generations.bitmap &&
    a.generations.history0 === b.generations.history0 &&
    a.generations.history1 === b.generations.history1 &&
    a.epoch === b.epoch &&
    a.cleanShutdown === b.cleanShutdown &&
    a.storeKind === b.storeKind &&
    a.storeInode === b.storeInode &&
    a.activityLog.length === b.activityLog.length &&
    a.activityLog.every((extent, i) => extent === b.activityLog[i]) &&
    Buffer.compare(a.bitmap, b.bitmap) === 0
  );
}

/** Asserts the loaded state is exactly `old` or exactly `next`; returns which. */
function assertOldOrNew(loaded: MetadataState, old: MetadataState, next: MetadataState, context: string): 'old' | 'new' {
  if (sameState(loaded, next)) return 'new';
  if (sameState(loaded, old)) return 'old';
  const show = (s: MetadataState) => ({ ...s, generations: { ...s.generations }, bitmap: Buffer.from(s.bitmap).toString('hex'), activityLog: [...s.activityLog] });
  assert.fail(`${context}: loaded neither the old nor the new state:\n${JSON.stringify(show(loaded), (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
}

describe('metadata properties', function () {
  this.timeout(120_000);

  it('every state round-trips through a slot', () => {
    check(
      fc.property(threeStates, ({ next }) => {
        const slotBytes = slotBytesFor(next.volumeSizeBytes, next.regionBytes);
        const buf = Buffer.alloc(slotBytes);
        encodeSlot(next, buf, 0);
        const decoded = decodeSlot(buf, 0, slotBytes);
        assert.equal(decoded.kind, 'valid', decoded.kind === 'invalid' ? decoded.reason : '');
        assertOldOrNew((decoded as { state: MetadataState }).state, next, next, 'round trip');
      }),
      300,
    );
  });

  it('a slot write torn at every byte boundary loads as the old state or the new one', () => {
    check(
      fc.property(threeStates, fc.integer({ min: 0, max: 1 }), ({ older, old, next }, rewrittenSlot) => {
        const { image, slotBytes } = imageWith(older, old, rewrittenSlot);
        const newSlot = Buffer.alloc(slotBytes);
        encodeSlot(next, newSlot, 0);
        const base = rewrittenSlot * slotBytes;
        let sawNew = false;
        // Write the new slot one byte further each step: image then holds a prefix of length `written`.
        for (let written = 0; written <= slotBytes; written++) {
          if (written > 0) image[base + written - 1] = newSlot[written - 1]!;
          const loaded = decodeImage(image, 'torn.meta').state;
          const which = assertOldOrNew(loaded, old, next, `torn after ${written} of ${slotBytes} bytes`);
          if (which === 'new') sawNew = true;
          else assert.ok(!sawNew, `a longer prefix went back to the old state at ${written}`);
        }
        assert.ok(sawNew, 'the complete write loads as the new state');
      }),
      20,
    );
  });

  it('a slot write that reached the disk as any mix of old and new sectors loads as the old state or the new one', () => {
    check(
      fc.property(threeStates, fc.integer({ min: 0, max: 1 }), fc.infiniteStream(fc.boolean()), ({ older, old, next }, rewrittenSlot, sectorWritten) => {
        const { image, slotBytes } = imageWith(older, old, rewrittenSlot);
        const newSlot = Buffer.alloc(slotBytes);
        encodeSlot(next, newSlot, 0);
        const written = sectorWritten.take(slotBytes / SECTOR_BYTES);
        let sector = 0;
        let all = true;
        for (const isWritten of written) {
          if (isWritten) newSlot.copy(image, rewrittenSlot * slotBytes + sector * SECTOR_BYTES, sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
          else all = false;
          sector += 1;
        }
        const which = assertOldOrNew(decodeImage(image, 'torn.meta').state, old, next, 'sector mix');
        if (all) assert.equal(which, 'new');
      }),
      300,
    );
  });

  it('MetadataFile.open on a real file torn mid-write returns the state before or after the write', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-meta-prop-'));
    try {
      const storePath = path.join(dir, 'store.img');
      const volumeSizeBytes = 3 * 1024 * 1024 + 4096;
      fs.writeFileSync(storePath, Buffer.alloc(0));
      fs.truncateSync(storePath, volumeSizeBytes);
      const metaPath = MetadataFile.pathFor(storePath);
      check(
        fc.property(mutableState({ volumeSizeBytes, regionBytes: 4096, activityLogExtentBytes: 65536 }), fc.integer({ min: 0, max: 60 }), (change, stride) => {
          fs.rmSync(metaPath, { force: true });
          const meta = MetadataFile.open(storePath, { volumeSizeBytes, storeCreated: true, regionBytes: 4096, activityLogExtentBytes: 65536 });
          meta.epoch = 41n;
          meta.persistSync();
          const before = meta.snapshot();
          // Apply the generated change through the public API and take the bytes the next write would put down.
          meta.nodeId = change.nodeId;
          meta.role = change.role;
          meta.diskState = change.diskState;
          meta.generations = change.generations;
          meta.epoch = change.epoch;
          meta.cleanShutdown = change.cleanShutdown;
          for (const extent of change.activityLog) meta.activityLog.add(extent);
          for (let region = 0; region < meta.dirty.regionCount; region++) {
            if ((change.bitmap[region >>> 3]! >>> (region & 7)) & 1) meta.dirty.mark(region * 4096, 1);
          }
          const pristine = fs.readFileSync(metaPath);
          meta.persistSync();
          const after = meta.snapshot();
          const slotBytes = slotBytesFor(volumeSizeBytes, 4096);
          const targetOffset = (meta.latestSlot === 'A' ? 0 : 1) * slotBytes;
          const newSlot = fs.readFileSync(metaPath).subarray(targetOffset, targetOffset + slotBytes);
          meta.close();
          // Every header boundary, then a stride through the body, then the end.
          const cuts = new Set<number>();
          for (let cut = 0; cut <= 520; cut++) cuts.add(cut);
          for (let cut = 520; cut < slotBytes; cut += 97 + stride) cuts.add(cut);
          cuts.add(slotBytes - 1);
          cuts.add(slotBytes);
          for (const cut of cuts) {
            const torn = Buffer.from(pristine);
            newSlot.copy(torn, targetOffset, 0, cut);
            fs.writeFileSync(metaPath, torn);
            const loaded = MetadataFile.open(storePath, { volumeSizeBytes, storeCreated: false });
            const which = assertOldOrNew(loaded.snapshot(), before, after, `file torn after ${cut} bytes`);
            if (cut === slotBytes) assert.equal(which, 'new');
            loaded.close();
          }
        }),
        4,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
