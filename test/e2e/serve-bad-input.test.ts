/** Malformed transmission-phase input: each gets the NBD-prescribed error or a clean disconnect, a log line, and other clients carry on. */
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { sleep, startServe, tempDir, type NodeProcess } from '../helpers/node-process';
import { connectTransmission, RawNbdClient } from '../helpers/raw-nbd-client';

const NBD_EINVAL = 22;
const NBD_ENOSPC = 28;
const SIZE = 16 * 1024 * 1024;

describe('serve: bad input from NBD clients', function () {
  let dir: string;
  let node: NodeProcess;
  let socket: string;
  /** A well-behaved client that stays connected through every test and must keep working. */
  let bystander: RawNbdClient;
  let bystanderCookie = 1000n;

  /** The bystander writes and reads back a block: proves the server and other clients are unaffected. */
  async function bystanderStillWorks(): Promise<void> {
    const data = crypto.randomBytes(4096);
    const cookie = bystanderCookie++;
    bystander.sendRequest(1, cookie, 8192n, 4096, data);
    assert.deepEqual(await bystander.readSimpleReply(), { error: 0, cookie });
    const readCookie = bystanderCookie++;
    bystander.sendRequest(0, readCookie, 8192n, 4096);
    assert.deepEqual(await bystander.readSimpleReply(), { error: 0, cookie: readCookie });
    assert.ok((await bystander.read(4096)).equals(data));
    assert.equal(node.child.exitCode, null);
  }

  before(async function () {
    dir = tempDir('bad');
    ({ node, socket } = await startServe(dir, '16M'));
    bystander = (await connectTransmission(socket)).client;
  });
  after(async function () {
    bystander?.destroy();
    const exit = await node?.stop();
    assert.equal(exit?.code, 0, node?.stderr);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('bad request magic: disconnect and a log line', async function () {
    const { client } = await connectTransmission(socket);
    client.sendRequest(0, 1n, 0n, 512, undefined, { magic: 0xdeadbeef });
    await client.waitClosed();
    await sleep(100);
    assert.match(node.stderr, /magic/i);
    await bystanderStillWorks();
  });

  it('reads, writes, trims and zeroes past the end get EINVAL / ENOSPC and the connection stays usable', async function () {
    const { client } = await connectTransmission(socket);
    client.sendRequest(0, 1n, BigInt(SIZE - 512), 1024);
    assert.deepEqual(await client.readSimpleReply(), { error: NBD_EINVAL, cookie: 1n });
    client.sendRequest(1, 2n, BigInt(SIZE), 512, Buffer.alloc(512, 7));
    assert.deepEqual(await client.readSimpleReply(), { error: NBD_ENOSPC, cookie: 2n });
    client.sendRequest(4, 3n, BigInt(SIZE), 4096);
    assert.deepEqual(await client.readSimpleReply(), { error: NBD_EINVAL, cookie: 3n });
    client.sendRequest(6, 4n, BigInt(SIZE - 4096), 8192);
    assert.deepEqual(await client.readSimpleReply(), { error: NBD_ENOSPC, cookie: 4n });
    client.sendRequest(0, 5n, 2n ** 63n, 512);
    assert.deepEqual(await client.readSimpleReply(), { error: NBD_EINVAL, cookie: 5n });
    client.sendRequest(0, 6n, 0n, 512);
    assert.deepEqual(await client.readSimpleReply(), { error: 0, cookie: 6n });
    await client.read(512);
    client.destroy();
    await bystanderStillWorks();
  });

  it('unknown commands get EINVAL and the stream stays in sync', async function () {
    const { client } = await connectTransmission(socket);
    client.sendRequest(42, 9n, 0n, 0);
    assert.deepEqual(await client.readSimpleReply(), { error: NBD_EINVAL, cookie: 9n });
    client.sendRequest(5, 10n, 0n, 4096); // CACHE: not advertised
    assert.deepEqual(await client.readSimpleReply(), { error: NBD_EINVAL, cookie: 10n });
    client.sendRequest(3, 11n, 0n, 0);
    assert.deepEqual(await client.readSimpleReply(), { error: 0, cookie: 11n });
    client.destroy();
    await bystanderStillWorks();
  });

  it('an oversized write (above the 32 MiB payload cap) is refused by disconnecting', async function () {
    const { client } = await connectTransmission(socket);
    client.sendRequest(1, 1n, 0n, 64 * 1024 * 1024);
    await client.waitClosed();
    await bystanderStillWorks();
  });

  it('a client vanishing mid-payload writes nothing', async function () {
    const marker = Buffer.alloc(4096, 0x5a);
    const { client } = await connectTransmission(socket);
    client.sendRequest(1, 1n, 1024n * 1024n, 65536, marker); // only 4 KiB of 64 KiB sent
    await sleep(200);
    client.destroy();
    await sleep(300);
    const reader = (await connectTransmission(socket)).client;
    reader.sendRequest(0, 2n, 1024n * 1024n, 4096);
    assert.equal((await reader.readSimpleReply()).error, 0);
    assert.ok((await reader.read(4096)).equals(Buffer.alloc(4096)), 'partial write must not reach the store');
    reader.destroy();
    await bystanderStillWorks();
  });

  it('a client vanishing mid-header or right after sending requests does not disturb the server', async function () {
    const a = await connectTransmission(socket);
    a.client.write(Buffer.from([0x25, 0x60, 0x95]));
    a.client.destroy();
    const b = await connectTransmission(socket);
    for (let i = 0; i < 64; i++) b.client.sendRequest(0, BigInt(i), BigInt(i * 4096), 4096);
    b.client.destroy();
    await sleep(300);
    await bystanderStillWorks();
  });

  it('garbage instead of a handshake closes only that connection', async function () {
    const c = await RawNbdClient.connect(socket);
    c.write(crypto.randomBytes(4096));
    await c.waitClosed();
    await bystanderStillWorks();
  });
});
