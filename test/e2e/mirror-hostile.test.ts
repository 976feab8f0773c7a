/** Hostile or broken peer frames: the receiver writes nothing from them, logs why, drops the connection; the primary goes degraded without failing client I/O. */
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { NodeProcess, sleep, tempDir } from '../helpers/node-process';
import { waitForPeerState } from '../helpers/pair';
import { connectTransmission } from '../helpers/raw-nbd-client';
import { encodeHello, encodeWriteInline, encodeWriteNotify, encodeWriteMeta, encodeTrim, encodeResyncChannel, encodeReadRequest, encodeReadReply, FrameReader, decodeMessage, MessageType, payloadCrc32c, WriteFlag } from '../../src/wire';
import { helloFields } from '../../src/mirror/hello';

const SIZE = 16 * 1024 * 1024;

function hello(epoch = 5n): Buffer {
  return encodeHello(0, helloFields({ role: 1, volumeSizeBytes: SIZE, blockSizeBytes: 512, nodeId: 77n, generations: { current: 99n, bitmap: 0n, history0: 0n, history1: 0n }, epoch, inlineThresholdBytes: 32768 }));
}

/** Connect to the secondary as a fake primary, complete HELLO, send `frames`, and wait for the close. */
async function asFakePrimary(port: number, frames: Buffer[]): Promise<void> {
  const socket = net.createConnection({ host: '127.0.0.1', port });
  const reader = new FrameReader();
  let helloReplied = false;
  socket.on('data', (d: Buffer) => {
    reader.push(d);
    for (let f = reader.next(); f !== null; f = reader.next()) {
      if (f.kind === 'message' && f.type === MessageType.HelloReply) helloReplied = true;
    }
  });
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(hello());
  while (!helloReplied) await sleep(20);
  for (const f of frames) socket.write(f);
  await new Promise((resolve) => socket.once('close', resolve));
}

describe('mirror: hostile peer frames', function () {
  let dir: string;
  let secondary: NodeProcess;
  let store: string;
  const port = 30000 + Math.floor(Math.random() * 20000);

  before(async function () {
    dir = tempDir('hostile');
    store = path.join(dir, 'secondary.img');
    secondary = new NodeProcess(['secondary', '--store', store, '--size', String(SIZE), '--listen', `127.0.0.1:${port}`, '--control', `${store}.ctl`], `${store}.ctl`);
    await secondary.ready();
  });
  after(async function () {
    assert.equal((await secondary.stop()).code, 0, secondary.stderr);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Nothing was written to the replica. */
  function replicaUntouched(): void {
    const content = fs.readFileSync(store);
    assert.ok(content.equals(Buffer.alloc(SIZE)), 'the replica must hold no byte of a refused message');
  }

  const payload = crypto.randomBytes(4096);
  const cases: [string, () => Buffer[], RegExp][] = [
    ['a bad CRC on an inline write', () => {
      const head = encodeWriteInline(1, 0, 5, 8, payload);
      head[15] = head[15]! ^ 0x01;
      return [head, payload];
    }, /CRC/i],
    ['a payload corrupted in flight', () => {
      const head = encodeWriteInline(1, 0, 5, 8, payload);
      const bad = Buffer.from(payload);
      bad[100] = bad[100]! ^ 0x40;
      return [head, bad];
    }, /CRC/i],
    ['a wrong epoch', () => [encodeWriteInline(1, 0, 4, 8, payload), payload], /epoch/i],
    ['an unknown version', () => {
      const head = encodeWriteInline(1, 0, 5, 8, payload);
      head[0] = (2 << 6) | (head[0]! & 0x3f);
      return [head, payload];
    }, /version/i],
    ['an unknown type', () => {
      const head = Buffer.alloc(16);
      head[0] = (1 << 6) | 50;
      return [head];
    }, /type/i],
    ['a write beyond the volume', () => {
      const meta = encodeWriteMeta(1, SIZE - 512, 4096, payloadCrc32c(payload), 5n);
      return [encodeWriteNotify(1, 0, 1), meta, payload];
    }, /beyond the volume/i],
    ['a trim beyond the volume', () => [encodeTrim(1, 0, SIZE, 4096, 5n)], /beyond the volume/i],
    ['a read request beyond the volume', () => [encodeReadRequest(1, SIZE - 10, 4096, 5n)], /beyond the volume/i],
    ['a read request with a wrong epoch', () => [encodeReadRequest(1, 0, 4096, 4n)], /READ_REQUEST carries epoch 4/],
    ['a read reply sent to the secondary', () => [encodeReadReply(1, 0, payload), payload], /unexpected message type 19/],
    ['a large write whose meta CRC does not match', () => {
      const meta = encodeWriteMeta(1, 0, 4096, payloadCrc32c(payload) ^ 1, 5n);
      return [encodeWriteNotify(1, 0, 1), meta, payload];
    }, /CRC/i],
    ['a truncated message followed by a hang-up', () => [encodeWriteInline(1, 0, 5, 8, payload), payload.subarray(0, 1000)], /./],
  ];

  for (const [name, frames, reason] of cases) {
    it(`${name}: nothing written, reason logged, connection dropped`, async function () {
      const before = secondary.stderr.length;
      const list = frames();
      if (name.startsWith('a truncated')) {
        const socket = net.createConnection({ host: '127.0.0.1', port });
        socket.on('error', () => undefined);
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write(hello());
        await sleep(200);
        for (const f of list) socket.write(f);
        await sleep(200);
        socket.destroy();
        await sleep(300);
      } else {
        await asFakePrimary(port, list);
      }
      await sleep(100);
      replicaUntouched();
      assert.match(secondary.stderr.slice(before), reason);
      const s = (await secondary.status()) as Record<string, any>;
      assert.equal(s.mirror.writesApplied, 0);
    });
  }

  /** Messages a raw socket receives, decoded, as they arrive; `closed` once the peer closed it. */
  function watch(socket: net.Socket): { messages: ReturnType<typeof decodeMessage>[]; closed: Promise<void> } {
    const reader = new FrameReader();
    const messages: ReturnType<typeof decodeMessage>[] = [];
    socket.on('data', (d: Buffer) => {
      reader.push(d);
      for (let f = reader.next(); f !== null; f = reader.next()) if (f.kind === 'message') messages.push(decodeMessage(f.head, f.body));
    });
    socket.on('error', () => undefined);
    return { messages, closed: new Promise((resolve) => socket.once('close', () => resolve())) };
  }

  it('a resync channel claim with a token nobody announced is refused: connection closed, no ACK, nothing written', async function () {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    const seen = watch(socket);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(encodeResyncChannel(0, 0x1234567890abcdefn));
    await seen.closed;
    assert.equal(seen.messages.length, 0, 'no answer to a foreign claim');
    replicaUntouched();
  });

  it('a resync channel claim with the right token from another address is refused; the mirror connection stays', async function () {
    const main = net.createConnection({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
    const mainSeen = watch(main);
    await new Promise((resolve) => main.once('connect', resolve));
    main.write(hello());
    const until = async (pred: () => boolean): Promise<void> => {
      for (let i = 0; i < 200 && !pred(); i++) await sleep(20);
      assert.ok(pred(), 'timed out');
    };
    await until(() => mainSeen.messages.some((m) => m.ok && m.value.type === MessageType.HelloReply));
    const token = 0x1111222233334444n;
    main.write(encodeResyncChannel(9, token));
    await until(() => mainSeen.messages.some((m) => m.ok && m.value.type === MessageType.Ack && m.value.tag === 9));
    const intruder = net.createConnection({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
    const intruderSeen = watch(intruder);
    await new Promise((resolve) => intruder.once('connect', resolve));
    intruder.write(encodeResyncChannel(0, token));
    await intruderSeen.closed;
    assert.equal(intruderSeen.messages.length, 0, 'no answer to a claim from another address');
    assert.equal(main.destroyed, false, 'the mirror connection is untouched');
    main.destroy();
    await mainSeen.closed;
    replicaUntouched();
  });

  it('a hostile write on an accepted resync channel: nothing written, the channel and the mirror connection are dropped', async function () {
    const main = net.createConnection({ host: '127.0.0.1', port });
    const mainSeen = watch(main);
    await new Promise((resolve) => main.once('connect', resolve));
    main.write(hello());
    const token = 0x0badc0ffee123457n;
    const until = async (pred: () => boolean): Promise<void> => {
      for (let i = 0; i < 200 && !pred(); i++) await sleep(20);
      assert.ok(pred(), 'timed out');
    };
    await until(() => mainSeen.messages.some((m) => m.ok && m.value.type === MessageType.HelloReply));
    main.write(encodeResyncChannel(7, token));
    await until(() => mainSeen.messages.some((m) => m.ok && m.value.type === MessageType.Ack && m.value.tag === 7));
    const channel = net.createConnection({ host: '127.0.0.1', port });
    const channelSeen = watch(channel);
    await new Promise((resolve) => channel.once('connect', resolve));
    channel.write(encodeResyncChannel(0, token));
    await until(() => channelSeen.messages.some((m) => m.ok && m.value.type === MessageType.Ack && m.value.tag === 0 && m.value.status === 0));
    const data = Buffer.alloc(65536, 0x5c);
    const meta = encodeWriteMeta(1, 0, data.length, payloadCrc32c(data) ^ 1, 5n);
    channel.write(Buffer.concat([encodeWriteNotify(1, WriteFlag.Resync, 1), meta, data]));
    await Promise.all([channelSeen.closed, mainSeen.closed]);
    replicaUntouched();
    await until(() => /resync channel ended: protocol error: bad payload CRC32C/.test(secondary.stderr));
  });

  it('a peer that answers the primary with garbage: the primary logs it, stays degraded, and client I/O is unaffected', async function () {
    const fakePort = 30000 + Math.floor(Math.random() * 20000);
    const garbage = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.write(crypto.randomBytes(64)));
    });
    await new Promise<void>((resolve) => garbage.listen(fakePort, '127.0.0.1', () => resolve()));
    const pstore = path.join(dir, 'primary.img');
    const primary = new NodeProcess(['primary', '--store', pstore, '--size', String(SIZE), '--peer', `127.0.0.1:${fakePort}`, '--nbd-socket', path.join(dir, 'p.sock'), '--control', `${pstore}.ctl`], `${pstore}.ctl`);
    await primary.ready();
    await sleep(1500);
    const status = await waitForPeerState(primary, 'connecting');
    assert.match(String(status.peer.reason), /protocol error|version|type|HELLO/i);
    const { client } = await connectTransmission(path.join(dir, 'p.sock'));
    client.sendRequest(1, 1n, 0n, 4096, payload);
    assert.equal((await client.readSimpleReply()).error, 0);
    client.destroy();
    assert.equal((await primary.stop()).code, 0);
    garbage.close();
    assert.match(primary.stderr, /not taken into service|protocol error/);
  });

  it('decodeMessage refuses a HELLO for another volume size: the secondary refuses the connection', async function () {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    const reader = new FrameReader();
    let reason = -1;
    socket.on('data', (d: Buffer) => {
      reader.push(d);
      for (let f = reader.next(); f !== null; f = reader.next()) {
        if (f.kind === 'message') {
          const m = decodeMessage(f.head, f.body);
          if (m.ok && m.value.type === MessageType.HelloReply) reason = m.value.reason;
        }
      }
    });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(encodeHello(0, helloFields({ role: 1, volumeSizeBytes: SIZE * 2, blockSizeBytes: 512, nodeId: 1n, generations: { current: 2n, bitmap: 0n, history0: 0n, history1: 0n }, epoch: 5n, inlineThresholdBytes: 32768 })));
    await new Promise((resolve) => socket.once('close', resolve));
    assert.equal(reason, 2, 'VolumeSizeMismatch');
    replicaUntouched();
  });
});
