import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative, StoreOp, type NativeStore } from '../../src/native';

const MIB = 1024 * 1024;

interface Completion {
  id: number;
  result: number;
}

/** A store on a fresh temp file with its completions recorded in arrival order. */
function openTempStore(sizeBytes: number): { store: NativeStore; file: string; completions: Completion[]; calls: () => number; dir: string } {
  const native = loadNative();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-store-'));
  const file = path.join(dir, 'store.img');
  const completions: Completion[] = [];
  let calls = 0;
  const store = native.openStore({ path: file, direct: false, readOnly: false, create: true }, (count, ids, results) => {
    calls++;
    assert.equal(ids.length, count);
    for (let i = 0; i < count; i++) completions.push({ id: ids[i]!, result: results[i]! });
  });
  store.truncate(sizeBytes);
  return { store, file, completions, calls: () => calls, dir };
}

async function until(predicate: () => boolean, what: string): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > 10000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function filled(length: number, byte: number): Buffer {
  return Buffer.alloc(length, byte);
}

describe('native Store', () => {
  const native = loadNative();
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });
  function temp(sizeBytes: number): ReturnType<typeof openTempStore> {
    const opened = openTempStore(sizeBytes);
    cleanups.push(() => {
      opened.store.close();
      fs.rmSync(opened.dir, { recursive: true, force: true });
    });
    return opened;
  }

  it('creates the file 0600, reports size and type, truncates', () => {
    const { store, file } = temp(2 * MIB);
    assert.equal(store.sizeBytes(), 2 * MIB);
    assert.equal(store.isBlockDevice(), false);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.ok(store.fd > 2);
    store.truncate(3 * MIB);
    assert.equal(store.sizeBytes(), 3 * MIB);
  });

  it('reads back synchronous writes (with and without FUA); reads past EOF return zeroes', () => {
    const { store } = temp(MIB);
    assert.equal(store.writeSync(filled(4096, 0x11), 0, false), 0);
    assert.equal(store.writeSync(filled(4096, 0x22), 4096, true), 0);
    const back = Buffer.alloc(8192);
    assert.equal(store.readSync(back, 0), 0);
    assert.deepEqual(back, Buffer.concat([filled(4096, 0x11), filled(4096, 0x22)]));
    const pastEnd = Buffer.alloc(8192, 0xff);
    assert.equal(store.readSync(pastEnd, MIB - 4096), 0);
    assert.deepEqual(pastEnd, Buffer.alloc(8192));
    assert.equal(store.flushSync(), 0);
  });

  it('O_DIRECT: unaligned memory goes through a bounce buffer (counted as copied), aligned offsets and lengths work', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-direct-'));
    const file = path.join(dir, 'direct.img');
    const done = new Map<number, number>();
    const store = native.openStore({ path: file, direct: true, readOnly: false, create: true }, (count, ids, results) => {
      for (let i = 0; i < count; i++) done.set(ids[i]!, results[i]!);
    });
    cleanups.push(() => {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    store.truncate(4 * MIB);
    // A payload 16 bytes into its memory, as one that arrived behind a message head; 1.5 MiB long so
    // that it takes more than one trip through the 1 MiB bounce buffer.
    const memory = Buffer.alloc(3 * MIB + 4096);
    const payload = memory.subarray(16, 16 + 1.5 * MIB);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + 3) & 0xff;
    const copiedBefore = native.copiedPayloadBytes();
    assert.equal(store.writeSync(payload, MIB, false), 0);
    store.submit(StoreOp.Write, 1, payload, 2.5 * MIB, payload.length, true);
    await until(() => done.has(1), 'the submitted write');
    assert.equal(done.get(1), 0);
    const back = memory.subarray(24, 24 + 1.5 * MIB);
    assert.equal(store.readSync(back, MIB), 0);
    assert.ok(back.equals(Buffer.from(fs.readFileSync(file).subarray(MIB, 2.5 * MIB))));
    for (let i = 0; i < back.length; i += 4099) assert.equal(back[i], (i * 7 + 3) & 0xff, `byte ${i}`);
    assert.equal(native.copiedPayloadBytes() - copiedBefore, 3 * payload.length, 'two writes and one read, each copied once');
    const onDisk = fs.readFileSync(file);
    assert.ok(onDisk.subarray(2.5 * MIB, 4 * MIB).equals(onDisk.subarray(MIB, 2.5 * MIB)));
  });

  it('trim punches a hole (allocated blocks shrink) and zero zeroes a range', function () {
    const { store, file } = temp(4 * MIB);
    assert.equal(store.writeSync(filled(4 * MIB, 0x5a), 0, false), 0);
    assert.equal(store.flushSync(), 0);
    const blocksBefore = fs.statSync(file).blocks;
    assert.equal(store.trimSync(MIB, 2 * MIB), 0);
    const blocksAfter = fs.statSync(file).blocks;
    if (blocksAfter === blocksBefore) {
      console.log(`      SKIPPED the st_blocks check: ${os.tmpdir()} does not punch holes`);
    } else {
      assert.ok(blocksAfter < blocksBefore, `st_blocks ${blocksBefore} -> ${blocksAfter}`);
    }
    const trimmed = Buffer.alloc(2 * MIB, 1);
    assert.equal(store.readSync(trimmed, MIB), 0);
    assert.deepEqual(trimmed, Buffer.alloc(2 * MIB));

    assert.equal(store.zeroSync(12345, 4096), 0);
    const around = Buffer.alloc(4096 + 2);
    assert.equal(store.readSync(around, 12344), 0);
    assert.equal(around[0], 0x5a);
    assert.deepEqual(around.subarray(1, 4097), Buffer.alloc(4096));
    assert.equal(around[4097], 0x5a);
    assert.equal(store.sizeBytes(), 4 * MIB, 'trim and zero keep the size');
  });

  it('runs submitted ops on worker threads and batches completions; buffers stay referenced', async () => {
    const { store, completions, calls } = temp(8 * MIB);
    const opCount = 64;
    for (let i = 0; i < opCount; i++) store.submit(StoreOp.Write, i, filled(64 * 1024, i), i * 64 * 1024, 64 * 1024, i % 2 === 0);
    await until(() => completions.length === opCount, 'write completions');
    assert.deepEqual(completions.map((c) => c.result), new Array(opCount).fill(0));
    assert.deepEqual([...completions.map((c) => c.id)].sort((a, b) => a - b), Array.from({ length: opCount }, (_, i) => i));
    assert.ok(calls() <= opCount);

    const reads = Array.from({ length: 8 }, () => Buffer.alloc(64 * 1024));
    reads.forEach((buf, i) => store.submit(StoreOp.Read, 1000 + i, buf, i * 64 * 1024, buf.length, false));
    await until(() => completions.length === opCount + 8, 'read completions');
    reads.forEach((buf, i) => assert.ok(buf.every((b) => b === i), `read ${i}`));
    // Ops run concurrently, so the overlapping trim/zero go only after the reads completed.
    store.submit(StoreOp.Trim, 2000, null, 0, 64 * 1024, false);
    store.submit(StoreOp.Zero, 2001, null, 64 * 1024, 64 * 1024, false);
    await until(() => completions.length === opCount + 10, 'trim and zero completions');
    assert.ok(completions.slice(opCount).every((c) => c.result === 0));
    const back = Buffer.alloc(128 * 1024, 1);
    assert.equal(store.readSync(back, 0), 0);
    assert.deepEqual(back, Buffer.alloc(128 * 1024));
  });

  it('a flush completes only after every op submitted before it', async () => {
    const { store, completions } = temp(16 * MIB);
    for (let round = 0; round < 5; round++) {
      const base = round * 100;
      for (let i = 0; i < 16; i++) store.submit(StoreOp.Write, base + i, filled(MIB, i), i * MIB, MIB, false);
      store.submit(StoreOp.Flush, base + 99, null, 0, 0, false);
    }
    await until(() => completions.length === 5 * 17, 'all completions');
    const position = new Map(completions.map((c, index) => [c.id, index]));
    for (let round = 0; round < 5; round++) {
      const flushAt = position.get(round * 100 + 99)!;
      for (let i = 0; i < 16; i++) assert.ok(position.get(round * 100 + i)! < flushAt, `round ${round} write ${i} before its flush`);
    }
    assert.ok(completions.every((c) => c.result === 0));
  });

  it('reports I/O errors as -errno results, and misuse as thrown errors', async () => {
    const { store, file, completions } = temp(MIB);
    const readOnly = native.openStore({ path: file, direct: false, readOnly: true, create: false }, (count, ids, results) => {
      for (let i = 0; i < count; i++) completions.push({ id: ids[i]!, result: results[i]! });
    });
    assert.equal(readOnly.writeSync(filled(512, 1), 0, false), -9 /* EBADF */);
    readOnly.submit(StoreOp.Write, 5, filled(512, 1), 0, 512, false);
    await until(() => completions.length === 1, 'the failed write');
    assert.deepEqual(completions[0], { id: 5, result: -9 });
    readOnly.close();
    assert.equal(readOnly.readSync(Buffer.alloc(16), 0), -9);
    assert.throws(() => readOnly.submit(StoreOp.Flush, 6, null, 0, 0, false), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
    assert.throws(() => store.submit(StoreOp.Read, 7, null, 0, 16, false), TypeError);
    assert.throws(
      () => native.openStore({ path: '/nonexistent-dir/x.img', direct: false, readOnly: false, create: false }, () => undefined),
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'open' && e.errno === 2,
    );
  });

  it('close() waits for queued ops and their completions are still delivered', async () => {
    const { store, completions } = temp(8 * MIB);
    for (let i = 0; i < 8; i++) store.submit(StoreOp.Write, i, filled(MIB, i), i * MIB, MIB, false);
    store.close();
    await until(() => completions.length === 8, 'completions after close');
    assert.ok(completions.every((c) => c.result === 0));
  });
});
