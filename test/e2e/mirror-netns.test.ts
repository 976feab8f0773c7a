/** A pair on two "hosts" (network namespaces joined by veth): replication, the mounted path, and the peer going away. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sleep, tempDir, NodeProcess } from '../helpers/node-process';
import { NamespacePair } from '../helpers/netns';
import { startPair, waitForPeerState, type PairProcesses } from '../helpers/pair';
import { waitInSync } from '../helpers/failover-pair';
import { requireCommands, requireRoot } from '../helpers/requires';
import { run, runOk } from '../helpers/run';
import { checkFileTree, FuseLoopDevice, writeFileTree } from '../helpers/mounted-volume';

function filesIdentical(a: string, b: string): boolean {
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

describe('mirror: pair across network namespaces (veth)', function () {
  let dir: string;
  let ns: NamespacePair;
  let pair: PairProcesses | undefined;

  before(async function () {
    requireRoot(this);
    requireCommands(this, 'ip', 'fio');
    ns = await NamespacePair.create();
  });
  after(async function () {
    await ns?.destroy();
  });
  beforeEach(() => (dir = tempDir('netns')));
  afterEach(async function () {
    await pair?.primary.stop();
    await pair?.secondary.stop();
    pair = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('fio with verify through the primary in A; the replica in B is byte-identical', async function () {
    pair = await startPair(dir, { size: '64M', netns: ns });
    await runOk('fio', ['--name=n', '--ioengine=nbd', `--uri=${pair.uri}`, '--rw=randwrite', '--bsrange=4k-128k', '--iodepth=32', '--size=48M', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1', '--end_fsync=1'], { timeoutMs: 240_000 });
    const s = (await pair.secondary.status()) as Record<string, any>;
    assert.ok(s.mirror.writesApplied > 0);
    assert.equal((await pair.primary.stop()).code, 0);
    assert.equal((await pair.secondary.stop()).code, 0);
    assert.ok(filesIdentical(pair.primaryStore, pair.secondaryStore), 'replicas differ');
  });

  it('ext4 written through the primary (nbdfuse + loop) is readable from the secondary replica, loop-mounted read-only', async function () {
    requireCommands(this, 'nbdfuse', 'losetup', 'mkfs.ext4', 'mount');
    pair = await startPair(dir, { size: '128M', netns: ns });
    const device = new FuseLoopDevice(dir, pair.socket);
    let sums: Map<string, string>;
    try {
      await device.attach();
      await device.mkfs();
      await device.mount();
      sums = writeFileTree(device.mountDir, 40);
      await device.unmount();
    } finally {
      await device.detach();
    }
    assert.equal((await pair.primary.stop()).code, 0);
    assert.equal((await pair.secondary.stop()).code, 0);
    const mnt = path.join(dir, 'replica-mnt');
    fs.mkdirSync(mnt);
    await runOk('mount', ['-o', 'loop,ro,noload', pair.secondaryStore, mnt]);
    try {
      assert.deepEqual(checkFileTree(mnt, sums), []);
    } finally {
      await run('umount', [mnt]);
    }
  });

  it('link cut during fio: no client I/O fails, the primary goes degraded and records what the peer misses; healed, the peer is resynced', async function () {
    pair = await startPair(dir, { size: '64M', netns: ns, primaryArgs: ['--keepalive-timeout', '1500'], secondaryArgs: ['--keepalive-timeout', '1500'] });
    const fio = run('fio', ['--name=cut', '--ioengine=nbd', `--uri=${pair.uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=32M', '--time_based', '--runtime=8', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1'], { timeoutMs: 120_000 });
    await sleep(2000);
    await ns.linkDown();
    const degraded = await waitForPeerState(pair.primary, 'degraded', 20_000);
    assert.match(degraded.peer.reason, /keepalive|ACK|stalled/i);
    const result = await fio;
    assert.equal(result.code, 0, `fio failed while the peer was cut off:\n${result.stdout}\n${result.stderr}`);
    const after = (await pair.primary.status()) as Record<string, any>;
    assert.ok(after.peer.outOfSyncBytes > 0, 'writes made while degraded are recorded');
    assert.ok(after.mirror.degradedWrites > 0);
    assert.equal(after.io.errors, 0);
    await ns.linkUp();
    const synced = await waitInSync(pair.primary);
    assert.equal(synced.resync.bytesDone, after.peer.outOfSyncBytes, 'the healed peer is resynced with exactly what it missed');
    assert.equal((await pair.primary.stop()).code, 0);
    assert.equal((await pair.secondary.stop()).code, 0);
    assert.ok(filesIdentical(pair.primaryStore, pair.secondaryStore));
  });

  it('kill -9 of the secondary: the primary carries on alone; the restarted secondary is resynced before it counts as a replica', async function () {
    pair = await startPair(dir, { size: '64M', netns: ns, primaryArgs: ['--keepalive-timeout', '1500'] });
    const fio = run('fio', ['--name=kill', '--ioengine=nbd', `--uri=${pair.uri}`, '--rw=randwrite', '--bs=8k', '--iodepth=8', '--size=32M', '--time_based', '--runtime=5', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1'], { timeoutMs: 120_000 });
    await sleep(1500);
    await pair.secondary.kill();
    const result = await fio;
    assert.equal(result.code, 0, `fio failed after the secondary died:\n${result.stderr}`);
    const degraded = await waitForPeerState(pair.primary, 'degraded');
    assert.ok(degraded.peer.outOfSyncBytes > 0);
    const restarted = new NodeProcess(
      ['secondary', '--store', pair.secondaryStore, '--listen', pair.peerAddress, '--control', `${pair.secondaryStore}.ctl`],
      `${pair.secondaryStore}.ctl`,
      { netns: ns.b },
    );
    pair.secondary = restarted;
    await restarted.ready();
    await waitInSync(pair.primary);
    assert.equal((await pair.primary.stop()).code, 0);
    assert.equal((await pair.secondary.stop()).code, 0);
    assert.ok(filesIdentical(pair.primaryStore, pair.secondaryStore));
  });
});
