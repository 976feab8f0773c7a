/** Issue: survive failures. Primary crash + promotion (proof tools), rejoin, stale primary refused, secondary crash mid-resync, split brain. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sleep, tempDir, CLI, REPO_ROOT } from '../helpers/node-process';
import { NamespacePair } from '../helpers/netns';
import { waitForPeerState } from '../helpers/pair';
import { startFailoverPair, startNode, waitInSync, type FailoverNodes } from '../helpers/failover-pair';
import { requireCommands, requireRoot } from '../helpers/requires';
import { run, runOk } from '../helpers/run';
import type { NodeProcess } from '../helpers/node-process';

const WRITER = path.join(REPO_ROOT, 'dist', 'tools', 'proof', 'writer.js');
const CHECKER = path.join(REPO_ROOT, 'dist', 'tools', 'proof', 'checker.js');

function identical(a: string, b: string): boolean {
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

describe('failures: crash, promotion, rejoin, split brain', function () {
  let ns: NamespacePair;
  let dir: string;
  let nodes: FailoverNodes | undefined;
  const extra: NodeProcess[] = [];

  before(async function () {
    requireRoot(this);
    requireCommands(this, 'ip', 'fio');
    ns = await NamespacePair.create();
  });
  after(async () => ns?.destroy());
  beforeEach(() => (dir = tempDir('failover')));
  afterEach(async function () {
    for (const n of [nodes?.a, nodes?.b, ...extra.splice(0)]) await n?.stop();
    nodes = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('kill -9 of the primary under the writer; promoting the secondary keeps every acknowledged write; the old primary rejoins as secondary and converges', async function () {
    nodes = await startFailoverPair(dir, ns);
    const log = path.join(dir, 'ack.log');
    const writer = run(process.execPath, [WRITER, '--socket', nodes.socketA, '--log', log, '--queue-depth', '16', '--duration', '30', '--size', '32M'], { timeoutMs: 60_000 });
    await sleep(2500);
    await nodes.a.kill();
    const w = await writer;
    assert.equal(w.code, 3, `writer should report the server lost:\n${w.stderr}`);
    const acked = Number(/(\d+) writes acknowledged/.exec(w.stderr)?.[1] ?? 0);
    assert.ok(acked > 100, w.stderr);
    await waitForPeerState(nodes.b, 'degraded', 20_000);
    const promoted = JSON.parse((await runOk(process.execPath, [CLI, 'promote', '--control', nodes.b.controlPath, '--json'])).stdout) as { epoch: number };
    assert.equal(promoted.epoch, 2);
    const check = await run(process.execPath, [CHECKER, '--log', log, '--socket', nodes.socketB]);
    assert.equal(check.code, 0, `acknowledged writes missing on the promoted secondary:\n${check.stdout}\n${check.stderr}`);
    // New writes on the promoted node while the old primary is down.
    await runOk('fio', ['--name=after', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${nodes.socketB}`, '--rw=randwrite', '--bs=64k', '--size=8M', '--offset=40M']);
    // The old primary comes back as secondary: the promoted node resyncs it (its own changes and the old primary's activity log).
    const old = startNode(dir, ns, nodes.port, 'a', 'secondary');
    nodes.a = old;
    await old.ready();
    const synced = await waitInSync(nodes.b);
    assert.ok(synced.resync.bytesDone > 0);
    assert.equal((await nodes.b.stop()).code, 0);
    assert.equal((await nodes.a.stop()).code, 0);
    assert.ok(identical(nodes.storeA, nodes.storeB), 'the rejoined old primary did not converge');
    const final = await run(process.execPath, [CHECKER, '--log', log, '--image', nodes.storeA]);
    assert.equal(final.code, 0, final.stdout);
  });

  it('an old primary restarted as primary while its peer was promoted refuses to serve and says why', async function () {
    nodes = await startFailoverPair(dir, ns);
    await nodes.a.kill();
    await waitForPeerState(nodes.b, 'degraded', 20_000);
    await runOk(process.execPath, [CLI, 'promote', '--control', nodes.b.controlPath]);
    const again = startNode(dir, ns, nodes.port, 'a', 'primary');
    const exit = await again.exited;
    assert.equal(exit.code, 1, again.stderr);
    assert.match(again.stderr, /refusing to serve as primary: .*promoted/);
    assert.doesNotMatch(again.stderr, /NBD listening/, 'no NBD export was opened');
  });

  it('kill -9 of the secondary during a resync: restarted, the resync resumes and finishes', async function () {
    nodes = await startFailoverPair(dir, ns, ['--resync-rate', '8M']);
    await ns.linkDown();
    await waitForPeerState(nodes.a, 'degraded', 20_000);
    await runOk('fio', ['--name=dirty', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${nodes.socketA}`, '--rw=write', '--bs=1M', '--size=24M', '--buffer_compress_percentage=0', '--refill_buffers']);
    const dirty = ((await nodes.a.status()) as Record<string, any>).peer.outOfSyncBytes as number;
    assert.ok(dirty >= 24 * 1024 * 1024);
    await ns.linkUp();
    const deadline = Date.now() + 30_000;
    let beforeKill: Record<string, any>;
    for (;;) {
      const s = (await nodes.a.status()) as Record<string, any>;
      beforeKill = s;
      if (s.resync.active && s.resync.bytesDone > 2 * 1024 * 1024) break;
      if (Date.now() > deadline) throw new Error(`resync did not start: ${JSON.stringify(s.resync)}`);
      await sleep(100);
    }
    await nodes.b.kill();
    const mid = (await waitForPeerState(nodes.a, 'degraded', 20_000)) as Record<string, any>;
    const diagnostics = JSON.stringify({ dirty, beforeKill: { peer: beforeKill.peer, resync: beforeKill.resync }, mid: { peer: mid.peer, resync: mid.resync } });
    assert.ok(beforeKill.peer.outOfSyncBytes < dirty, `the resync cleared regions as it went: ${diagnostics}`);
    assert.ok(mid.peer.outOfSyncBytes <= beforeKill.peer.outOfSyncBytes, `progress was kept across the crash: ${diagnostics}`);
    assert.ok(mid.peer.outOfSyncBytes > 0);
    nodes.b = startNode(dir, ns, nodes.port, 'b', 'secondary');
    await nodes.b.ready();
    const inconsistent = (await nodes.b.status()) as Record<string, any>;
    assert.equal(inconsistent.disk.state, 'inconsistent', 'a replica interrupted mid-resync knows it is inconsistent');
    const promote = await run(process.execPath, [CLI, 'promote', '--control', nodes.b.controlPath]);
    assert.notEqual(promote.code, 0, 'an inconsistent replica is not promoted without --force');
    assert.match(promote.stderr, /inconsistent/);
    const synced = await waitInSync(nodes.a, 90_000);
    assert.ok(synced.resync.bytesTotal <= mid.peer.outOfSyncBytes + 4 * 1024 * 1024, 'resumed, not restarted');
    const upToDateBy = Date.now() + 10_000;
    while (((await nodes.b.status()) as Record<string, any>).disk.state !== 'upToDate') {
      if (Date.now() > upToDateBy) assert.fail('the resynced secondary never became upToDate');
      await sleep(100);
    }
    assert.equal((await nodes.a.stop()).code, 0);
    assert.equal((await nodes.b.stop()).code, 0);
    assert.ok(identical(nodes.storeA, nodes.storeB));
  });

  it('split brain: both promoted apart and written; healing detects it and overwrites nothing; resolve --discard-my-data saves the discarded data and converges', async function () {
    nodes = await startFailoverPair(dir, ns);
    await ns.linkDown();
    await waitForPeerState(nodes.a, 'degraded', 20_000);
    await waitForPeerState(nodes.b, 'degraded', 20_000);
    await runOk(process.execPath, [CLI, 'promote', '--control', nodes.b.controlPath]);
    await runOk('fio', ['--name=a', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${nodes.socketA}`, '--rw=write', '--bs=64k', '--size=2M', '--offset=0']);
    await runOk('fio', ['--name=b', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${nodes.socketB}`, '--rw=write', '--bs=64k', '--size=2M', '--offset=8M']);
    const bBefore = fs.readFileSync(nodes.storeB);
    await ns.linkUp();
    const deadline = Date.now() + 20_000;
    let a: Record<string, any>;
    for (;;) {
      a = (await nodes.a.status()) as Record<string, any>;
      if (a.peer.splitBrain) break;
      if (Date.now() > deadline) throw new Error(`split brain not detected: ${JSON.stringify(a.peer)}`);
      await sleep(200);
    }
    assert.match(a.peer.reason, /split brain/);
    assert.match(a.peer.reason, /discard-my-data/);
    await sleep(2500);
    assert.ok(fs.readFileSync(nodes.storeB).equals(bBefore), 'nothing was overwritten on detection');
    const resolved = JSON.parse((await runOk(process.execPath, [CLI, 'resolve', '--control', nodes.b.controlPath, '--discard-my-data', '--json'])).stdout) as { savedTo: string; regions: number; bytes: number };
    assert.ok(resolved.regions >= 32, `saved ${resolved.regions} regions`);
    const saved = fs.readFileSync(resolved.savedTo);
    const firstRecord = saved.indexOf(0x0a) + 1;
    const savedOffset = Number(saved.readBigUInt64BE(firstRecord));
    const savedLength = saved.readUInt32BE(firstRecord + 8);
    assert.ok(saved.subarray(firstRecord + 12, firstRecord + 12 + savedLength).equals(bBefore.subarray(savedOffset, savedOffset + savedLength)), 'the discarded data is in the saved file');
    await waitInSync(nodes.a, 60_000);
    assert.equal((await nodes.a.stop()).code, 0);
    assert.equal((await nodes.b.stop()).code, 0);
    assert.ok(identical(nodes.storeA, nodes.storeB), 'replicas differ after resolving the split brain');
  });
});
