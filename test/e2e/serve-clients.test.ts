/** One node served over NBD, driven by real clients: nbdinfo, nbdcopy, qemu-img, fio. */
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startServe, tempDir, type NodeProcess } from '../helpers/node-process';
import { requireCommands } from '../helpers/requires';
import { runOk } from '../helpers/run';

describe('serve: real NBD clients', function () {
  let dir: string;
  let node: NodeProcess;
  let store: string;
  let uri: string;

  before(async function () {
    requireCommands(this, 'nbdinfo', 'nbdcopy', 'qemu-img', 'fio');
    dir = tempDir('clients');
    ({ node, store, uri } = await startServe(dir, '64M'));
  });

  after(async function () {
    if (node !== undefined) {
      const exit = await node.stop();
      assert.equal(exit.code, 0, `node exit ${JSON.stringify(exit)}\n${node.stderr}`);
    }
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('nbdinfo shows the size and the flags we advertise', async function () {
    const { stdout } = await runOk('nbdinfo', ['--json', uri]);
    const info = JSON.parse(stdout) as { exports: Record<string, unknown>[] };
    const e = info.exports[0]!;
    assert.equal(e['export-size'], 64 * 1024 * 1024);
    assert.equal(e['can_flush'], true);
    assert.equal(e['can_fua'], true);
    assert.equal(e['can_trim'], true);
    assert.equal(e['can_zero'], true);
    assert.equal(e['can_multi_conn'], true);
    assert.equal(e['is_read_only'], false);
    assert.equal(e['block_size_preferred'], 4096);
  });

  it('a store on O_DIRECT (--direct) advertises a 4096-byte minimum block, and aligned clients work through it', async function () {
    const directDir = tempDir('clients-direct');
    const direct = await startServe(directDir, '16M', ['--direct']);
    try {
      const info = JSON.parse((await runOk('nbdinfo', ['--json', direct.uri])).stdout) as { exports: Record<string, unknown>[] };
      assert.equal(info.exports[0]!['block_size_minimum'], 4096);
      const { stdout: plain } = await runOk('nbdinfo', ['--json', uri]);
      assert.equal((JSON.parse(plain) as { exports: Record<string, unknown>[] }).exports[0]!['block_size_minimum'], 1, 'a page-cache store takes any alignment');
      const input = path.join(directDir, 'random.bin');
      fs.writeFileSync(input, crypto.randomBytes(16 * 1024 * 1024));
      await runOk('nbdcopy', [input, direct.uri]);
      await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', input, direct.uri]);
    } finally {
      assert.equal((await direct.node.stop()).code, 0);
      fs.rmSync(directDir, { recursive: true, force: true });
    }
  });

  it('nbdcopy round-trips random data byte for byte', async function () {
    const input = path.join(dir, 'random.bin');
    const output = path.join(dir, 'back.bin');
    fs.writeFileSync(input, crypto.randomBytes(64 * 1024 * 1024));
    await runOk('nbdcopy', [input, uri]);
    await runOk('nbdcopy', [uri, output]);
    assert.ok(fs.readFileSync(input).equals(fs.readFileSync(output)), 'read-back differs from what was written');
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', input, store]);
  });

  it('qemu-img compare finds the export identical to its backing file', async function () {
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri, store]);
  });

  it('fio random writes of mixed sizes verify with crc32c, and no payload byte is copied', async function () {
    const { stdout } = await runOk('fio', [
      '--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bsrange=512-256k', '--bs_unaligned=0',
      '--iodepth=16', '--size=32M', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1', '--output-format=json',
    ], { timeoutMs: 180_000 });
    const result = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] };
    const job = result.jobs[0]!;
    assert.equal(job.error, 0);
    assert.ok(job.write.io_bytes >= 32 * 1024 * 1024, 'fio wrote the whole range');
    assert.ok(job.read.io_bytes >= 32 * 1024 * 1024, 'fio read the whole range back to verify');
    const status = await node.status();
    assert.equal(status['copiedPayloadBytes'], 0, 'writes up to the slot size are never copied');
    const io = status['io'] as Record<string, number>;
    assert.ok(io['writes']! > 0 && io['reads']! > 0);
    assert.equal(io['errors'], 0);
  });

  it('status --json reports role, store, io counters and batching', async function () {
    const { stdout } = await runOk(process.execPath, [path.join(__dirname, '../../../bin/blockmirror'), 'status', '--control', node.controlPath, '--json']);
    const status = JSON.parse(stdout) as Record<string, any>;
    assert.equal(status.role, 'standalone');
    assert.equal(status.store.path, store);
    assert.equal(status.store.size, 64 * 1024 * 1024);
    for (const key of ['reads', 'writes', 'flushes', 'trims', 'zeroes', 'errors']) assert.equal(typeof status.io[key], 'number', key);
    assert.equal(typeof status.copiedPayloadBytes, 'number');
    assert.ok(status.nbd.requests >= status.nbd.batches, 'at least one request per wake-up');
  });
});
