/** A mirrored pair on loopback: fio through the primary, replicas byte-identical, message counts as the spec says. */
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NodeProcess, tempDir } from '../helpers/node-process';
import { startPair, type PairProcesses } from '../helpers/pair';
import { requireCommands } from '../helpers/requires';
import { runOk } from '../helpers/run';
import { connectTransmission } from '../helpers/raw-nbd-client';

async function stopPair(pair: PairProcesses): Promise<void> {
  const p = await pair.primary.stop();
  const s = await pair.secondary.stop();
  assert.equal(p.code, 0, pair.primary.stderr);
  assert.equal(s.code, 0, pair.secondary.stderr);
}

function assertIdentical(a: string, b: string): void {
  const x = fs.readFileSync(a);
  const y = fs.readFileSync(b);
  assert.equal(x.length, y.length);
  if (!x.equals(y)) {
    for (let i = 0; i < x.length; i += 4096) {
      if (!x.subarray(i, i + 4096).equals(y.subarray(i, i + 4096))) assert.fail(`replicas differ first at block offset ${i}`);
    }
  }
}

describe('mirror: pair on loopback', function () {
  let dir: string;
  beforeEach(() => (dir = tempDir('mirror')));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('fio with verify through the primary, then a flush: both backing files are byte-identical', async function () {
    requireCommands(this, 'fio');
    const pair = await startPair(dir, { size: '64M' });
    await runOk('fio', [
      '--name=mirror', '--ioengine=nbd', `--uri=${pair.uri}`, '--rw=randwrite', '--bsrange=512-256k', '--iodepth=16',
      '--size=48M', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1', '--end_fsync=1',
    ], { timeoutMs: 240_000 });
    await runOk('fio', ['--name=trim', '--ioengine=nbd', `--uri=${pair.uri}`, '--rw=randtrim', '--bs=64k', '--size=16M', '--iodepth=8']);
    const primary = (await pair.primary.status()) as Record<string, any>;
    const secondary = (await pair.secondary.status()) as Record<string, any>;
    assert.equal(primary.peer.state, 'connected');
    assert.ok(primary.mirror.writesInline > 0 && primary.mirror.writesLarge > 0, JSON.stringify(primary.mirror));
    assert.equal(primary.mirror.inFlight, 0);
    assert.equal(primary.mirror.copiedPayloadBytes, 0);
    assert.equal(primary.copiedPayloadBytes, 0);
    assert.equal(secondary.mirror.writesInline, primary.mirror.writesInline);
    assert.equal(secondary.mirror.writesLarge, primary.mirror.writesLarge);
    assert.ok(secondary.mirror.trims > 0);
    await stopPair(pair);
    assertIdentical(pair.primaryStore, pair.secondaryStore);
  });

  it('counts the messages the spec promises: small write = head + data + completion, large = one more', async function () {
    const pair = await startPair(dir, { size: '16M' });
    const { client } = await connectTransmission(pair.socket);
    const writes = 20;
    // startPair waited until the secondary applied the connect sequence's RESYNC_DONE: it is not among the messages counted below.
    const start = ((await pair.secondary.status()) as Record<string, any>).mirror;
    for (let i = 0; i < writes; i++) {
      client.sendRequest(1, BigInt(i), BigInt(i * 4096), 4096, crypto.randomBytes(4096));
      assert.equal((await client.readSimpleReply()).error, 0);
    }
    // The last write's completion rides on the next message or leaves alone after a short idle: wait
    // for it, so that each phase counts its own completions and not the other's.
    const confirmedThrough = async (seq: number): Promise<Record<string, any>> => {
      for (let i = 0; i < 200; i++) {
        const status = (await pair.secondary.status()) as Record<string, any>;
        if (status.mirror.confirmedThroughSeq >= seq) return status;
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.fail(`no WRITE_COMPLETE through write ${seq}`);
    };
    let s = await confirmedThrough(start.confirmedThroughSeq + writes);
    assert.equal(s.mirror.writesInline, writes);
    assert.equal(s.mirror.payloadsReceived, writes);
    // One head, one data message and at most one (cumulative) completion per write; the connect sequence is excluded.
    const smallMessages = s.mirror.messagesReceived - start.messagesReceived + s.mirror.payloadsReceived - start.payloadsReceived;
    assert.ok(smallMessages <= 3 * writes && smallMessages >= 2 * writes + 1, `small: ${smallMessages} messages for ${writes} writes`);
    for (let i = 0; i < writes; i++) {
      client.sendRequest(1, BigInt(100 + i), BigInt(1024 * 1024 + i * 65536), 65536, crypto.randomBytes(65536));
      assert.equal((await client.readSimpleReply()).error, 0);
    }
    const before = s.mirror;
    s = await confirmedThrough(start.confirmedThroughSeq + 2 * writes);
    assert.equal(s.mirror.writesLarge, writes);
    const largeMessages = s.mirror.messagesReceived - before.messagesReceived + (s.mirror.payloadsReceived - before.payloadsReceived);
    assert.ok(largeMessages <= 4 * writes && largeMessages >= 3 * writes, `large: ${largeMessages} messages for ${writes} writes`);
    const p = (await pair.primary.status()) as Record<string, any>;
    assert.equal(p.mirror.writesInline, writes);
    assert.equal(p.mirror.writesLarge, writes);
    assert.equal(p.mirror.acksReceived, 2 * writes + 1, 'one ACK per write, plus the one for RESYNC_DONE at connect');
    client.destroy();
    await stopPair(pair);
    assertIdentical(pair.primaryStore, pair.secondaryStore);
  });

  it('the inline threshold is configurable: with 4 KiB, an 8 KiB write takes the large path', async function () {
    const pair = await startPair(dir, { size: '16M', primaryArgs: ['--inline-threshold', '4K'] });
    const { client } = await connectTransmission(pair.socket);
    client.sendRequest(1, 1n, 0n, 8192, crypto.randomBytes(8192));
    client.sendRequest(1, 2n, 65536n, 4096, crypto.randomBytes(4096));
    client.sendRequest(1, 3n, 100n, 1000, crypto.randomBytes(1000)); // unaligned: large path
    for (let i = 0; i < 3; i++) assert.equal((await client.readSimpleReply()).error, 0);
    const p = (await pair.primary.status()) as Record<string, any>;
    assert.equal(p.mirror.writesInline, 1);
    assert.equal(p.mirror.writesLarge, 2);
    client.destroy();
    await stopPair(pair);
    assertIdentical(pair.primaryStore, pair.secondaryStore);
  });

  it('async mode replies before the peer and reports the lag; replicas converge', async function () {
    requireCommands(this, 'fio');
    const pair = await startPair(dir, { size: '32M', primaryArgs: ['--mode', 'async', '--async-window', '8M'] });
    await runOk('fio', ['--name=a', '--ioengine=nbd', `--uri=${pair.uri}`, '--rw=randwrite', '--bs=16k', '--iodepth=32', '--size=16M', '--end_fsync=1']);
    const p = (await pair.primary.status()) as Record<string, any>;
    assert.equal(p.mirror.mode, 'async');
    assert.equal(typeof p.mirror.lagBytes, 'number');
    assert.ok(p.mirror.lagBytes <= 8 * 1024 * 1024);
    await stopPair(pair);
    assertIdentical(pair.primaryStore, pair.secondaryStore);
  });

  it('a new pair on stores that already hold data (as block devices always do): refused without metadata; with --force-new-metadata on both, the primary\'s data is fully synced over the secondary\'s', async function () {
    const size = 16 * 1024 * 1024;
    const primaryData = crypto.randomBytes(size);
    primaryData.fill(0, 4 * 1024 * 1024, 8 * 1024 * 1024); // a zero stretch too
    fs.writeFileSync(path.join(dir, 'primary.img'), primaryData);
    fs.writeFileSync(path.join(dir, 'secondary.img'), crypto.randomBytes(size));
    // Without metadata neither node guesses: the store may hold data nobody described.
    const bare = new NodeProcess(['secondary', '--store', path.join(dir, 'secondary.img'), '--size', '16M', '--listen', '127.0.0.1:0'], path.join(dir, 'secondary.img.ctl'));
    const refused = await bare.exited;
    assert.notEqual(refused.code, 0);
    assert.match(bare.stderr, /already exists and may hold data.*\[META_MISSING\]/s);
    const pair = await startPair(dir, { size: '16M', primaryArgs: ['--force-new-metadata'], secondaryArgs: ['--force-new-metadata'] });
    assert.match(pair.primary.stderr, /its content is the pair's data from now on/);
    assert.match(pair.secondary.stderr, /its content counts as unknown/);
    const p = (await pair.primary.status()) as Record<string, any>;
    assert.equal(p.peer.disk, 'upToDate');
    assert.ok(p.mirror.resyncs >= 1, 'a full sync ran');
    await stopPair(pair);
    assertIdentical(pair.primaryStore, pair.secondaryStore);
    assert.ok(fs.readFileSync(pair.secondaryStore).equals(primaryData), "the secondary holds the primary's data");
  });
});
