// stream-floor, the bench's bare resync stream (tools/bench/stream-floor.cc), built and run for real on loopback:
// what it writes is what it read, its figures parse, and it checks what it receives.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative } from '../../../src/native';
import { runCommand } from '../run-command';
import { buildStreamFloor, parseStreamFloorOutput, runStreamFloor, StreamEnds } from '../stream-floor';

const VOLUME_BYTES = 32 * 1024 * 1024;
const REGION_BYTES = 64 * 1024;

describe('bench: stream-floor', function () {
  this.timeout(120_000);
  let dir: string;
  let binary: string;
  let port = 0;
  const loopback = (): StreamEnds => ({ senderPrefix: [], receiverPrefix: [], address: '127.0.0.1', port });

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-stream-floor-'));
    binary = await buildStreamFloor(dir);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    port = await freePort();
  });

  it('writes every region it sends, byte for byte, into the target', async () => {
    const source = path.join(dir, 'source.img');
    const target = path.join(dir, 'target.img');
    const receiver = runCommand(binary, ['receive', '127.0.0.1', String(port), target, String(VOLUME_BYTES)]);
    const sender = await runCommand(binary, ['send', '127.0.0.1', String(port), source, String(VOLUME_BYTES), String(REGION_BYTES), '40', '3']);
    const received = await receiver;
    assert.equal(sender.exitCode, 0, sender.stderr);
    assert.equal(received.exitCode, 0, received.stderr);
    const figures = parseStreamFloorOutput(sender.stdout);
    assert.equal(figures.writes, 40);
    assert.equal(figures.bytes, 40 * REGION_BYTES);
    const written = fs.readFileSync(source);
    assert.equal(written.length, VOLUME_BYTES);
    assert.deepEqual(fs.readFileSync(target), written);
    // 40 regions of data in a volume of holes: the stream did not just copy zeroes.
    let dataBlocks = 0;
    for (let at = 0; at < VOLUME_BYTES; at += REGION_BYTES) if (written.subarray(at, at + REGION_BYTES).some((b) => b !== 0)) dataBlocks++;
    assert.equal(dataBlocks, 40);
  });

  it('reports its figures through runStreamFloor and leaves no files behind', async () => {
    const result = await runStreamFloor(binary, loopback(), dir, { volumeBytes: VOLUME_BYTES, regionBytes: REGION_BYTES, regions: 25, seed: 9 });
    assert.equal(result.writes, 25);
    assert.ok(result.seconds > 0);
    assert.deepEqual(fs.readdirSync(dir).filter((name) => name.startsWith('stream-floor-')), []);
  });

  it('refuses a write whose payload does not match its CRC32C, and writes nothing of it', async () => {
    const target = path.join(dir, 'bad-target.img');
    const receiver = runCommand(binary, ['receive', '127.0.0.1', String(port), target, String(VOLUME_BYTES)]);
    const payload = Buffer.alloc(4096, 0x5a);
    const heads = loadNative().encodeResyncWriteHeads(1, 1, 8192, payload.length, (loadNative().crc32c(payload) ^ 1) >>> 0, 1n);
    await sendWhenListening(port, Buffer.concat([heads, payload]));
    const received = await receiver;
    assert.equal(received.exitCode, 1);
    assert.match(received.stderr, /bad payload CRC32C/);
    assert.equal(fs.readFileSync(target).subarray(8192, 8192 + 4096).every((b) => b === 0), true);
  });

  it('rejects output without figures, and bad arguments', async () => {
    assert.throws(() => parseStreamFloorOutput('hello'), /printed no JSON/);
    assert.throws(() => parseStreamFloorOutput('{"bytes": 0, "seconds": 1, "writes": 0}'), /unexpected figures/);
    const usage = await runCommand(binary, ['send', '127.0.0.1']);
    assert.equal(usage.exitCode, 2);
    assert.match(usage.stderr, /usage: stream-floor/);
  });
});

// A port nothing listens on right now.
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

// Connects (retrying while the receiver starts), writes `bytes`, and waits for the receiver to close.
async function sendWhenListening(port: number, bytes: Buffer): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        const socket = net.createConnection({ host: '127.0.0.1', port }, () => socket.end(bytes));
        socket.once('error', reject);
        socket.on('data', () => undefined);
        socket.once('close', () => resolve());
      });
      return;
    } catch (error) {
      if (attempt >= 100) throw error;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
