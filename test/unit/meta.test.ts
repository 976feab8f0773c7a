/**
 * The metadata file (src/meta): round trip of every field, slot alternation, group commit, and every
 * way a file is refused (docs/metadata.md lists the error codes).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DirtyRegions } from '../../src/mirror/dirty-regions';
import { GENERATION_EMPTY, GENERATION_NONE } from '../../src/mirror/sync-decision';
import {
  ACTIVITY_LOG_CAPACITY,
  ACTIVITY_LOG_EXTENT_BYTES_DEFAULT,
  ActivityLog,
  FORMAT_VERSION,
  HEADER_BYTES,
  MetadataError,
  MetadataFile,
  REGION_BYTES_DEFAULT,
  encodeSlot,
  slotBytesFor,
  type MetadataErrorCode,
  type MetadataState,
} from '../../src/meta';
import { Offset } from '../../src/meta/layout';
import { crc32c } from '../../src/wire/crc32c';

const VOLUME_BYTES = 64 * 1024 * 1024 + 12345; // not a region multiple: the last region is short
const REGION_BYTES = 64 * 1024;
const SLOT_BYTES = slotBytesFor(VOLUME_BYTES, REGION_BYTES);

/** A fresh directory with a store file that holds data (one written block). */
function makeStore(): { dir: string; storePath: string; metaPath: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-meta-'));
  const storePath = path.join(dir, 'store.img');
  fs.writeFileSync(storePath, Buffer.alloc(0));
  fs.truncateSync(storePath, VOLUME_BYTES);
  return { dir, storePath, metaPath: MetadataFile.pathFor(storePath) };
}

/** Give the store an allocated block, as a store that holds data has. */
function writeStoreData(storePath: string): void {
  const fd = fs.openSync(storePath, 'r+');
  fs.writeSync(fd, Buffer.alloc(4096, 0xab), 0, 4096, 0);
  fs.closeSync(fd);
}

function openExisting(storePath: string, volumeSizeBytes = VOLUME_BYTES): MetadataFile {
  return MetadataFile.open(storePath, { volumeSizeBytes, storeCreated: false });
}

function assertMetadataError(fn: () => unknown, code: MetadataErrorCode, pathFragment: string): MetadataError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof MetadataError, `expected MetadataError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.ok(caught.message.includes(pathFragment), `message names the file: ${caught.message}`);
  return caught;
}

/** Flip one byte of the file at `offset`. */
function flipByte(file: string, offset: number): void {
  const bytes = fs.readFileSync(file);
  bytes[offset] = bytes[offset]! ^ 0x5a;
  fs.writeFileSync(file, bytes);
}

/** Sequence number stored in the header of slot `index` (no validation). */
function rawSequence(file: string, index: number): bigint {
  return fs.readFileSync(file).readBigUInt64BE(index * SLOT_BYTES + Offset.Sequence);
}

describe('metadata file', () => {
  const dirs: string[] = [];
  let store: { dir: string; storePath: string; metaPath: string };

  beforeEach(() => {
    store = makeStore();
    dirs.push(store.dir);
  });
  after(() => {
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates fresh metadata for a just-created store: random node id, generation EMPTY, epoch 1, caller disk state', () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true, initialDiskState: 'upToDate', initialRole: 'primary' });
    assert.equal(meta.path, store.metaPath);
    assert.equal(meta.created, true);
    assert.notEqual(meta.nodeId, 0n);
    assert.deepEqual(meta.generations, { current: GENERATION_EMPTY, bitmap: GENERATION_NONE, history0: GENERATION_NONE, history1: GENERATION_NONE });
    assert.equal(meta.epoch, 1n);
    assert.equal(meta.cleanShutdown, true);
    assert.equal(meta.activityLogExtentBytes, ACTIVITY_LOG_EXTENT_BYTES_DEFAULT);
    assert.equal(meta.diskState, 'upToDate');
    assert.equal(meta.role, 'primary');
    assert.equal(meta.regionBytes, REGION_BYTES_DEFAULT);
    assert.equal(meta.dirty.count, 0);
    assert.deepEqual(meta.activityLog.list(), []);
    assert.equal(meta.activityLog.capacity, ACTIVITY_LOG_CAPACITY);
    assert.equal(fs.statSync(store.metaPath).size, 2 * SLOT_BYTES);
    assert.equal(fs.existsSync(store.metaPath + '.tmp'), false);
    meta.close();

    const again = openExisting(store.storePath);
    assert.equal(again.created, false);
    assert.equal(again.nodeId, meta.nodeId);
    assert.equal(again.diskState, 'upToDate');
    again.close();
  });

  it('defaults a fresh file to secondary and inconsistent', () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    assert.equal(meta.role, 'secondary');
    assert.equal(meta.diskState, 'inconsistent');
    meta.close();
  });

  it('round-trips every field through persistSync', () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    meta.nodeId = 0xfedcba9876543210n;
    meta.role = 'primary';
    meta.diskState = 'outdated';
    meta.generations = { current: 2n ** 64n - 1n, bitmap: 0x1111n, history0: 0x2222n, history1: 1n };
    meta.epoch = 0x8000000000000001n;
    meta.cleanShutdown = false;
    meta.dirty.mark(0, 1);
    meta.dirty.mark(5 * REGION_BYTES + 7, 3 * REGION_BYTES); // regions 5..8
    meta.dirty.mark(VOLUME_BYTES - 1, 1); // the short last region
    const lastRegion = meta.dirty.regionCount - 1;
    const lastExtent = Math.ceil(VOLUME_BYTES / ACTIVITY_LOG_EXTENT_BYTES_DEFAULT) - 1;
    for (const extent of [lastExtent, 3, 0, 9]) meta.activityLog.add(extent);
    meta.persistSync();
    meta.close();

    const loaded = openExisting(store.storePath);
    assert.equal(loaded.nodeId, 0xfedcba9876543210n);
    assert.equal(loaded.role, 'primary');
    assert.equal(loaded.diskState, 'outdated');
    assert.deepEqual(loaded.generations, { current: 2n ** 64n - 1n, bitmap: 0x1111n, history0: 0x2222n, history1: 1n });
    assert.equal(loaded.epoch, 0x8000000000000001n);
    assert.equal(loaded.cleanShutdown, false);
    assert.equal(loaded.volumeSizeBytes, VOLUME_BYTES);
    assert.equal(loaded.regionBytes, REGION_BYTES);
    const dirtyRegions: number[] = [];
    for (let r = loaded.dirty.nextDirty(0); r !== -1; r = loaded.dirty.nextDirty(r + 1)) dirtyRegions.push(r);
    assert.deepEqual(dirtyRegions, [0, 5, 6, 7, 8, lastRegion]);
    assert.equal(loaded.dirty.count, 6);
    assert.deepEqual(loaded.activityLog.list(), [lastExtent, 3, 0, 9]);
    assert.equal(loaded.activityLog.extentCount, lastExtent + 1);
    loaded.close();
  });

  it('round-trips the clean-shutdown mark both ways and every disk state', async () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    for (const diskState of ['upToDate', 'outdated', 'inconsistent'] as const) {
      for (const cleanShutdown of [true, false]) {
        meta.diskState = diskState;
        meta.cleanShutdown = cleanShutdown;
        await meta.persist();
        const loaded = openExisting(store.storePath);
        assert.equal(loaded.diskState, diskState);
        assert.equal(loaded.cleanShutdown, cleanShutdown);
        loaded.close();
      }
    }
    meta.close();
  });

  it('alternates slots: every write goes to the slot without the latest copy, with a higher sequence', () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    assert.equal(meta.latestSlot, 'B');
    assert.equal(meta.sequence, 2n);
    assert.deepEqual([rawSequence(store.metaPath, 0), rawSequence(store.metaPath, 1)], [1n, 2n]);
    const expected: [string, bigint, bigint][] = [
      ['A', 3n, 2n],
      ['B', 3n, 4n],
      ['A', 5n, 4n],
      ['B', 5n, 6n],
    ];
    for (const [slot, seqA, seqB] of expected) {
      meta.epoch += 1n;
      meta.persistSync();
      assert.equal(meta.latestSlot, slot);
      assert.deepEqual([rawSequence(store.metaPath, 0), rawSequence(store.metaPath, 1)], [seqA, seqB]);
      const loaded = openExisting(store.storePath);
      assert.equal(loaded.epoch, meta.epoch);
      assert.equal(loaded.latestSlot, slot);
      loaded.close();
    }
    meta.close();
  });

  it('group commit: callers of one tick share one write; callers during a write share the next one', async () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    const sameTick = Array.from({ length: 8 }, () => meta.persist());
    await Promise.all(sameTick);
    assert.equal(meta.writeCount, 1);

    meta.epoch = 10n;
    const first = meta.persist();
    // Let the write start (it begins on a microtask and waits on the thread pool, which cannot finish within microtasks).
    for (let i = 0; i < 5; i++) await Promise.resolve();
    meta.epoch = 11n;
    const during = Array.from({ length: 5 }, () => meta.persist());
    await Promise.all([first, ...during]);
    assert.equal(meta.writeCount, 3);
    const loaded = openExisting(store.storePath);
    assert.equal(loaded.epoch, 11n, 'the shared write holds the state of its callers');
    loaded.close();
    meta.close();
  });

  it('a failed fdatasync fails every waiting caller and every later persist (META_WRITE_FAILED)', async () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    const fsModule = require('node:fs') as typeof fs;
    const original = fsModule.fdatasync;
    fsModule.fdatasync = ((fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
      const error: NodeJS.ErrnoException = new Error('EIO: i/o error, fdatasync');
      error.code = 'EIO';
      process.nextTick(() => callback(error));
    }) as typeof fs.fdatasync;
    try {
      const results = await Promise.allSettled([meta.persist(), meta.persist()]);
      for (const result of results) {
        assert.equal(result.status, 'rejected');
        assert.equal((result as PromiseRejectedResult).reason.code, 'META_WRITE_FAILED');
      }
    } finally {
      fsModule.fdatasync = original;
    }
    await assert.rejects(meta.persist(), (error: MetadataError) => error.code === 'META_WRITE_FAILED');
    assert.throws(() => meta.persistSync(), (error: MetadataError) => error.code === 'META_WRITE_FAILED');
    assert.equal(meta.latestSlot, 'B', 'the latest durable copy did not move');
    meta.close();
    openExisting(store.storePath).close();
  });

  it('refuses persistSync and close while an async persist is in flight', async () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    const pending = meta.persist();
    assert.throws(() => meta.persistSync(), /in progress/);
    assert.throws(() => meta.close(), /in progress/);
    await pending;
    meta.close();
  });

  it('uses slot A when the latest slot B has a flipped byte (header, bitmap or padding)', () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    meta.epoch = 7n;
    meta.persistSync(); // A: epoch 7, seq 3
    meta.epoch = 8n;
    meta.persistSync(); // B: epoch 8, seq 4
    meta.close();
    const pristine = fs.readFileSync(store.metaPath);
    for (const offset of [0, Offset.Sequence + 7, Offset.Epoch, HEADER_BYTES - 1, HEADER_BYTES + 1, SLOT_BYTES - 1]) {
      fs.writeFileSync(store.metaPath, pristine);
      flipByte(store.metaPath, SLOT_BYTES + offset);
      const loaded = openExisting(store.storePath);
      assert.equal(loaded.epoch, 7n, `flip at B+${offset}`);
      assert.equal(loaded.latestSlot, 'A');
      loaded.close();
    }
  });

  it('uses slot B when slot A has a flipped byte, even in its magic or size field', () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    meta.epoch = 8n;
    meta.persistSync(); // A: epoch 8, seq 3 (latest)
    meta.close();
    const pristine = fs.readFileSync(store.metaPath);
    for (const offset of [Offset.Magic, Offset.FormatVersion, Offset.SlotBytes + 2, Offset.HeaderCrc, 4000]) {
      fs.writeFileSync(store.metaPath, pristine);
      flipByte(store.metaPath, offset);
      const loaded = openExisting(store.storePath);
      assert.equal(loaded.epoch, 1n, `flip at A+${offset}`);
      assert.equal(loaded.latestSlot, 'B');
      // The next write repairs A.
      loaded.persistSync();
      assert.equal(loaded.latestSlot, 'A');
      loaded.close();
    }
  });

  it('META_CORRUPT when both slots have a flipped byte', () => {
    MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true }).close();
    flipByte(store.metaPath, 100);
    flipByte(store.metaPath, SLOT_BYTES + HEADER_BYTES + 10);
    const error = assertMetadataError(() => openExisting(store.storePath), 'META_CORRUPT', store.metaPath);
    assert.match(error.message, /A: header checksum mismatch; B: body checksum mismatch/);
  });

  it('META_CORRUPT when both headers are damaged, and when the file is longer than its layout', () => {
    MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true }).close();
    const pristine = fs.readFileSync(store.metaPath);
    flipByte(store.metaPath, Offset.SlotBytes);
    flipByte(store.metaPath, SLOT_BYTES + Offset.SlotBytes);
    assertMetadataError(() => openExisting(store.storePath), 'META_CORRUPT', store.metaPath);
    fs.writeFileSync(store.metaPath, Buffer.concat([pristine, Buffer.alloc(4096)]));
    assertMetadataError(() => openExisting(store.storePath), 'META_CORRUPT', store.metaPath);
  });

  it('META_TRUNCATED for an empty file, a cut header and a cut second slot', () => {
    MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true }).close();
    const pristine = fs.readFileSync(store.metaPath);
    for (const length of [0, 5, 300, SLOT_BYTES, SLOT_BYTES + 100, 2 * SLOT_BYTES - 1]) {
      fs.writeFileSync(store.metaPath, pristine.subarray(0, length));
      assertMetadataError(() => openExisting(store.storePath), 'META_TRUNCATED', store.metaPath);
    }
  });

  it('META_FOREIGN for another magic in both slots, a text file, and a directory', () => {
    MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true }).close();
    const bytes = fs.readFileSync(store.metaPath);
    bytes.write('NOTOURS!', 0, 'ascii');
    bytes.write('NOTOURS!', SLOT_BYTES, 'ascii');
    fs.writeFileSync(store.metaPath, bytes);
    assertMetadataError(() => openExisting(store.storePath), 'META_FOREIGN', store.metaPath);
    fs.writeFileSync(store.metaPath, 'node_id=1\nrole=primary\n');
    assertMetadataError(() => openExisting(store.storePath), 'META_FOREIGN', store.metaPath);
    fs.writeFileSync(store.metaPath, Buffer.alloc(16384, 0x41));
    assertMetadataError(() => openExisting(store.storePath), 'META_FOREIGN', store.metaPath);
    fs.rmSync(store.metaPath);
    fs.mkdirSync(store.metaPath);
    assertMetadataError(() => openExisting(store.storePath), 'META_FOREIGN', store.metaPath);
  });

  it('META_VERSION when a slot was written by another format version (valid header checksum)', () => {
    MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true }).close();
    const bytes = fs.readFileSync(store.metaPath);
    bytes.writeUInt32BE(FORMAT_VERSION + 1, Offset.FormatVersion);
    const crc = crc32c(bytes.subarray(Offset.HeaderCrc + 4, HEADER_BYTES), crc32c(bytes.subarray(0, Offset.HeaderCrc)));
    bytes.writeUInt32BE(crc, Offset.HeaderCrc);
    fs.writeFileSync(store.metaPath, bytes);
    const error = assertMetadataError(() => openExisting(store.storePath), 'META_VERSION', store.metaPath);
    assert.match(error.message, /version 2/);
  });

  it('META_SIZE_MISMATCH and META_REGION_MISMATCH', () => {
    MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true }).close();
    assertMetadataError(() => openExisting(store.storePath, VOLUME_BYTES + 4096), 'META_SIZE_MISMATCH', store.metaPath);
    assertMetadataError(
      () => MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: false, regionBytes: 128 * 1024 }),
      'META_REGION_MISMATCH',
      store.metaPath,
    );
    MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: false, regionBytes: REGION_BYTES }).close();
  });

  it('META_STORE_MISMATCH when the store file was replaced, or was just created beside old metadata', () => {
    MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true }).close();
    assertMetadataError(
      () => MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true }),
      'META_STORE_MISMATCH',
      store.metaPath,
    );
    // A new file renamed over the store (created while the old one exists, so its inode differs).
    const replacement = store.storePath + '.new';
    fs.writeFileSync(replacement, Buffer.alloc(0));
    fs.truncateSync(replacement, VOLUME_BYTES);
    fs.renameSync(replacement, store.storePath);
    assertMetadataError(() => openExisting(store.storePath), 'META_STORE_MISMATCH', store.metaPath);
  });

  it('META_MISSING for a store that holds data; fresh metadata for a store without an allocated block', () => {
    writeStoreData(store.storePath);
    const error = assertMetadataError(() => openExisting(store.storePath), 'META_MISSING', store.metaPath);
    assert.match(error.message, /full sync/);
    assert.equal(fs.existsSync(store.metaPath), false, 'nothing was created');

    const empty = makeStore();
    dirs.push(empty.dir);
    const meta = openExisting(empty.storePath);
    assert.equal(meta.created, true);
    assert.equal(meta.generations.current, GENERATION_EMPTY);
    meta.close();
  });

  it('META_GEOMETRY for region or extent sizes that are not powers of two in range, and for an oversized bitmap', () => {
    for (const regionBytes of [1000, 2048, 128 * 1024 * 1024]) {
      assertMetadataError(
        () => MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true, regionBytes }),
        'META_GEOMETRY',
        store.metaPath,
      );
    }
    for (const activityLogExtentBytes of [3 * 4096, 2048, 2 * 1024 * 1024 * 1024]) {
      assertMetadataError(
        () => MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true, activityLogExtentBytes }),
        'META_GEOMETRY',
        store.metaPath,
      );
    }
    // 2^50 bytes at 4 KiB regions would need a 32 GiB bitmap.
    assertMetadataError(
      () => MetadataFile.create(store.storePath, { volumeSizeBytes: 2 ** 50, diskState: 'inconsistent', regionBytes: 4096 }),
      'META_GEOMETRY',
      store.metaPath,
    );
    assert.equal(fs.existsSync(store.metaPath), false);
  });

  it('create() replaces an existing file explicitly: new node id, generation NONE (full sync into it), epoch 1', () => {
    const old = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    old.generations = { current: 99n, bitmap: 98n, history0: 97n, history1: 96n };
    old.epoch = 5n;
    old.dirty.markAll();
    old.persistSync();
    old.close();
    const fresh = MetadataFile.create(store.storePath, {
      volumeSizeBytes: VOLUME_BYTES,
      diskState: 'inconsistent',
      regionBytes: 4096,
      activityLogExtentBytes: 1024 * 1024,
    });
    assert.notEqual(fresh.nodeId, old.nodeId);
    assert.equal(fresh.generations.current, GENERATION_NONE);
    assert.equal(fresh.activityLogExtentBytes, 1024 * 1024);
    assert.equal(fresh.epoch, 1n);
    assert.equal(fresh.regionBytes, 4096);
    assert.equal(fresh.dirty.count, 0);
    fresh.close();
    const loaded = openExisting(store.storePath);
    assert.equal(loaded.nodeId, fresh.nodeId);
    assert.equal(loaded.activityLogExtentBytes, 1024 * 1024);
    assert.equal(loaded.activityLog.extentCount, Math.ceil(VOLUME_BYTES / (1024 * 1024)));
    loaded.close();
    assertMetadataError(
      () => MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: false, activityLogExtentBytes: 4 * 1024 * 1024 }),
      'META_REGION_MISMATCH',
      store.metaPath,
    );
  });

  it('rejects values the file cannot hold', () => {
    const meta = MetadataFile.open(store.storePath, { volumeSizeBytes: VOLUME_BYTES, storeCreated: true });
    assert.throws(() => (meta.epoch = -1n));
    assert.throws(() => (meta.epoch = 2n ** 64n));
    assert.throws(() => (meta.nodeId = 0n));
    assert.throws(() => (meta.generations = { current: 0n, bitmap: 0n, history0: 0n, history1: 2n ** 64n }));
    assert.throws(() => (meta.role = 'leader' as never));
    assert.throws(() => (meta.diskState = 'fine' as never));
    meta.close();
  });
});

describe('metadata slot layout', () => {
  it('encodes the example of docs/metadata.md byte for byte', () => {
    const bitmap = new Uint8Array(2048);
    bitmap[0] = 0x81;
    const state: MetadataState = {
      sequence: 3n,
      volumeSizeBytes: 2 ** 30,
      regionBytes: 65536,
      activityLogExtentBytes: 4 * 1024 * 1024,
      nodeId: 0x0123456789abcdefn,
      role: 'primary',
      diskState: 'upToDate',
      generations: { current: 0x1111111111111111n, bitmap: 0n, history0: 0x2222222222222222n, history1: 0n },
      epoch: 2n,
      cleanShutdown: true,
      storeKind: 'file',
      storeInode: 131074n,
      activityLog: [5, 0],
      bitmap,
    };
    const slotBytes = slotBytesFor(state.volumeSizeBytes, state.regionBytes);
    assert.equal(slotBytes, 8192);
    const slot = Buffer.alloc(slotBytes);
    encodeSlot(state, slot, 0);
    const expectedHeader =
      '424d49524d455441000000010000020' + '0' +
      '5bedbe95f1f12c750000000000000003' +
      '00002000000100000000000040000000' +
      '0123456789abcdef0000000000000002' +
      '11111111111111110000000000000000' +
      '22222222222222220000000000000000' +
      '00000000000200020101010100000400' +
      '00000002000002000000120000000800' +
      '00400000';
    assert.equal(slot.subarray(0, 132).toString('hex'), expectedHeader);
    assert.ok(slot.subarray(132, HEADER_BYTES).every((b) => b === 0), 'reserved bytes are zero');
    assert.equal(slot.subarray(512, 520).toString('hex'), '0000000500000000');
    assert.equal(slot.subarray(4608, 4610).toString('hex'), '8100');
    assert.equal(slotBytesFor(2 ** 40, 65536), 2_105_344);
  });
});

describe('activity log', () => {
  it('adds, removes, lists in insertion order and refuses to add past its capacity', () => {
    const log = new ActivityLog(10_000);
    for (let i = 0; i < ACTIVITY_LOG_CAPACITY; i++) log.add((i * 7) % 10_000);
    assert.equal(log.isFull, true);
    assert.throws(() => log.add(9999), /full/);
    assert.equal(log.has(9999), false);
    log.add(7); // already present: fine when full
    assert.equal(log.remove(7), true);
    assert.equal(log.remove(7), false);
    assert.equal(log.has(7), false);
    log.add(9999);
    assert.equal(log.list().at(-1), 9999);
    assert.equal(log.size, ACTIVITY_LOG_CAPACITY);
    assert.throws(() => log.add(10_000), RangeError);
    assert.throws(() => log.add(-1), RangeError);
    assert.throws(() => log.add(1.5), RangeError);
  });
});

describe('DirtyRegions bytes', () => {
  it('toBytes/fromBytes round-trips bits and count, and rejects a wrong length or stray tail bits', () => {
    const regions = new DirtyRegions(10 * 4096 + 1, 4096); // 11 regions, 2 bytes
    regions.mark(0, 1);
    regions.mark(10 * 4096, 1);
    const bytes = regions.toBytes();
    assert.deepEqual([...bytes], [0x01, 0x04]);
    const back = DirtyRegions.fromBytes(10 * 4096 + 1, 4096, bytes);
    assert.equal(back.count, 2);
    assert.equal(back.isDirty(10), true);
    assert.equal(back.dirtyBytes, regions.dirtyBytes);
    bytes[0] = 0xff;
    assert.equal(regions.isDirty(1), false, 'toBytes returns a copy');
    assert.throws(() => DirtyRegions.fromBytes(10 * 4096 + 1, 4096, new Uint8Array([0, 0x08])), RangeError);
    assert.throws(() => DirtyRegions.fromBytes(10 * 4096 + 1, 4096, new Uint8Array(3)), RangeError);
  });
});
