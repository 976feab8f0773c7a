/**
 * The resync channel's native ends (native/resync_channel.cc) over a real loopback TCP connection,
 * with real store files: the native encoder against the codec, runs streamed and written byte for
 * byte in order, all-zero ranges skipped, bad or missing ACKs failing the channel, and hostile
 * frames refused with nothing written.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { loadNative } from '../../src/native';
import { LocalStore } from '../../src/store/local-store';
import { ResyncChannelSender, type ChannelOutcome } from '../../src/peer/resync-channel';
import { socketFd } from '../../src/util/socket-fd';
import { AckStatus, WriteFlag, crc32c, encodeAck, encodeWriteMeta, encodeWriteNotify } from '../../src/wire';

const VOLUME = 8 * 1024 * 1024;
const EPOCH = 3n;
const REGION = 64 * 1024;

/** A connected pair of blocking-capable fds (both Node sockets closed, their duplicates kept). */
async function tcpPair(): Promise<{ a: number; b: number }> {
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.createConnection({ host: '127.0.0.1', port });
  await new Promise<void>((r) => client.once('connect', r));
  const peer = await accepted;
  client.pause();
  const a = loadNative().duplicateFd(socketFd(client));
  const b = loadNative().duplicateFd(socketFd(peer));
  client.destroy();
  peer.destroy();
  server.close();
  return { a, b };
}

interface Receiver {
  ended: Promise<{ reason: string; clean: boolean; failed: number }>;
  counters: Float64Array;
}

function receive(store: LocalStore, fd: number, epoch = EPOCH): Receiver {
  const counters = new Float64Array(2);
  const ended = new Promise<{ reason: string; clean: boolean; failed: number }>((resolve) =>
    store.resyncReceive(fd, Buffer.alloc(4 * 4 * 1024 * 1024), VOLUME, epoch, counters, (reason, clean, failed) => resolve({ reason, clean, failed })),
  );
  return { ended, counters };
}

/** Queue one run as a batch of its own; `done` gets its outcome and problem. */
function sendOne(sender: ResyncChannelSender, run: { offsetBytes: number; lengthBytes: number }, done: (outcome: ChannelOutcome, problem: string | null) => void): void {
  sender.sendBatch(Float64Array.of(run.offsetBytes, run.lengthBytes), 1, (outcomes, problem) => done(outcomes[0]!, problem));
}

/** Queue `runs`, each a batch of its own; resolves with their outcomes, in order, once all have one. */
function send(sender: ResyncChannelSender, runs: { offsetBytes: number; lengthBytes: number }[], problems: (string | null)[] = []): Promise<ChannelOutcome[]> {
  return Promise.all(runs.map((run) => new Promise<ChannelOutcome>((resolve) => sendOne(sender, run, (outcome, problem) => {
    problems.push(problem);
    resolve(outcome);
  }))));
}

/** `bytes` read from the non-blocking fd, waiting for them as they come. */
async function readExactly(fd: number, bytes: number): Promise<Buffer> {
  const out = Buffer.alloc(bytes);
  let got = 0;
  while (got < bytes) {
    try {
      got += fs.readSync(fd, out, got, bytes - got, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  return out;
}

function settled(sender: ResyncChannelSender): Promise<void> {
  return new Promise<void>((r) => sender.whenSettled(r));
}

describe('resync channel: native ends', function () {
  this.timeout(30000);
  let dir: string;
  let source: LocalStore;
  let target: LocalStore;

  beforeEach(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-channel-'));
    source = LocalStore.open({ path: path.join(dir, 'p.img'), sizeBytes: VOLUME, direct: false });
    target = LocalStore.open({ path: path.join(dir, 's.img'), sizeBytes: VOLUME, direct: false });
  });
  afterEach(function () {
    source.close();
    target.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the native encoder of WRITE_NOTIFY + WRITE_META equals the codec, byte for byte', function () {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 1, max: 32 * 1024 * 1024 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (seq, offset, length, crc, epoch) => {
          const tag = seq % 65536;
          const codec = Buffer.concat([encodeWriteNotify(tag, WriteFlag.Resync, seq), encodeWriteMeta(tag, offset, length, crc, epoch)]);
          assert.deepEqual(loadNative().encodeResyncWriteHeads(tag, seq, offset, length, crc, epoch), codec);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('streams runs: data written byte for byte, all-zero runs not sent, outcomes in queue order', async function () {
    const data = Buffer.alloc(VOLUME);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    data.fill(0, 5 * REGION, 6 * REGION); // region 5: zeroes
    assert.equal(source.writeSync(data, 0), 0);
    const { a, b } = await tcpPair();
    const rx = receive(target, b);
    const sender = new ResyncChannelSender(a, source, EPOCH, 5000, 128 * 1024);
    const runs = [0, 2, 5, 7].map((r) => ({ offsetBytes: r * REGION, lengthBytes: REGION }));
    runs.push({ offsetBytes: 9 * REGION, lengthBytes: 2 * REGION }); // a 128 KiB run
    const order: number[] = [];
    const first = Promise.all(runs.map((run, i) => new Promise<ChannelOutcome>((resolve) => sendOne(sender, run, (outcome) => {
      order.push(i);
      resolve(outcome);
    }))));
    assert.equal(sender.bytesInFlight, 6 * REGION);
    assert.deepEqual(await first, ['acked', 'acked', 'zero', 'acked', 'acked']);
    assert.deepEqual(order, [0, 1, 2, 3, 4], 'outcomes arrive in queue order, the zero run too');
    assert.equal(sender.bytesInFlight, 0);
    // A run queued later, on the same stream: its seq follows on (the receiver checks it).
    assert.deepEqual(await send(sender, [{ offsetBytes: 100 * REGION, lengthBytes: REGION }]), ['acked']);
    await settled(sender);
    sender.close();
    const end = await rx.ended;
    assert.equal(end.clean, true, end.reason);
    assert.deepEqual(Array.from(rx.counters), [5, 6 * REGION]);
    assert.equal(sender.failure, null, 'a close after every run settled is no failure');
    const replica = Buffer.alloc(VOLUME);
    target.readSync(replica, 0);
    for (const r of [...runs, { offsetBytes: 100 * REGION, lengthBytes: REGION }]) {
      const expected = r.offsetBytes === 5 * REGION ? Buffer.alloc(REGION) : data.subarray(r.offsetBytes, r.offsetBytes + r.lengthBytes);
      assert.ok(replica.subarray(r.offsetBytes, r.offsetBytes + r.lengthBytes).equals(expected), `range ${r.offsetBytes}`);
    }
    assert.ok(replica.subarray(REGION, 2 * REGION).equals(Buffer.alloc(REGION)), 'nothing written outside the runs');
  });

  it('a thousand runs queued in one turn, in batches, all arrive, in order, each checked by the receiver', async function () {
    const data = Buffer.alloc(VOLUME);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 40503 + 7) >>> 0, i);
    assert.equal(source.writeSync(data, 0), 0);
    const { a, b } = await tcpPair();
    const rx = receive(target, b);
    const sender = new ResyncChannelSender(a, source, EPOCH, 5000, REGION);
    // 1000 writes over the 128 regions (a region's later writes carry the same bytes): one native push, then a long
    // stream whose sequence numbers and tags the receiver checks write by write.
    const runs = Array.from({ length: 1000 }, (_v, i) => ({ offsetBytes: ((i * 37) % 128) * REGION, lengthBytes: REGION }));
    // In batches of 16, as the engine queues them: each batch's outcomes come together, in order.
    const batches: Promise<ChannelOutcome[]>[] = [];
    for (let i = 0; i < runs.length; i += 16) {
      const batch = runs.slice(i, i + 16);
      batches.push(new Promise((resolve) => sender.sendBatch(Float64Array.from(batch.flatMap((r) => [r.offsetBytes, r.lengthBytes])), batch.length, (o) => resolve(o))));
    }
    assert.equal(sender.bytesInFlight, 1000 * REGION);
    const outcomes = (await Promise.all(batches)).flat();
    assert.equal(outcomes.length, 1000);
    assert.ok(outcomes.every((o) => o === 'acked'));
    assert.equal(sender.bytesInFlight, 0);
    sender.close();
    const end = await rx.ended;
    assert.equal(end.clean, true, end.reason);
    assert.equal(rx.counters[0], 1000);
    const replica = Buffer.alloc(VOLUME);
    target.readSync(replica, 0);
    assert.ok(replica.equals(data));
  });

  /** Frames a resync write by hand (the codec), then lets `mutate` spoil it. */
  function frame(seq: number, offset: number, payload: Buffer, mutate: (notify: Buffer, meta: Buffer, payload: Buffer) => void = () => undefined, epoch = EPOCH, flags: number = WriteFlag.Resync): Buffer {
    const tag = seq % 65536;
    const notify = encodeWriteNotify(tag, flags, seq);
    const meta = encodeWriteMeta(tag, offset, payload.length, crc32c(payload), epoch);
    const body = Buffer.from(payload);
    mutate(notify, meta, body);
    return Buffer.concat([notify, meta, body]);
  }

  const hostile: [string, (payload: Buffer) => Buffer, RegExp][] = [
    ['a flipped payload byte', (p) => frame(1, 0, p, (_n, _m, b) => (b[100] = b[100]! ^ 1)), /bad payload CRC32C/],
    ['a flipped WRITE_META byte', (p) => frame(1, 0, p, (_n, m) => (m[20] = m[20]! ^ 1)), /WRITE_META with a bad CRC32C/],
    ['a stale epoch', (p) => frame(1, 0, p, undefined, EPOCH - 1n), /epoch 2, the connection's epoch is 3/],
    ['a write without the RESYNC flag', (p) => frame(1, 0, p, undefined, EPOCH, 0), /without the RESYNC flag/],
    ['a sequence gap', (p) => frame(2, 0, p), /seq 2, expected 1/],
    ['a write beyond the volume', (p) => frame(1, VOLUME - 4096, p), /beyond the volume/],
    ['a PING instead of a write', () => Buffer.from('4b000000000000000000000000000000', 'hex'), /expected WRITE_NOTIFY, got message type 11/],
  ];
  for (const [name, make, reason] of hostile) {
    it(`refuses ${name}: the channel ends with a protocol error and nothing is written`, async function () {
      const { a, b } = await tcpPair();
      const rx = receive(target, b);
      const payload = Buffer.alloc(REGION, 0xab);
      fs.writeSync(a, make(payload));
      const end = await rx.ended;
      loadNative().closeFd(a);
      assert.equal(end.clean, false);
      assert.match(end.reason, /^protocol error: /);
      assert.match(end.reason, reason);
      assert.deepEqual(Array.from(rx.counters), [0, 0]);
      const replica = Buffer.alloc(VOLUME);
      target.readSync(replica, 0);
      assert.ok(replica.equals(Buffer.alloc(VOLUME)), 'the target store is untouched');
    });
  }

  it('a valid write before a hostile one is written and ACKed; the hostile one is not', async function () {
    const { a, b } = await tcpPair();
    const rx = receive(target, b);
    const good = Buffer.alloc(REGION, 0x11);
    const bad = Buffer.alloc(REGION, 0x22);
    fs.writeSync(a, Buffer.concat([frame(1, 0, good), frame(2, REGION, bad, (_n, _m, p) => (p[0] = p[0]! ^ 1))]));
    const end = await rx.ended;
    assert.match(end.reason, /bad payload CRC32C of the resync write at 65536/);
    const ack = Buffer.alloc(16);
    assert.equal(fs.readSync(a, ack, 0, 16, null), 16);
    assert.equal(ack[0]! & 0x3f, 6, 'an ACK');
    assert.equal(ack.readUInt16BE(2), 1);
    assert.equal(ack[4], 0);
    loadNative().closeFd(a);
    const replica = Buffer.alloc(2 * REGION);
    target.readSync(replica, 0);
    assert.ok(replica.subarray(0, REGION).equals(good));
    assert.ok(replica.subarray(REGION).equals(Buffer.alloc(REGION)));
  });

  it('an ACK with an error status fails its run and the channel, with the reason', async function () {
    source.writeSync(Buffer.alloc(3 * REGION, 0x77), 0);
    const { a, b } = await tcpPair();
    const sender = new ResyncChannelSender(a, source, EPOCH, 5000, REGION);
    const problems: (string | null)[] = [];
    const first = send(sender, [{ offsetBytes: 0, lengthBytes: REGION }, { offsetBytes: REGION, lengthBytes: REGION }, { offsetBytes: 2 * REGION, lengthBytes: REGION }], problems);
    // A peer whose disk failed: it reads the writes and answers OK, then IO_ERROR.
    await readExactly(b, 2 * (56 + REGION));
    fs.writeSync(b, Buffer.concat([encodeAck(1, AckStatus.Ok), encodeAck(2, AckStatus.IoError)]));
    assert.deepEqual(await first, ['acked', 'failed', 'failed']);
    assert.equal(problems[0], null);
    assert.match(String(problems[1]), /could not write region data \(ACK status 1: I\/O error\)/);
    assert.match(String(sender.failure), /could not write region data \(ACK status 1\)/);
    assert.equal(sender.isOpen, false);
    loadNative().closeFd(b);
  });

  it('a closed channel ends a blocked send at once, and every unacknowledged run fails', async function () {
    const { a, b } = await tcpPair();
    // Nobody serves b: the sender blocks once the socket buffers are full.
    const sender = new ResyncChannelSender(a, source, EPOCH, 20000, 128 * 1024);
    const runs = Array.from({ length: 200 }, (_v, i) => ({ offsetBytes: (i % 100) * REGION, lengthBytes: REGION }));
    fs.writeFileSync(path.join(dir, 'fill'), '');
    source.writeSync(Buffer.alloc(VOLUME, 0x5a), 0);
    const call = send(sender, runs);
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    sender.close();
    const outcomes = await call;
    assert.ok(Date.now() - started < 5000, 'the shutdown woke the blocked send');
    assert.ok(outcomes.every((o) => o === 'failed'), 'nothing was acknowledged');
    assert.equal(sender.isOpen, false);
    loadNative().closeFd(b);
  });

  it('a secondary that sends no ACK fails the channel after the timeout, with the reason', async function () {
    source.writeSync(Buffer.alloc(REGION, 0x42), 0);
    const { a, b } = await tcpPair();
    const sender = new ResyncChannelSender(a, source, EPOCH, 300, REGION);
    const problems: (string | null)[] = [];
    const outcomes = await send(sender, [{ offsetBytes: 0, lengthBytes: REGION }], problems);
    assert.deepEqual(outcomes, ['failed']);
    assert.match(String(sender.failure), /no ACK from the secondary within 300 ms/);
    assert.equal(problems[0], sender.failure);
    loadNative().closeFd(b);
  });

  it('a secondary that closes the channel fails every run without an outcome, and the reason says so', async function () {
    source.writeSync(Buffer.alloc(4 * REGION, 0x42), 0);
    const { a, b } = await tcpPair();
    const sender = new ResyncChannelSender(a, source, EPOCH, 5000, REGION);
    const problems: (string | null)[] = [];
    const call = send(sender, [0, 1, 2, 3].map((r) => ({ offsetBytes: r * REGION, lengthBytes: REGION })), problems);
    await readExactly(b, 56 + REGION);
    fs.writeSync(b, encodeAck(1, AckStatus.Ok));
    await new Promise((r) => setTimeout(r, 50));
    loadNative().closeFd(b);
    assert.deepEqual(await call, ['acked', 'failed', 'failed', 'failed']);
    assert.match(String(sender.failure), /the secondary closed the channel|receiving ACKs|sending/);
    assert.equal(problems[1], sender.failure);
    // Runs queued after the end fail at once, with the same reason.
    const late = await send(sender, [{ offsetBytes: 0, lengthBytes: REGION }]);
    assert.deepEqual(late, ['failed']);
  });

  it('an ACK out of order is a protocol error that fails the channel', async function () {
    source.writeSync(Buffer.alloc(2 * REGION, 0x42), 0);
    const { a, b } = await tcpPair();
    const sender = new ResyncChannelSender(a, source, EPOCH, 5000, REGION);
    const call = send(sender, [{ offsetBytes: 0, lengthBytes: REGION }, { offsetBytes: REGION, lengthBytes: REGION }]);
    await readExactly(b, 2 * (56 + REGION));
    fs.writeSync(b, encodeAck(2, AckStatus.Ok));
    assert.deepEqual(await call, ['failed', 'failed']);
    assert.match(String(sender.failure), /protocol error: ACK for tag 2, expected 1/);
    loadNative().closeFd(b);
  });
});
