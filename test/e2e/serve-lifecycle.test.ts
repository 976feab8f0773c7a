/** Node lifecycle: configuration errors, size rules, clean SIGTERM shutdown. */
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI, NodeProcess, startServe, tempDir } from '../helpers/node-process';
import { connectTransmission } from '../helpers/raw-nbd-client';
import { run } from '../helpers/run';

describe('serve: lifecycle and configuration', function () {
  let dir: string;
  beforeEach(() => (dir = tempDir('life')));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('creates a sparse store of the given size', async function () {
    const { node, store } = await startServe(dir, '256M');
    const st = fs.statSync(store);
    assert.equal(st.size, 256 * 1024 * 1024);
    assert.ok(st.blocks * 512 < 1024 * 1024, 'store is sparse');
    await node.stop();
  });

  it('an existing store keeps its size; a conflicting --size is an error', async function () {
    const { node, store } = await startServe(dir, '32M');
    await node.stop();
    const control = path.join(dir, 'again.ctl');
    const again = new NodeProcess(['serve', '--store', store, '--nbd-socket', path.join(dir, 's2'), '--control', control], control);
    const status = (await again.ready()) as { store: { size: number } };
    assert.equal(status.store.size, 32 * 1024 * 1024, 'no --size: the existing size is kept');
    assert.equal((await again.stop()).code, 0);
    const conflict = await run(process.execPath, [CLI, 'serve', '--store', store, '--size', '64M', '--nbd-socket', path.join(dir, 's3')], { timeoutMs: 20_000 });
    assert.equal(conflict.code, 1);
    assert.match(conflict.stderr, /already has size 33554432 bytes/);
    assert.equal(fs.statSync(store).size, 32 * 1024 * 1024);
  });

  it('bad configuration gets a clear usage error (exit 2)', async function () {
    const cases: [string[], RegExp][] = [
      [['serve', '--store', path.join(dir, 'x'), '--size', '12Q', '--nbd-socket', path.join(dir, 's')], /invalid size/],
      [['serve', '--size', '1M', '--nbd-socket', path.join(dir, 's')], /--store is required/],
      [['serve', '--store', path.join(dir, 'x'), '--size', '1M'], /needs --nbd-socket/],
      [['serve', '--store', path.join(dir, 'x'), '--bogus', '1'], /unknown option --bogus/],
      [['attach', '--store', path.join(dir, 'x'), '--size', '1M', '--device', '/dev/sda'], /must be \/dev\/nbdN/],
      [['frobnicate'], /unknown command/],
    ];
    for (const [args, pattern] of cases) {
      const r = await run(process.execPath, [CLI, ...args], { timeoutMs: 20_000 });
      assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
    }
    const missing = await run(process.execPath, [CLI, 'serve', '--store', path.join(dir, 'absent'), '--nbd-socket', path.join(dir, 's')], { timeoutMs: 20_000 });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist and no --size/);
  });

  it('SIGTERM lets in-flight requests finish, flushes, removes sockets and exits 0', async function () {
    const { node, socket, store } = await startServe(dir, '64M');
    const { client } = await connectTransmission(socket);
    const data = crypto.randomBytes(1024 * 1024);
    for (let i = 0; i < 8; i++) client.sendRequest(1, BigInt(i), BigInt(i * data.length), data.length, data);
    for (let i = 0; i < 8; i++) assert.equal((await client.readSimpleReply()).error, 0);
    const exit = await node.stop();
    assert.equal(exit.code, 0, node.stderr);
    assert.ok(!fs.existsSync(socket), 'NBD socket removed');
    assert.ok(!fs.existsSync(node.controlPath), 'control socket removed');
    const content = fs.readFileSync(store);
    for (let i = 0; i < 8; i++) assert.ok(content.subarray(i * data.length, (i + 1) * data.length).equals(data));
    client.destroy();
  });

  it('refuses a store path that is a directory', async function () {
    const r = await run(process.execPath, [CLI, 'serve', '--store', dir, '--nbd-socket', path.join(dir, 's')], { timeoutMs: 20_000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /neither a regular file nor a block device/);
  });

  it('two nodes never share a control socket path silently', async function () {
    const { node } = await startServe(dir, '16M');
    const other = new NodeProcess(['serve', '--store', path.join(dir, 'b.img'), '--size', '16M', '--nbd-socket', path.join(dir, 'b.sock'), '--control', node.controlPath], node.controlPath);
    const exit = await other.exited;
    assert.notEqual(exit.code, 0);
    assert.match(other.stderr, /control socket .* in use/);
    assert.equal((await node.status())['role'], 'standalone', 'first node still answers');
    await node.stop();
  });

  it('two nodes never open one store: the second is refused before it touches the store or its metadata', async function () {
    const store = path.join(dir, 'shared.img');
    const firstControl = path.join(dir, 'first.ctl');
    const first = new NodeProcess(['secondary', '--store', store, '--size', '16M', '--listen', '127.0.0.1:0', '--control', firstControl], firstControl);
    try {
      await first.ready();
      await refusedWhileRunning(first, store, firstControl);
      assert.equal((await first.stop()).code, 0);
    } finally {
      await first.stop();
    }
    // Its lock goes with it: the store opens again.
    const nextControl = path.join(dir, 'next.ctl');
    const next = new NodeProcess(['serve', '--store', store, '--nbd-socket', path.join(dir, 'next.sock'), '--control', nextControl], nextControl);
    await next.ready();
    assert.equal((await next.stop()).code, 0);
  });

  /** Serve, secondary and primary on the store `first` holds are refused, leaving it and its metadata as they were. */
  async function refusedWhileRunning(first: NodeProcess, store: string, firstControl: string): Promise<void> {
    const metaBefore = fs.readFileSync(`${store}.meta`);
    for (const args of [
      ['serve', '--store', store, '--nbd-socket', path.join(dir, 'second.sock')],
      ['secondary', '--store', store, '--listen', '127.0.0.1:0'],
      ['primary', '--store', store, '--peer', '127.0.0.1:9', '--nbd-socket', path.join(dir, 'third.sock')],
    ]) {
      const secondControl = path.join(dir, `${args[0]}.ctl`);
      const second = await run(process.execPath, [CLI, ...args, '--control', secondControl], { timeoutMs: 20_000 });
      assert.equal(second.code, 1, `${args[0]}: ${second.stderr}`);
      assert.match(second.stderr, /shared\.img \(the store is in use by another blockmirror process\)/);
      assert.equal(fs.existsSync(secondControl), false, 'the refused node left no control socket');
    }
    assert.deepEqual(fs.readFileSync(`${store}.meta`), metaBefore, 'the running node\'s metadata is untouched');
    assert.equal((await first.status())['role'], 'secondary', `the first node (${firstControl}) still answers`);
  }
});
