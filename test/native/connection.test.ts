import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative, NbdCommand, type NativeBinding, type PoolInfo } from '../../src/native';
import { encodeRequest, NBD_EINVAL, openHarness, sharedPool, until, type Harness, type Row } from './nbd_test_client';

const FUA = 1;

/** A tiny in-memory JS "server": applies writes, serves reads, completes everything immediately. */
function serveFromMemory(native: NativeBinding, pool: PoolInfo, harness: Harness, disk: Map<number, number>): void {
  harness.onRows = (rows: Row[]) => {
    for (const row of rows) {
      const buffer = row.slot >= 0 ? pool.slots[row.slot]! : row.largeBuffer;
      if (row.command === NbdCommand.Write) {
        for (let i = 0; i < row.length; i++) disk.set(row.offset + i, buffer![i]!);
        harness.connection.complete(row.tag, 0);
      } else if (row.command === NbdCommand.Read) {
        for (let i = 0; i < row.length; i++) buffer![i] = disk.get(row.offset + i) ?? 0;
        harness.connection.complete(row.tag, 0);
      } else if (row.command === NbdCommand.Flush || row.command === NbdCommand.Trim) {
        harness.connection.complete(row.tag, 0);
      } else {
        harness.connection.complete(row.tag, NBD_EINVAL);
      }
    }
  };
}

function pattern(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buffer[i] = (i * 31 + seed) & 0xff;
  return buffer;
}

describe('native NbdConnection', () => {
  const native = loadNative();
  let pool: PoolInfo;
  const open: Harness[] = [];

  before(() => {
    pool = sharedPool(native);
  });

  afterEach(() => {
    for (const harness of open.splice(0)) harness.dispose();
  });

  async function harness(options: Parameters<typeof openHarness>[1] = {}): Promise<Harness> {
    const h = await openHarness(native, options);
    open.push(h);
    return h;
  }

  it('round-trips a WRITE and a READ with zero payload copies', async () => {
    const h = await harness();
    serveFromMemory(native, pool, h, new Map());
    const copiedBefore = native.copiedPayloadBytes();
    const data = pattern(4096, 7);
    h.client.send(NbdCommand.Write, 0xfedcba9876543210n, 8192n, data.length, data, FUA);
    const [writeReply] = await h.client.waitReplies(1);
    assert.equal(writeReply!.error, 0);
    assert.equal(writeReply!.cookie, 0xfedcba9876543210n);
    h.client.send(NbdCommand.Read, 2n, 8192n, data.length);
    const replies = await h.client.waitReplies(2);
    assert.equal(replies[1]!.error, 0);
    assert.deepEqual(replies[1]!.payload, data);

    const rows = h.batches.flat();
    assert.equal(rows.length, 2);
    assert.equal(rows[0]!.command, NbdCommand.Write);
    assert.equal(rows[0]!.flags, FUA);
    assert.equal(rows[0]!.offset, 8192);
    assert.equal(rows[0]!.length, 4096);
    assert.ok(rows[0]!.slot >= 0 && rows[0]!.slot < pool.slotCount);
    assert.equal(rows[1]!.command, NbdCommand.Read);
    const stats = h.connection.stats();
    assert.equal(stats.requests, 2);
    assert.equal(stats.payloadBytesIn, 4096);
    assert.equal(stats.payloadBytesOut, 4096);
    assert.equal(stats.copiedPayloadBytes, 0);
    assert.equal(stats.inFlight, 0);
    assert.equal(native.copiedPayloadBytes() - copiedBefore, 0);
  });

  it('delivers FLUSH, TRIM and unknown commands to JS and echoes the cookies', async () => {
    const h = await harness();
    serveFromMemory(native, pool, h, new Map());
    h.client.send(NbdCommand.Flush, 11n, 0n, 0);
    h.client.send(NbdCommand.Trim, 12n, 4096n, 65536);
    h.client.send(42, 13n, 0n, 0);
    const replies = await h.client.waitReplies(3);
    assert.deepEqual(replies.map((r) => [r.cookie, r.error]), [[11n, 0], [12n, 0], [13n, NBD_EINVAL]]);
    assert.deepEqual(h.batches.flat().map((r) => [r.command, r.slot]), [[NbdCommand.Flush, -1], [NbdCommand.Trim, -1], [42, -1]]);
    assert.equal(h.batches.flat()[1]!.length, 65536);
  });

  it('refuses offsets beyond 2^53 and reads beyond payloadBytesMax natively with EINVAL', async () => {
    const h = await harness({ payloadBytesMax: 8192 });
    serveFromMemory(native, pool, h, new Map());
    h.client.send(NbdCommand.Read, 1n, 1n << 60n, 512);
    h.client.send(NbdCommand.Write, 2n, 1n << 53n, 512, Buffer.alloc(512));
    h.client.send(NbdCommand.Read, 3n, 0n, 8193);
    h.client.send(NbdCommand.Read, 4n, 0n, 512);
    const replies = await h.client.waitReplies(4);
    assert.deepEqual(replies.map((r) => [r.cookie, r.error]), [[1n, NBD_EINVAL], [2n, NBD_EINVAL], [3n, NBD_EINVAL], [4n, 0]]);
    assert.deepEqual(h.batches.flat().map((r) => r.command), [NbdCommand.Read]);
    assert.equal(h.connection.stats().requests, 4);
  });

  it('closes a connection with a bad magic as a protocol error without affecting another connection', async () => {
    const bad = await harness({ name: 'bad' });
    const good = await harness({ name: 'good' });
    serveFromMemory(native, pool, good, new Map());
    const logged: string[] = [];
    native.setLogger((_level, message) => logged.push(message));
    bad.client.socket.write(Buffer.alloc(28, 0xab));
    const end = await bad.closed;
    assert.equal(end.reason, 'protocol');
    await bad.client.waitClosed();
    await until(() => logged.some((line) => line.includes('bad') && line.includes('magic')), 'the protocol error log line');
    assert.equal(bad.batches.length, 0);

    const data = pattern(1000, 3);
    good.client.send(NbdCommand.Write, 1n, 0n, data.length, data);
    good.client.send(NbdCommand.Read, 2n, 0n, data.length);
    const replies = await good.client.waitReplies(2);
    assert.deepEqual(replies[1]!.payload, data);
    assert.equal(good.closeCount(), 0);
  });

  it('closes on a write longer than payloadBytesMax', async () => {
    const h = await harness({ payloadBytesMax: 4096 });
    h.client.send(NbdCommand.Write, 1n, 0n, 4097, Buffer.alloc(4097));
    const end = await h.closed;
    assert.equal(end.reason, 'protocol');
    assert.equal(h.batches.length, 0);
    await h.client.waitClosed();
  });

  it("reports 'eof' and delivers nothing when the client vanishes mid-payload", async () => {
    const h = await harness();
    h.client.send(NbdCommand.Write, 1n, 0n, 4096, Buffer.alloc(100, 1));
    await new Promise((resolve) => setTimeout(resolve, 20));
    h.client.socket.destroy();
    const end = await h.closed;
    assert.equal(end.reason, 'eof');
    assert.equal(h.batches.length, 0);
    assert.equal(h.connection.stats().inFlight, 0);
    assert.equal(h.closeCount(), 1);
  });

  it('delivers many pipelined requests in fewer batches than requests, replies in order', async () => {
    const h = await harness();
    const disk = new Map<number, number>();
    serveFromMemory(native, pool, h, disk);
    const requestCount = 500;
    for (let i = 0; i < requestCount; i++) h.client.send(NbdCommand.Read, BigInt(i), BigInt(i * 512), 512);
    const replies = await h.client.waitReplies(requestCount);
    assert.equal(replies.length, requestCount);
    // In-flight replies may be sent in any order by NBD; this server completes in arrival order, so
    // native must preserve that order.
    assert.deepEqual(replies.map((r) => r.cookie), Array.from({ length: requestCount }, (_, i) => BigInt(i)));
    const stats = h.connection.stats();
    assert.equal(stats.requests, requestCount);
    assert.ok(stats.batches < requestCount, `${stats.batches} batches for ${requestCount} requests`);
    assert.equal(stats.batches, h.batches.length);
  });

  it('reads and writes longer than a slot use dedicated buffers, still without copies', async () => {
    const length = pool.slotBytes * 2 + 512;
    const h = await harness({ payloadBytesMax: pool.slotBytes * 4 });
    serveFromMemory(native, pool, h, new Map());
    const copiedBefore = native.copiedPayloadBytes();
    const data = pattern(length, 9);
    h.client.send(NbdCommand.Write, 1n, 4096n, length, data);
    h.client.send(NbdCommand.Read, 2n, 4096n, length);
    const replies = await h.client.waitReplies(2);
    assert.deepEqual(replies[1]!.payload, data);
    const rows = h.batches.flat();
    assert.equal(rows[0]!.slot, -1);
    assert.equal(rows[0]!.largeBuffer!.length, length);
    assert.equal(rows[1]!.slot, -1);
    assert.equal(native.copiedPayloadBytes() - copiedBefore, 0);
  });

  it('finishes a reply larger than the socket buffer on the writer thread, keeping reply order', async () => {
    const length = 8 * 1024 * 1024;
    const h = await harness({ payloadBytesMax: length });
    h.onRows = (rows) => {
      for (const row of rows) {
        if (row.command === NbdCommand.Read) (row.slot >= 0 ? pool.slots[row.slot]! : row.largeBuffer!).fill(0x33, 0, row.length);
        h.connection.complete(row.tag, 0);
      }
    };
    h.client.socket.pause(); // make the direct nonblocking send hit EAGAIN
    h.client.send(NbdCommand.Read, 1n, 0n, length);
    h.client.send(NbdCommand.Flush, 2n, 0n, 0);
    h.client.send(NbdCommand.Read, 3n, 0n, 512);
    await until(() => h.batches.flat().length === 3, 'three requests');
    await new Promise((resolve) => setTimeout(resolve, 20));
    h.client.socket.resume();
    const replies = await h.client.waitReplies(3);
    assert.deepEqual(replies.map((r) => r.cookie), [1n, 2n, 3n]);
    assert.equal(replies[0]!.payload.length, length);
    assert.ok(replies[0]!.payload.every((b) => b === 0x33));
    assert.equal(h.connection.stats().payloadBytesOut, length + 512);
  });

  it('applies backpressure: no more requests than free slots are taken while JS holds them', async () => {
    const h = await harness();
    const held: Row[] = [];
    h.onRows = (rows) => held.push(...rows);
    const writes = pool.slotCount + 4;
    for (let i = 0; i < writes; i++) h.client.send(NbdCommand.Write, BigInt(i), BigInt(i * 4096), 4096, Buffer.alloc(4096, i));
    await until(() => held.length === pool.slotCount, 'every slot to be taken');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(held.length, pool.slotCount);
    assert.equal(h.connection.stats().inFlight, pool.slotCount);
    const slots = new Set(held.map((r) => r.slot));
    assert.equal(slots.size, pool.slotCount, 'each in-flight request has its own slot');
    for (const row of held.splice(0)) h.connection.complete(row.tag, 0);
    await until(() => held.length === 4, 'the remaining writes');
    for (const row of held.splice(0)) h.connection.complete(row.tag, 0);
    const replies = await h.client.waitReplies(writes);
    assert.equal(replies.length, writes);
  });

  it("waits for in-flight requests on NBD_CMD_DISC, then ends with 'disconnect'", async () => {
    const h = await harness();
    h.onRows = (rows) => {
      for (const row of rows) setTimeout(() => h.connection.complete(row.tag, 0), 30);
    };
    h.client.send(NbdCommand.Write, 1n, 0n, 512, Buffer.alloc(512, 1));
    h.client.send(NbdCommand.Disc, 2n, 0n, 0);
    const end = await h.closed;
    assert.equal(end.reason, 'disconnect');
    const replies = await h.client.waitReplies(1);
    assert.equal(replies.length, 1, 'the write was answered before the disconnect');
    await h.client.waitClosed();
  });

  it("close() ends with 'closed' once; complete() afterwards only releases; unknown tags throw", async () => {
    const h = await harness();
    const held: Row[] = [];
    h.onRows = (rows) => held.push(...rows);
    h.client.send(NbdCommand.Write, 1n, 0n, 512, Buffer.alloc(512, 1));
    await until(() => held.length === 1, 'the write');
    assert.throws(() => h.connection.complete(held[0]!.tag + 1000, 0), /not an in-flight request/);
    h.connection.close();
    h.connection.close();
    const end = await h.closed;
    assert.equal(end.reason, 'closed');
    h.connection.complete(held[0]!.tag, 0);
    assert.throws(() => h.connection.complete(held[0]!.tag, 0), (error: NodeJS.ErrnoException) => error.code === 'EINVAL');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(h.closeCount(), 1);
    assert.equal(h.connection.stats().inFlight, 0);
    await h.client.waitClosed();
  });

  it('consumes initialBytes before the socket and counts the payload bytes it had to copy', async () => {
    const data = pattern(2048, 5);
    const initialBytes = Buffer.concat([
      encodeRequest(NbdCommand.Flush, 1n, 0n, 0),
      encodeRequest(NbdCommand.Write, 2n, 0n, data.length),
      data.subarray(0, 100),
    ]);
    const h = await harness({ initialBytes });
    const disk = new Map<number, number>();
    serveFromMemory(native, pool, h, disk);
    h.client.socket.write(data.subarray(100));
    h.client.send(NbdCommand.Read, 3n, 0n, data.length);
    const replies = await h.client.waitReplies(3);
    assert.deepEqual(replies.map((r) => r.cookie), [1n, 2n, 3n]);
    assert.deepEqual(replies[2]!.payload, data);
    assert.equal(h.connection.stats().copiedPayloadBytes, 100);
  });

  it('rejects a non-socket fd with ENOTSOCK', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-native-'));
    const fd = fs.openSync(path.join(dir, 'file'), 'w');
    try {
      assert.throws(
        () => native.openConnection({ fd, payloadBytesMax: 4096, name: 'file' }, () => undefined, () => undefined),
        (error: NodeJS.ErrnoException) => error.code === 'ENOTSOCK' && error.syscall === 'openConnection',
      );
    } finally {
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
