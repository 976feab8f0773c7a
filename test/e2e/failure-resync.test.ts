/** Issue: survive failures. Link cut + heal (dirty-only resync), verify after bit flips, corrupt metadata. */
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sleep, tempDir, NodeProcess, CLI } from '../helpers/node-process';
import { NamespacePair } from '../helpers/netns';
import { waitForPeerState } from '../helpers/pair';
import { startFailoverPair, startNode, waitInSync, type FailoverNodes } from '../helpers/failover-pair';

function startNodeB(dir: string, ns: NamespacePair, port: number): NodeProcess {
  return startNode(dir, ns, port, 'b', 'secondary');
}
import { requireCommands, requireRoot } from '../helpers/requires';
import { connectTransmission } from '../helpers/raw-nbd-client';
import { run, runOk } from '../helpers/run';
import { FailingDisk } from '../helpers/failing-disk';

function identical(a: string, b: string): boolean {
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

describe('failures: link cut, resync, verify, metadata', function () {
  let ns: NamespacePair;
  let dir: string;
  let nodes: FailoverNodes | undefined;

  before(async function () {
    requireRoot(this);
    requireCommands(this, 'ip', 'fio');
    ns = await NamespacePair.create();
  });
  after(async () => ns?.destroy());
  beforeEach(() => (dir = tempDir('fail')));
  afterEach(async function () {
    await nodes?.a.stop();
    await nodes?.b.stop();
    nodes = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Cut the link, write `ioSize` of random 64 KiB blocks in the first `size` of the volume through the primary, wait until it is degraded; returns its NBD URI. */
  async function dirtyWhileLinkDown(pair: FailoverNodes, size: string, ioSize: string): Promise<string> {
    const uri = `nbd+unix:///?socket=${pair.socketA}`;
    await ns.linkDown();
    await runOk('fio', ['--name=dirty', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=64k', `--size=${size}`, `--io_size=${ioSize}`, '--iodepth=8', '--refill_buffers']);
    const down = await waitForPeerState(pair.a, 'degraded', 20_000);
    assert.equal(down.peer.disk, 'unknown', 'a primary without its peer does not know its disk');
    return uri;
  }

  /** Both nodes stop cleanly and their stores are byte-identical. */
  async function stopBothAndCompare(pair: FailoverNodes, message: string): Promise<void> {
    assert.equal((await pair.a.stop()).code, 0);
    assert.equal((await pair.b.stop()).code, 0);
    assert.ok(identical(pair.storeA, pair.storeB), message);
  }

  /**
   * Runs `body` with node `which`'s 64 MiB sparse store on a 40 MiB tmpfs (dir/WHICH.img links to it),
   * so that its writes fail with ENOSPC once `filler(bytes)` leaves too little room; unmounts after.
   */
  async function withSmallDisk(which: 'a' | 'b', body: (filler: (bytes: number) => void, removeFiller: () => void) => Promise<void>): Promise<void> {
    const small = path.join(dir, 'small');
    fs.mkdirSync(small);
    await runOk('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', small]);
    try {
      const store = path.join(small, `${which}.img`);
      fs.closeSync(fs.openSync(store, 'w'));
      fs.truncateSync(store, 64 * 1024 * 1024);
      fs.symlinkSync(store, path.join(dir, `${which}.img`));
      const fillerPath = path.join(small, 'filler');
      await body(
        (bytes) => fs.writeFileSync(fillerPath, Buffer.alloc(bytes, 1)),
        () => fs.rmSync(fillerPath),
      );
    } finally {
      await nodes?.a.stop();
      await nodes?.b.stop();
      nodes = undefined;
      await run('umount', [small]);
    }
  }

  it('link cut during fio: no failed I/O; after healing only the dirty regions are resynced and the replicas are identical', async function () {
    nodes = await startFailoverPair(dir, ns);
    const uri = `nbd+unix:///?socket=${nodes.socketA}`;
    // Fill 16 MiB while connected, so the volume is not trivially sparse.
    await runOk('fio', ['--name=fill', '--ioengine=nbd', `--uri=${uri}`, '--rw=write', '--bs=1M', '--iodepth=4', '--size=16M']);
    const fio = run('fio', ['--name=cut', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=8', '--offset=32M', '--size=4M', '--time_based', '--runtime=6', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1'], { timeoutMs: 120_000 });
    await sleep(1500);
    await ns.linkDown();
    await waitForPeerState(nodes.a, 'degraded', 20_000);
    const result = await fio;
    assert.equal(result.code, 0, `fio failed while degraded:\n${result.stderr}`);
    const degraded = (await nodes.a.status()) as Record<string, any>;
    const dirty = degraded.peer.outOfSyncBytes as number;
    assert.ok(dirty > 0, 'writes while degraded are recorded');
    assert.ok(dirty <= 4 * 1024 * 1024 + 2 * 65536, `only the written range is dirty (${dirty} bytes)`);
    assert.equal(degraded.disk.state, 'upToDate');
    await ns.linkUp();
    const synced = await waitInSync(nodes.a);
    assert.equal(synced.resync.bytesDone, dirty, 'the resync moved exactly the dirty regions');
    const b = (await nodes.b.status()) as Record<string, any>;
    assert.ok(b.mirror.resyncBytes + b.mirror.zeroes * 65536 >= 0);
    assert.ok(b.mirror.resyncBytes <= dirty, `secondary received ${b.mirror.resyncBytes} resync bytes for ${dirty} dirty`);
    assert.ok(synced.mirror.resyncChannels >= 1 && b.mirror.resyncChannels >= 1, 'the region data went over a resync channel');
    assert.ok(b.mirror.resyncWrites > 0, 'the secondary counts the channel writes');
    for (let i = 0; i < 100 && ((await nodes.b.status()) as Record<string, any>).disk.state !== 'upToDate'; i++) await sleep(100);
    const bAfter = (await nodes.b.status()) as Record<string, any>;
    assert.equal(bAfter.disk.state, 'upToDate');
    assert.equal(bAfter.generation.current, synced.generation.current, 'both hold the same generation again');
    assert.equal((await nodes.a.stop()).code, 0);
    assert.equal((await nodes.b.stop()).code, 0);
    assert.ok(identical(nodes.storeA, nodes.storeB), 'replicas differ after resync');
  });

  it('client writes during a resync over the channel, to the regions being resynced: fio verify passes and the replicas end identical', async function () {
    // A slow resync (rate limit) so that the client's writes meet regions still in flight on the channel.
    nodes = await startFailoverPair(dir, ns, ['--resync-rate', String(8 * 1024 * 1024)]);
    const uri = await dirtyWhileLinkDown(nodes, '16M', '12M');
    await ns.linkUp();
    await waitForPeerState(nodes.a, 'connected', 20_000);
    let before = (await nodes.a.status()) as Record<string, any>;
    // "connected" comes before the primary's metadata write that precedes the resync: wait for it (a slow disk makes that wait long).
    for (const deadline = Date.now() + 10_000; !before.resync.active && Date.now() < deadline; await sleep(20)) before = (await nodes.a.status()) as Record<string, any>;
    assert.ok(before.resync.active, 'the resync runs when the client starts writing');
    assert.equal(before.peer.state, 'connected');
    assert.equal(before.peer.disk, 'inconsistent', 'connected, but the peer is not up to date while it is resynced');
    await runOk('fio', ['--name=during', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=16M', '--io_size=4M', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1']);
    const mid = (await nodes.a.status()) as Record<string, any>;
    assert.ok(mid.resync.active || mid.resync.bytesDone < 12 * 1024 * 1024, 'the client wrote while regions were still being resynced');
    const synced = await waitInSync(nodes.a, 60_000);
    assert.ok(synced.mirror.resyncChannels >= 1, 'the resync used a channel');
    const b = (await nodes.b.status()) as Record<string, any>;
    assert.equal(b.generation.current, synced.generation.current, 'up to date means the secondary holds the primary\'s generation');
    assert.equal(b.peer.disk, 'upToDate', 'the secondary sees its primary\'s disk up to date');
    await stopBothAndCompare(nodes, 'replicas differ after a resync with concurrent client writes');
  });

  it('client writes during an unlimited channel resync (batches of runs under one gate) to a slow secondary disk: the writes wait for the batches they meet, fio verify passes and the replicas end identical', async function () {
    requireCommands(this, 'nbdkit', 'nbdfuse', 'fusermount3');
    // Each write on the secondary's disk takes 1 ms more: the resync, at full speed, lasts long enough to meet the client.
    const disk = await FailingDisk.create(path.join(dir, 'disk'), 64 * 1024 * 1024, { writeDelayMs: 1 });
    try {
      fs.symlinkSync(disk.file, path.join(dir, 'b.img'));
      nodes = await startFailoverPair(dir, ns);
      const uri = await dirtyWhileLinkDown(nodes, '64M', '24M');
      await ns.linkUp();
      let before = (await nodes.a.status()) as Record<string, any>;
      for (const deadline = Date.now() + 10_000; !before.resync.active && Date.now() < deadline; await sleep(20)) before = (await nodes.a.status()) as Record<string, any>;
      assert.ok(before.resync.active, 'the resync runs when the client starts writing');
      await runOk('fio', ['--name=during', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=64M', '--io_size=2M', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1']);
      const mid = (await nodes.a.status()) as Record<string, any>;
      assert.ok(mid.io.gateWaits > before.io.gateWaits, `client writes waited for resync batches in the write gate (${before.io.gateWaits} -> ${mid.io.gateWaits})`);
      const synced = await waitInSync(nodes.a, 120_000);
      assert.ok(synced.mirror.resyncChannels >= 1, 'the resync used a channel');
      await stopBothAndCompare(nodes, 'replicas differ after an unlimited resync with concurrent client writes');
    } finally {
      await nodes?.a.stop();
      await nodes?.b.stop();
      await disk.destroy();
    }
  });

  it('link cut in the middle of a channel resync: both ends drop the channel, and the resync resumes and finishes after healing', async function () {
    nodes = await startFailoverPair(dir, ns, ['--resync-rate', String(4 * 1024 * 1024)]);
    await dirtyWhileLinkDown(nodes, '32M', '16M');
    await ns.linkUp();
    let mid = (await nodes.a.status()) as Record<string, any>;
    for (let i = 0; i < 200 && !(mid.resync.active && mid.resync.bytesDone > 0); i++) {
      await sleep(20);
      mid = (await nodes.a.status()) as Record<string, any>;
    }
    assert.ok(mid.resync.active && mid.resync.bytesDone > 0, 'the resync is under way');
    await ns.linkDown();
    await waitForPeerState(nodes.a, 'degraded', 20_000);
    let b = (await nodes.b.status()) as Record<string, any>;
    for (let i = 0; i < 200 && b.mirror.resyncChannelActive; i++) {
      await sleep(50);
      b = (await nodes.b.status()) as Record<string, any>;
    }
    assert.equal(b.mirror.resyncChannelActive, false, 'the secondary dropped the channel');
    assert.equal(b.disk.state, 'inconsistent', 'a half-resynced replica says so');
    let cut = (await nodes.a.status()) as Record<string, any>;
    for (let i = 0; i < 100 && cut.resync.active; i++) {
      await sleep(50);
      cut = (await nodes.a.status()) as Record<string, any>;
    }
    assert.equal(cut.resync.active, false, 'the primary stopped its resync');
    assert.ok(cut.peer.outOfSyncBytes > 0 && cut.peer.outOfSyncBytes < 16 * 1024 * 1024, `part of the data is still out of sync (${cut.peer.outOfSyncBytes})`);
    await ns.linkUp();
    const synced = await waitInSync(nodes.a, 60_000);
    assert.ok(synced.mirror.resyncChannels >= 2, 'the second resync opened a channel of its own');
    await stopBothAndCompare(nodes, 'replicas differ after the interrupted resync');
  });

  it('the secondary\'s disk fills up during a channel resync: the channel fails with the reason, the primary reconnects with a growing delay and keeps the rest out of sync; with space freed the resync finishes', async function () {
    // B's store lives on a small tmpfs, so that its writes fail with ENOSPC part way.
    await withSmallDisk('b', async (filler, removeFiller) => {
      nodes = await startFailoverPair(dir, ns);
      // Leave about 10 MiB free, then dirty 24 MiB on the primary.
      filler(30 * 1024 * 1024);
      await dirtyWhileLinkDown(nodes, '64M', '24M');
      await ns.linkUp();
      // Each resync that ends unfinished doubles the wait before the next try (250 ms, 500 ms, 1 s, ...).
      let a = (await nodes.a.status()) as Record<string, any>;
      for (let i = 0; i < 300 && !(a.peer.resyncFailuresInARow >= 3 && /could not write region data/.test(nodes.a.stderr)); i++) {
        await sleep(50);
        a = (await nodes.a.status()) as Record<string, any>;
      }
      assert.ok(a.peer.resyncFailuresInARow >= 3, `resyncs kept failing (${a.peer.resyncFailuresInARow} in a row)`);
      assert.ok(a.peer.reconnectDelayMs >= 1000, `the primary backs off (${a.peer.reconnectDelayMs} ms before the next try)`);
      const started = (nodes.a.stderr.match(/resync started/g) ?? []).length;
      assert.ok(started <= a.peer.resyncFailuresInARow + 1, `no more tries than failures (${started} resyncs started)`);
      assert.match(nodes.a.stderr, /resync channel: the peer could not write region data \(ACK status/, `the primary says why the channel failed:\n${nodes.a.stderr.split('\n').filter((l) => /resync|channel/.test(l)).slice(0, 12).join('\n')}`);
      assert.match(nodes.b.stderr, /resync channel: \d+ writes failed on the store \(the primary was told\)/, 'the secondary says why');
      assert.match(nodes.a.stderr, /resync interrupted/, 'the failed channel ended that resync');
      assert.ok(a.mirror.resyncChannels >= 2, `the primary reconnected and tried again with a new channel (${a.mirror.resyncChannels} channels)`);
      assert.ok(a.peer.outOfSyncBytes > 0, 'what the secondary could not write is still out of sync');
      const b = (await nodes.b.status()) as Record<string, any>;
      assert.equal(b.disk.state, 'inconsistent', 'the secondary knows its replica is not usable');
      removeFiller();
      const synced = await waitInSync(nodes.a, 60_000);
      assert.equal(synced.peer.resyncFailuresInARow, 0, 'a finished resync ends the backoff');
      assert.equal(synced.peer.reconnectDelayMs, 250);
      await stopBothAndCompare(nodes, 'replicas differ after the resync that ran out of space');
      nodes = undefined;
    });
  });

  it('the primary\'s disk fills up under mirrored writes: the client sees the errors, the peer stays connected, and the ranges the peer applied but the primary could not are resynced from the primary until the replicas are identical', async function () {
    // A's store lives on a small tmpfs, so that its local writes fail with ENOSPC while B's succeed.
    await withSmallDisk('a', async (filler, removeFiller) => {
      nodes = await startFailoverPair(dir, ns);
      await waitForPeerState(nodes.a, 'connected', 20_000);
      // Leave about 8 MiB free, then write 24 MiB of random 64 KiB blocks through the primary.
      filler(32 * 1024 * 1024);
      const uri = `nbd+unix:///?socket=${nodes.socketA}`;
      const fio = await run('fio', ['--name=full', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=64k', '--size=64M', '--io_size=24M', '--iodepth=8', '--refill_buffers', '--continue_on_error=all']);
      assert.notEqual(fio.code, 0, `fio saw no error, so the primary's disk never filled:\n${fio.stdout.slice(-800)}`);
      let a = (await nodes.a.status()) as Record<string, any>;
      assert.ok(a.mirror.localWriteErrors > 0, `the primary counts the writes its store failed (${a.mirror.localWriteErrors})`);
      assert.ok(a.io.errors > 0, 'the client was told');
      assert.equal(a.peer.state, 'connected', 'a local error does not cut the peer');
      assert.match(nodes.a.stderr, /the local store failed a WRITE at \d+\+\d+ \(errno 28\) that the peer may have applied/);
      removeFiller();
      a = await waitInSync(nodes.a, 60_000);
      assert.ok(a.mirror.resyncs >= 1, 'the failed ranges were resynced while connected');
      await stopBothAndCompare(nodes, 'the secondary kept data the primary failed to write');
      nodes = undefined;
    });
  });

  it('the primary\'s disk fails reads: the client gets the peer\'s bytes (nbdcopy reads a copy equal to the replica), the primary rewrites them locally; with the peer gone the reads fail with EIO instead', async function () {
    requireCommands(this, 'nbdkit', 'nbdfuse', 'nbdcopy', 'fusermount3');
    const disk = await FailingDisk.create(path.join(dir, 'disk'), 64 * 1024 * 1024);
    try {
      fs.symlinkSync(disk.file, path.join(dir, 'a.img'));
      nodes = await startFailoverPair(dir, ns);
      await waitInSync(nodes.a, 60_000);
      const { client } = await connectTransmission(nodes.socketA);
      const NBD_CMD_READ = 0;
      const NBD_CMD_WRITE = 1;
      const NBD_CMD_FLUSH = 3;
      const readRange = async (cookie: bigint, offset: number, length: number): Promise<{ error: number; data: Buffer | undefined }> => {
        client.sendRequest(NBD_CMD_READ, cookie, BigInt(offset), length);
        const reply = await client.readSimpleReply();
        return { error: reply.error, data: reply.error === 0 ? await client.read(length) : undefined };
      };
      const big = crypto.randomBytes(1024 * 1024);
      const odd = crypto.randomBytes(1000);
      client.sendRequest(NBD_CMD_WRITE, 1n, 1048576n, big.length, big);
      client.sendRequest(NBD_CMD_WRITE, 2n, 5000n, odd.length, odd);
      for (let i = 0; i < 2; i++) assert.equal((await client.readSimpleReply()).error, 0);
      client.sendRequest(NBD_CMD_FLUSH, 10n, 0n, 0);
      assert.equal((await client.readSimpleReply()).error, 0);
      // A rotten sector under the primary: its disk holds other bytes there than it was given.
      const rot = 1048576 + 8192;
      const backing = fs.openSync(disk.backingFile, 'r+');
      fs.writeSync(backing, Buffer.alloc(4096, 0xee), 0, 4096, rot);
      fs.closeSync(backing);

      await disk.failReads();
      const whole = await readRange(3n, 1048576, big.length);
      assert.equal(whole.error, 0, 'a read the local disk fails is served');
      assert.ok(whole.data!.equals(big), 'with the bytes written (the peer\'s, not the rotten ones)');
      client.sendRequest(NBD_CMD_FLUSH, 11n, 0n, 0);
      assert.equal((await client.readSimpleReply()).error, 0);
      assert.ok(fs.readFileSync(disk.backingFile).subarray(rot, rot + 4096).equals(big.subarray(8192, 8192 + 4096)), 'the primary wrote the peer\'s bytes back over the rotten sector');
      const part = await readRange(4n, 5100, 777);
      assert.equal(part.error, 0);
      assert.ok(part.data!.equals(odd.subarray(100, 877)), 'an unaligned read too');
      const copy = path.join(dir, 'copy.img');
      await runOk('nbdcopy', [`nbd+unix:///?socket=${nodes.socketA}`, copy], { timeoutMs: 120_000 });
      assert.ok(identical(copy, nodes.storeB), 'every byte a client reads equals the replica');
      let a = (await nodes.a.status()) as Record<string, any>;
      assert.ok(a.mirror.readsFromPeer >= 3, `the primary counts the reads it served from the peer (${a.mirror.readsFromPeer})`);
      assert.equal(a.mirror.peerReadFailures, 0);
      assert.equal(a.mirror.readRepairs, a.mirror.readsFromPeer, 'each range read from the peer was rewritten locally');
      assert.equal(a.mirror.readRepairFailures, 0);
      assert.equal(a.peer.state, 'connected');
      const b = (await nodes.b.status()) as Record<string, any>;
      assert.ok(b.mirror.readRequests >= 3, `the secondary counts the reads it answered (${b.mirror.readRequests})`);
      assert.match(nodes.a.stderr, /the local store failed a read \(errno 5\) at \d+\+\d+: served from the peer/);

      await ns.linkDown();
      await waitForPeerState(nodes.a, 'degraded', 20_000);
      await disk.failReads(); // again: the kernel may have cached pages of the file meanwhile
      const alone = await readRange(5n, 1048576, 4096);
      assert.equal(alone.error, 5, 'without the peer the client gets EIO, not a hang and not wrong data');
      a = (await nodes.a.status()) as Record<string, any>;
      assert.ok(a.io.errors >= 1);

      disk.healReads();
      await ns.linkUp();
      await waitInSync(nodes.a, 60_000);
      const again = await readRange(6n, 1048576, big.length);
      assert.ok(again.error === 0 && again.data!.equals(big), 'a healed disk serves its own bytes');
      client.destroy();
      await stopBothAndCompare(nodes, 'replicas differ after reads from the peer');
      nodes = undefined;
    } finally {
      await nodes?.a.stop();
      await nodes?.b.stop();
      nodes = undefined;
      await disk.destroy();
    }
  });

  it('both nodes on O_DIRECT (--direct): mirrored writes, a channel resync and verify work from unaligned memory too, and the replicas end identical', async function () {
    nodes = await startFailoverPair(dir, ns, ['--direct'], ['--direct']);
    const uri = `nbd+unix:///?socket=${nodes.socketA}`;
    // Mirrored writes: each payload reaches the secondary behind a message head, not on a page boundary.
    await runOk('fio', ['--name=mirrored', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=8', '--size=16M', '--io_size=4M', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1']);
    let a = (await nodes.a.status()) as Record<string, any>;
    assert.equal(a.peer.state, 'connected', 'no mirrored write failed on the secondary');
    assert.equal(a.mirror.disconnects ?? 0, 0);
    await dirtyWhileLinkDown(nodes, '32M', '8M');
    await ns.linkUp();
    a = await waitInSync(nodes.a, 60_000);
    assert.equal(a.peer.resyncFailuresInARow, 0, 'the first resync finished');
    const b = (await nodes.b.status()) as Record<string, any>;
    assert.ok(b.mirror.resyncChannels >= 1, 'the resync data came on the channel');
    assert.doesNotMatch(nodes.b.stderr, /failed/);
    const verify = JSON.parse((await runOk(process.execPath, [CLI, 'verify', '--control', nodes.a.controlPath, '--json'])).stdout) as { mismatches: unknown[] };
    assert.deepEqual(verify.mismatches, []);
    await stopBothAndCompare(nodes, 'replicas differ on O_DIRECT stores');
  });

  it('--no-resync-channel: the resync runs on the mirror connection alone, and the replicas end identical', async function () {
    nodes = await startFailoverPair(dir, ns, ['--no-resync-channel']);
    await dirtyWhileLinkDown(nodes, '32M', '8M');
    await ns.linkUp();
    const synced = await waitInSync(nodes.a, 60_000);
    assert.equal(synced.resync.bytesSent, 8 * 1024 * 1024);
    assert.equal(synced.mirror.resyncChannels, 0, 'no channel was opened');
    const b = (await nodes.b.status()) as Record<string, any>;
    assert.equal(b.mirror.resyncChannels, 0);
    assert.equal(b.mirror.resyncBytes, 8 * 1024 * 1024, 'the data came on the mirror connection');
    await stopBothAndCompare(nodes, 'replicas differ after a resync on the mirror connection');
  });

  it('bytes flipped in one replica: verify reports exactly those regions, verify --resync repairs them', async function () {
    nodes = await startFailoverPair(dir, ns);
    const uri = `nbd+unix:///?socket=${nodes.socketA}`;
    await runOk('fio', ['--name=fill', '--ioengine=nbd', `--uri=${uri}`, '--rw=write', '--bs=1M', '--iodepth=4', '--size=8M', '--end_fsync=1']);
    const fd = fs.openSync(nodes.storeB, 'r+');
    for (const offset of [100, 5 * 1024 * 1024 + 7, 60 * 1024 * 1024 + 65536 * 3 + 1]) fs.writeSync(fd, Buffer.from([0xde, 0xad]), 0, 2, offset);
    fs.closeSync(fd);
    const report = await runOk(process.execPath, [CLI, 'verify', '--control', nodes.a.controlPath, '--json']);
    const verify = JSON.parse(report.stdout) as { mismatches: { offset: number; length: number }[] };
    assert.deepEqual(verify.mismatches, [
      { offset: 0, length: 65536 },
      { offset: 5 * 1024 * 1024, length: 65536 },
      { offset: 60 * 1024 * 1024 + 65536 * 3, length: 65536 },
    ]);
    await runOk(process.execPath, [CLI, 'verify', '--control', nodes.a.controlPath, '--resync', '--json']);
    await waitInSync(nodes.a);
    const again = JSON.parse((await runOk(process.execPath, [CLI, 'verify', '--control', nodes.a.controlPath, '--json'])).stdout) as { mismatches: unknown[] };
    assert.deepEqual(again.mismatches, []);
    assert.equal((await nodes.a.stop()).code, 0);
    assert.equal((await nodes.b.stop()).code, 0);
    assert.ok(identical(nodes.storeA, nodes.storeB));
  });

  it('checksum-based resync sends no data for regions that are already the same on the peer', async function () {
    nodes = await startFailoverPair(dir, ns, ['--resync-checksum']);
    // Deterministic content, so "the same bytes again" really is the same (fio's verify headers carry timestamps).
    const block = Buffer.alloc(65536);
    for (let i = 0; i < block.length; i++) block[i] = (i * 131 + 7) & 0xff;
    const writeRange = async (offset: number, count: number, fill?: number): Promise<void> => {
      const { client } = await connectTransmission(nodes!.socketA);
      for (let i = 0; i < count; i++) client.sendRequest(1, BigInt(i), BigInt(offset + i * 65536), 65536, fill === undefined ? block : Buffer.alloc(65536, fill));
      for (let i = 0; i < count; i++) assert.equal((await client.readSimpleReply()).error, 0);
      client.destroy();
    };
    await writeRange(8 * 1024 * 1024, 64);
    await ns.linkDown();
    await waitForPeerState(nodes.a, 'degraded', 20_000);
    // The same bytes again while apart: the regions are marked, but the peer already has them.
    await writeRange(8 * 1024 * 1024, 64);
    await writeRange(20 * 1024 * 1024, 16, 0x77);
    await ns.linkUp();
    const synced = await waitInSync(nodes.a);
    assert.equal(synced.resync.checksum, true);
    assert.equal(synced.resync.regionsSkippedEqual, 64, 'the 4 MiB rewritten with the same bytes were skipped');
    assert.equal(synced.resync.bytesSent, 1024 * 1024, 'only the changed 1 MiB travelled');
    assert.equal((await nodes.a.stop()).code, 0);
    assert.equal((await nodes.b.stop()).code, 0);
    assert.ok(identical(nodes.storeA, nodes.storeB));
  });

  it('checksum mode is not fooled by data that embeds its own CRC32C (fio verify headers): different regions are sent', async function () {
    nodes = await startFailoverPair(dir, ns, ['--resync-checksum']);
    const uri = `nbd+unix:///?socket=${nodes.socketA}`;
    const pattern = ['--rw=write', '--bs=64k', '--size=4M', '--offset=8M', '--verify_pattern=0x5a5a1234', '--do_verify=0'];
    await runOk('fio', ['--name=first', '--ioengine=nbd', `--uri=${uri}`, ...pattern]);
    await ns.linkDown();
    await waitForPeerState(nodes.a, 'degraded', 20_000);
    await runOk('fio', ['--name=again', '--ioengine=nbd', `--uri=${uri}`, ...pattern]);
    await ns.linkUp();
    const synced = await waitInSync(nodes.a);
    assert.equal(synced.resync.regionsSkippedEqual, 0, 'blocks that differ only in timestamps and their own CRC must not look equal');
    assert.equal((await nodes.a.stop()).code, 0);
    assert.equal((await nodes.b.stop()).code, 0);
    assert.ok(identical(nodes.storeA, nodes.storeB));
  });

  it('a wiped secondary gets a full sync that moves the allocated data, not the volume: zero regions travel as WRITE_ZEROES', async function () {
    nodes = await startFailoverPair(dir, ns);
    await runOk('fio', ['--name=data', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${nodes.socketA}`, '--rw=randwrite', '--bs=64k', '--size=64M', '--io_size=6M', '--refill_buffers']);
    await nodes.b.stop();
    fs.rmSync(nodes.storeB);
    fs.rmSync(`${nodes.storeB}.meta`);
    nodes.b = startNodeB(dir, ns, nodes.port);
    await nodes.b.ready();
    const synced = await waitInSync(nodes.a, 60_000);
    assert.equal(synced.resync.bytesTotal, 64 * 1024 * 1024, 'every region was out of sync');
    assert.ok(synced.resync.bytesSent <= 6 * 1024 * 1024, `sent ${synced.resync.bytesSent} bytes for 6 MiB of data`);
    assert.ok(synced.resync.regionsZero >= 900, `${synced.resync.regionsZero} zero regions`);
    assert.equal((await nodes.a.stop()).code, 0);
    assert.equal((await nodes.b.stop()).code, 0);
    assert.ok(identical(nodes.storeA, nodes.storeB));
  });

  it('a truncated or corrupt metadata file stops the node with a clear error, and nothing is lost', async function () {
    nodes = await startFailoverPair(dir, ns);
    await runOk('fio', ['--name=fill', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${nodes.socketA}`, '--rw=write', '--bs=1M', '--size=4M']);
    await nodes.a.stop();
    await nodes.b.stop();
    const before = fs.readFileSync(nodes.storeB);
    const meta = `${nodes.storeB}.meta`;
    const original = fs.readFileSync(meta);
    const attempt = async (): Promise<{ code: number | null; stderr: string }> => {
      const r = await run(process.execPath, [CLI, 'secondary', '--store', nodes!.storeB, '--listen', '127.0.0.1:1', '--control', path.join(dir, 'x.ctl')], { timeoutMs: 20_000 });
      return { code: r.code, stderr: r.stderr };
    };
    fs.truncateSync(meta, 1000);
    let r = await attempt();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /META_TRUNCATED|truncated/i);
    assert.match(r.stderr, new RegExp(meta.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
    const corrupt = Buffer.from(original);
    for (let i = 0; i < corrupt.length; i += 997) corrupt[i] = corrupt[i]! ^ 0xff;
    fs.writeFileSync(meta, corrupt);
    r = await attempt();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /META_CORRUPT|corrupt/i);
    fs.writeFileSync(meta, Buffer.from('NOTOURS!'.repeat(2048)));
    r = await attempt();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /META_FOREIGN|foreign|not a blockmirror/i);
    fs.unlinkSync(meta);
    r = await attempt();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /META_MISSING|does not exist/i);
    assert.ok(fs.readFileSync(nodes.storeB).equals(before), 'the store was not touched');
    assert.ok(!fs.existsSync(meta), 'no metadata was silently recreated');
  });
});
