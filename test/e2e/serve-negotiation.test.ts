/** NBD fixed-newstyle negotiation: every option we implement, and unknown ones. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { startServe, tempDir, type NodeProcess } from '../helpers/node-process';
import { RawNbdClient } from '../helpers/raw-nbd-client';

const REP_ACK = 1;
const REP_SERVER = 2;
const REP_INFO = 3;
const REP_ERR_UNSUP = 2 ** 31 + 1;
const REP_ERR_INVALID = 2 ** 31 + 3;
const REP_ERR_UNKNOWN = 2 ** 31 + 6;

function infoRequest(name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + infos.length * 2);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((t, i) => b.writeUInt16BE(t, 4 + n.length + 2 + i * 2));
  return b;
}

describe('serve: NBD negotiation', function () {
  let dir: string;
  let node: NodeProcess;
  let socket: string;

  before(async function () {
    dir = tempDir('nego');
    ({ node, socket } = await startServe(dir, '16M', ['--export-name', 'disk0']));
  });
  after(async function () {
    await node?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('greets with fixed newstyle and no-zeroes', async function () {
    const c = await RawNbdClient.connect(socket);
    const { handshakeFlags } = await c.greet();
    assert.equal(handshakeFlags, 3);
    c.destroy();
  });

  it('LIST names the export, then ACK; LIST with data is ERR_INVALID', async function () {
    const c = await RawNbdClient.connect(socket);
    await c.greet();
    c.sendOption(3);
    const server = await c.readOptionReply();
    assert.equal(server.type, REP_SERVER);
    assert.equal(server.data.toString('utf8', 4, 4 + server.data.readUInt32BE(0)), 'disk0');
    assert.equal((await c.readOptionReply()).type, REP_ACK);
    c.sendOption(3, Buffer.from('x'));
    assert.equal((await c.readOptionReply()).type, REP_ERR_INVALID);
    c.destroy();
  });

  it('INFO describes the export and leaves negotiation open; then GO enters transmission', async function () {
    const c = await RawNbdClient.connect(socket);
    await c.greet();
    c.sendOption(6, infoRequest('disk0', [1, 2, 3]));
    const seen = new Set<number>();
    for (;;) {
      const r = await c.readOptionReply();
      if (r.type === REP_ACK) break;
      assert.equal(r.type, REP_INFO);
      seen.add(r.data.readUInt16BE(0));
      if (r.data.readUInt16BE(0) === 0) assert.equal(Number(r.data.readBigUInt64BE(2)), 16 * 1024 * 1024);
    }
    assert.deepEqual([...seen].sort(), [0, 1, 2, 3]);
    const { sizeBytes } = await c.go('disk0');
    assert.equal(sizeBytes, 16 * 1024 * 1024);
    c.sendRequest(3, 7n, 0n, 0); // FLUSH
    const reply = await c.readSimpleReply();
    assert.deepEqual(reply, { error: 0, cookie: 7n });
    c.destroy();
  });

  it('unknown export names get ERR_UNKNOWN, malformed GO gets ERR_INVALID', async function () {
    const c = await RawNbdClient.connect(socket);
    await c.greet();
    c.sendOption(7, infoRequest('nope'));
    assert.equal((await c.readOptionReply()).type, REP_ERR_UNKNOWN);
    c.sendOption(7, Buffer.from([0, 0, 0, 9, 1]));
    assert.equal((await c.readOptionReply()).type, REP_ERR_INVALID);
    c.destroy();
  });

  it('unknown and unsupported options are answered with ERR_UNSUP and negotiation continues', async function () {
    const c = await RawNbdClient.connect(socket);
    await c.greet();
    for (const option of [99, 8, 5, 9, 11]) {
      c.sendOption(option, Buffer.from('junk'));
      const r = await c.readOptionReply();
      assert.equal(r.option, option);
      assert.equal(r.type, REP_ERR_UNSUP);
    }
    await c.go();
    c.destroy();
  });

  it('EXPORT_NAME enters transmission with size and flags; ABORT is acknowledged and closes', async function () {
    const c = await RawNbdClient.connect(socket);
    await c.greet();
    c.sendOption(1, Buffer.from('disk0'));
    const reply = await c.read(10); // no-zeroes negotiated
    assert.equal(Number(reply.readBigUInt64BE(0)), 16 * 1024 * 1024);
    assert.ok((reply.readUInt16BE(8) & 1) === 1);
    c.sendRequest(3, 1n, 0n, 0);
    assert.equal((await c.readSimpleReply()).error, 0);
    c.destroy();

    const d = await RawNbdClient.connect(socket);
    await d.greet();
    d.sendOption(2);
    assert.equal((await d.readOptionReply()).type, REP_ACK);
    await d.waitClosed();
  });

  it('a bad option magic or unknown client flags close the connection cleanly', async function () {
    const c = await RawNbdClient.connect(socket);
    await c.greet();
    c.write(Buffer.alloc(16, 0x41));
    await c.waitClosed();
    const d = await RawNbdClient.connect(socket);
    await d.greet(0x80);
    await d.waitClosed();
    assert.equal(node.child.exitCode, null, 'server still running');
  });
});
