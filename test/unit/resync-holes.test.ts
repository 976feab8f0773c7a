/**
 * The resync engine sends dirty regions the primary's store holds as holes as one WRITE_ZEROES per
 * run, reading nothing; a run that gained data before the write gate held it back (an application
 * write got there first) is sent region by region, the normal way. Adjacent dirty regions with
 * data go as one write of up to DATA_RUN_BYTES_MAX. A fake store says where the data is; a fake
 * transport records what would go to the peer and acknowledges it.
 */
import * as assert from 'node:assert/strict';
import { CHANNEL_BATCH_RUNS_MAX, CHANNEL_BATCH_SPAN_BYTES_MAX, DATA_RUN_BYTES_MAX, READ_BUFFERS, ResyncEngine, type ResyncChannel, type ResyncTransport } from '../../src/mirror/resync';
import { CHANNEL_WINDOW_BYTES, type ChannelOutcome } from '../../src/peer/resync-channel';
import { DirtyRegions } from '../../src/mirror/dirty-regions';
import { RangeGate } from '../../src/range-gate';
import type { LocalStore } from '../../src/store/local-store';
import type { Logger } from '../../src/util/log';

/** One run as the fake channels see it. */
interface ChannelRun {
  offsetBytes: number;
  lengthBytes: number;
}

/** A fake channel that settles runs one by one. */
interface PerRunChannel {
  readonly isOpen: boolean;
  readonly maxRunBytes: number;
  readonly bytesInFlight: number;
  send(run: ChannelRun, done: (outcome: ChannelOutcome, problem: string | null) => void): void;
  whenSettled(ready: () => void): void;
}

/** The engine's view of a per-run fake: sendBatch hands each run to `send` and gathers the batch's outcomes. */
function batched(fake: PerRunChannel): ResyncChannel {
  return {
    get isOpen() {
      return fake.isOpen;
    },
    maxRunBytes: fake.maxRunBytes,
    get bytesInFlight() {
      return fake.bytesInFlight;
    },
    sendBatch(runs, count, done) {
      const outcomes: ChannelOutcome[] = [];
      let problem: string | null = null;
      let left = count;
      for (let i = 0; i < count; i++) {
        fake.send({ offsetBytes: runs[2 * i]!, lengthBytes: runs[2 * i + 1]! }, (outcome, p) => {
          outcomes[i] = outcome;
          problem ??= p;
          if (--left === 0) done(outcomes, problem);
        });
      }
    },
    whenSettled: (ready) => fake.whenSettled(ready),
  };
}

const REGION = 64 * 1024;
const REGIONS = 16;
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** The extents of [offsetBytes, endBytes) as FIEMAP answers them: one per region with data, clipped to the range. */
function extentsOf(dataRegions: Set<number>, regionBytes: number, offsetBytes: number, endBytes: number, out: Float64Array): number {
  let count = 0;
  for (let r = Math.floor(offsetBytes / regionBytes); r * regionBytes < endBytes && count < out.length / 2; r++) {
    if (!dataRegions.has(r)) continue;
    out[2 * count] = Math.max(offsetBytes, r * regionBytes);
    out[2 * count + 1] = Math.min(endBytes, (r + 1) * regionBytes);
    count++;
  }
  return count;
}

/** A page-cache store of `regions` regions whose only data is in the regions listed: region r holds bytes r + 1. */
function fakeStore(dataRegions: Set<number>, regions = REGIONS, options: { mapped: boolean } = { mapped: true }): { store: LocalStore; reads: number[]; seeks: { count: number } } {
  const reads: number[] = [];
  const seeks = { count: 0 };
  const store = {
    sizeBytes: regions * REGION,
    runsSynchronously: () => true,
    // As FIEMAP answers: one extent per region with data, clipped to the range. Unmapped (-1), the
    // engine's DataMap asks nextDataOffset (SEEK_DATA) every time and takes the store as data throughout.
    dataExtents: (offsetBytes: number, endBytes: number, out: Float64Array): number =>
      options.mapped ? extentsOf(dataRegions, REGION, offsetBytes, endBytes, out) : -1,
    nextDataOffset(offsetBytes: number, endBytes: number): number {
      seeks.count += 1;
      for (let r = Math.floor(offsetBytes / REGION); r * REGION < endBytes; r++) {
        if (dataRegions.has(r)) return Math.max(offsetBytes, r * REGION);
      }
      return endBytes;
    },
    readSync(buf: Buffer, offsetBytes: number): number {
      for (let at = 0; at < buf.length; at += REGION) {
        const region = (offsetBytes + at) / REGION;
        reads.push(region);
        buf.fill(dataRegions.has(region) ? region + 1 : 0, at, at + REGION);
      }
      return 0;
    },
  };
  return { store: store as unknown as LocalStore, reads, seeks };
}

/** Regions 0..n-1. */
const all = (n: number): Set<number> => new Set(Array.from({ length: n }, (_, i) => i));

function recordingTransport(): { transport: ResyncTransport; sent: string[]; contentOk: { value: boolean } } {
  const sent: string[] = [];
  const contentOk = { value: true };
  const transport: ResyncTransport = {
    sendData: (offsetBytes, data, written, done) => {
      sent.push(`data ${offsetBytes / REGION}+${data.length / REGION}`);
      // Every region of a run carries its own bytes, in place.
      for (let at = 0; at < data.length; at += REGION) {
        const region = (offsetBytes + at) / REGION;
        if (!data.subarray(at, at + REGION).every((b) => b === region + 1)) contentOk.value = false;
      }
      written();
      setImmediate(() => done(true));
    },
    sendZeroes: (offsetBytes, lengthBytes, done) => {
      sent.push(`zeroes ${offsetBytes / REGION}+${lengthBytes / REGION}`);
      setImmediate(() => done(true));
    },
    peerHash: (_offset, _length, done) => setImmediate(() => done(undefined)),
    isOpen: () => true,
  };
  return { transport, sent, contentOk };
}

function engineFor(store: LocalStore, dirty: DirtyRegions, checksum = false): ResyncEngine {
  return new ResyncEngine(store, new RangeGate(), dirty, { windowRegions: 4, rateBytesPerSecond: 0, checksum, persistIntervalMs: 1000 }, async () => undefined, quiet);
}

describe('resync: hole runs', () => {
  it('sends each run of dirty hole regions as one WRITE_ZEROES and reads only the regions with data', async () => {
    const { store, reads } = fakeStore(new Set([5, 11]));
    const dirty = new DirtyRegions(REGIONS * REGION, REGION);
    dirty.markAll();
    dirty.clear(8); // not dirty: splits the hole run after region 5
    const { transport, sent } = recordingTransport();
    const engine = engineFor(store, dirty);
    assert.equal(await engine.run(transport), true);
    assert.deepEqual(sent, ['zeroes 0+5', 'data 5+1', 'zeroes 6+2', 'zeroes 9+2', 'data 11+1', 'zeroes 12+4']);
    assert.deepEqual(reads, [5, 11], 'holes are not read');
    assert.equal(dirty.count, 0);
    const progress = engine.status();
    assert.equal(progress.bytesDone, (REGIONS - 1) * REGION);
    assert.equal(progress.bytesSent, 2 * REGION);
    assert.equal(progress.regionsZero, REGIONS - 3);
  });

  it('resends a run region by region when data appeared in it before the gate held writes back', async () => {
    const data = new Set<number>();
    const { store, reads } = fakeStore(data);
    const original = store.dataExtents.bind(store);
    // The first look (the extent map) sees all hole; then an application write lands in region 2 before the run is sent.
    (store as { dataExtents: LocalStore['dataExtents'] }).dataExtents = (offset, end, out) => {
      const answer = original(offset, end, out);
      data.add(2);
      return answer;
    };
    const dirty = new DirtyRegions(4 * REGION, REGION);
    dirty.markAll();
    const { transport, sent } = recordingTransport();
    assert.equal(await engineFor(store, dirty).run(transport), true);
    assert.deepEqual(sent, ['zeroes 0+1', 'zeroes 1+1', 'data 2+1', 'zeroes 3+1']);
    assert.deepEqual(reads, [0, 1, 2, 3], 'the fallback reads every region of the run');
    assert.equal(dirty.count, 0);
  });
});

describe('resync: data runs', () => {

  it('sends adjacent dirty regions with data as one write of at most DATA_RUN_BYTES_MAX, split at clean regions and holes', async () => {
    assert.equal(DATA_RUN_BYTES_MAX, 2 * REGION, 'this test is written for runs of two 64 KiB regions');
    const regions = 11;
    const data = all(regions);
    data.delete(7); // a hole inside dirty data: its own WRITE_ZEROES, the data around it in runs
    const { store } = fakeStore(data, regions);
    const dirty = new DirtyRegions(regions * REGION, REGION);
    dirty.markAll();
    dirty.clear(4); // clean: ends the run before it
    const { transport, sent, contentOk } = recordingTransport();
    const engine = engineFor(store, dirty);
    assert.equal(await engine.run(transport), true);
    assert.deepEqual(sent, ['data 0+2', 'data 2+2', 'data 5+2', 'zeroes 7+1', 'data 8+2', 'data 10+1']);
    assert.ok(contentOk.value, 'each region of a run carries its own bytes');
    assert.equal(dirty.count, 0);
    const progress = engine.status();
    assert.equal(progress.bytesDone, (regions - 1) * REGION);
    assert.equal(progress.bytesSent, (regions - 2) * REGION);
  });

  it('leaves a run dirty when its send fails, and sends region by region in checksum mode', async () => {
    const { store } = fakeStore(all(REGIONS));
    const dirty = new DirtyRegions(REGIONS * REGION, REGION);
    dirty.markAll();
    const { transport } = recordingTransport();
    const lengths: number[] = [];
    const failing: ResyncTransport = { ...transport, sendData: (_o, d, written, done) => { lengths.push(d.length); written(); setImmediate(() => done(false)); } };
    assert.equal(await engineFor(store, dirty).run(failing), false);
    assert.ok(lengths.length >= 1 && lengths.every((n) => n === DATA_RUN_BYTES_MAX), `runs sent: ${lengths.join(', ')}`);
    assert.equal(dirty.count, REGIONS, 'nothing cleared: every failed run stays out of sync');

    const hashed = recordingTransport();
    assert.equal(await engineFor(store, dirty, true).run(hashed.transport), true);
    assert.equal(hashed.sent.length, REGIONS, 'checksum mode: one hash and one send per region');
    assert.ok(hashed.sent.every((line) => /^data \d+\+1$/.test(line)));
  });

  it('reuses a few read buffers once the socket has taken their bytes, never one whose bytes are still unsent', async () => {
    const regions = 64;
    const data = new Set(Array.from({ length: regions }, (_, i) => i).filter((i) => i % 3 === 0)); // no adjacent data: one send per region
    const { store } = fakeStore(data, regions);
    const dirty = new DirtyRegions(regions * REGION, REGION);
    for (const r of data) dirty.mark(r * REGION, REGION);
    const memories = new Set<ArrayBufferLike>();
    let intact = true;
    let sent = 0;
    const transport: ResyncTransport = {
      sendData: (offsetBytes, bytes, written, done) => {
        memories.add(bytes.buffer);
        sent += 1;
        // The "socket" takes the bytes a turn later, checking them then; the ACK comes much later.
        setImmediate(() => {
          if (!bytes.every((b) => b === offsetBytes / REGION + 1)) intact = false;
          written();
        });
        setTimeout(() => done(true), 20);
      },
      sendZeroes: (_o, _l, done) => setImmediate(() => done(true)),
      peerHash: (_o, _l, done) => setImmediate(() => done(undefined)),
      isOpen: () => true,
    };
    const engine = new ResyncEngine(store, new RangeGate(), dirty, { windowRegions: 64, rateBytesPerSecond: 0, checksum: false, persistIntervalMs: 1000 }, async () => undefined, quiet);
    assert.equal(await engine.run(transport), true);
    assert.equal(sent, data.size);
    assert.ok(intact, 'no buffer was reused before its bytes were taken');
    assert.ok(memories.size <= READ_BUFFERS, `${memories.size} buffers for ${sent} regions in flight at once`);
    assert.equal(dirty.count, 0);
  });
});

describe('resync: on the resync channel', () => {
  /** A channel that records runs and settles them in order, a few at a time, a turn later. */
  function fakeChannel(maxRunBytes: number): { channel: PerRunChannel; runs: ChannelRun[]; peakInFlight: { value: number } } {
    const runs: ChannelRun[] = [];
    const waiting: { run: ChannelRun; done: (outcome: ChannelOutcome, problem: string | null) => void }[] = [];
    const settledWaiters: (() => void)[] = [];
    const peakInFlight = { value: 0 };
    let inFlight = 0;
    const settleSome = (): void => {
      for (const { run, done } of waiting.splice(0, 3)) {
        inFlight -= run.lengthBytes;
        done('acked', null);
      }
      if (waiting.length > 0) setImmediate(settleSome);
      else for (const ready of settledWaiters.splice(0)) ready();
    };
    const channel: PerRunChannel = {
      isOpen: true,
      maxRunBytes,
      get bytesInFlight() {
        return inFlight;
      },
      send(run, done) {
        runs.push({ offsetBytes: run.offsetBytes, lengthBytes: run.lengthBytes });
        inFlight += run.lengthBytes;
        peakInFlight.value = Math.max(peakInFlight.value, inFlight);
        if (waiting.push({ run, done }) === 1) setImmediate(settleSome);
      },
      whenSettled(ready) {
        if (waiting.length === 0) ready();
        else settledWaiters.push(ready);
      },
    };
    return { channel, runs, peakInFlight };
  }

  it('queues every run with data in order, holes as WRITE_ZEROES, keeps to the window, and waits for a busy gate', async () => {
    // More data than one window holds, so the engine has to wait for outcomes on the way.
    const regionBytes = 1024 * 1024;
    const regions = Math.ceil((3 * CHANNEL_WINDOW_BYTES) / regionBytes) + 8;
    const holes = new Set([3, 4, 20]);
    const data = new Set(Array.from({ length: regions }, (_, i) => i).filter((i) => !holes.has(i)));
    const store = {
      sizeBytes: regions * regionBytes,
      runsSynchronously: () => true,
      dataExtents: (offsetBytes: number, endBytes: number, out: Float64Array): number => extentsOf(data, regionBytes, offsetBytes, endBytes, out),
      nextDataOffset(offsetBytes: number, endBytes: number): number {
        for (let r = Math.floor(offsetBytes / regionBytes); r * regionBytes < endBytes; r++) if (data.has(r)) return Math.max(offsetBytes, r * regionBytes);
        return endBytes;
      },
      readSync: () => 0,
    } as unknown as LocalStore;
    const dirty = new DirtyRegions(regions * regionBytes, regionBytes);
    dirty.markAll();
    dirty.clear(10); // clean: not sent
    const gate = new RangeGate();
    // An application write holds region 30 when the resync starts, and lets go a little later.
    let appRelease: (() => void) | undefined;
    gate.enter(30 * regionBytes, regionBytes, (release) => (appRelease = release));
    let appDone = false;
    setTimeout(() => {
      appDone = true;
      appRelease!();
    }, 30);
    const { transport, sent } = recordingTransport();
    const { channel, runs, peakInFlight } = fakeChannel(regionBytes);
    const sentAfterApp: boolean[] = [];
    const recording: PerRunChannel = {
      ...channel,
      get isOpen() {
        return channel.isOpen;
      },
      get bytesInFlight() {
        return channel.bytesInFlight;
      },
      send(run, done) {
        if (run.offsetBytes === 30 * regionBytes) sentAfterApp.push(appDone);
        channel.send(run, done);
      },
    };
    const engine = new ResyncEngine(store, gate, dirty, { windowRegions: 4, rateBytesPerSecond: 0, checksum: false, persistIntervalMs: 1000 }, async () => undefined, quiet);
    assert.equal(await engine.run({ ...transport, channel: batched(recording) }), true);
    const expected = Array.from({ length: regions }, (_, i) => i).filter((i) => i !== 10 && !holes.has(i));
    assert.deepEqual(runs.map((r) => r.offsetBytes / regionBytes), expected, 'every dirty region with data, once, in order');
    assert.ok(runs.every((r) => r.lengthBytes === regionBytes));
    const r = regionBytes / REGION; // recordingTransport counts in 64 KiB units
    assert.deepEqual(sent, [`zeroes ${3 * r}+${2 * r}`, `zeroes ${20 * r}+${r}`], 'the holes, as WRITE_ZEROES on the mirror connection');
    assert.deepEqual(sentAfterApp, [true], 'the region an application write held went only after it let go');
    assert.ok(peakInFlight.value <= CHANNEL_WINDOW_BYTES + regionBytes, `at most a window in flight (peak ${peakInFlight.value} bytes)`);
    assert.equal(dirty.count, 0);
  });

  it('a store that cannot map its extents is taken as data throughout: every dirty region goes to the channel (its sender finds the zeroes)', async () => {
    const { store } = fakeStore(new Set([2]), 8, { mapped: false });
    const dirty = new DirtyRegions(8 * REGION, REGION);
    dirty.markAll();
    const { channel, runs } = fakeChannel(DATA_RUN_BYTES_MAX);
    const { transport, sent } = recordingTransport();
    const engine = new ResyncEngine(store, new RangeGate(), dirty, { windowRegions: 4, rateBytesPerSecond: 0, checksum: false, persistIntervalMs: 1000 }, async () => undefined, quiet);
    assert.equal(await engine.run({ ...transport, channel: batched(channel) }), true);
    const perRun = DATA_RUN_BYTES_MAX / REGION;
    const expected = Array.from({ length: 8 / perRun }, (_, i) => [i * perRun, perRun]);
    assert.deepEqual(runs.map((r) => [r.offsetBytes / REGION, r.lengthBytes / REGION]), expected, 'all eight regions in runs of DATA_RUN_BYTES_MAX, holes included');
    assert.deepEqual(sent, [], 'nothing on the mirror connection');
    assert.equal(dirty.count, 0);
  });

  it('a run the channel finds all zero goes as WRITE_ZEROES on the mirror connection, its batch\'s gate held until that is acknowledged', async () => {
    const { store } = fakeStore(all(8), 8);
    const dirty = new DirtyRegions(8 * REGION, REGION);
    for (const r of [0, 2, 4, 6]) dirty.mark(r * REGION, 1);
    const gate = new RangeGate();
    const zeroAt = new Set([2 * REGION, 6 * REGION]); // these runs read as zeroes
    const channel: PerRunChannel = {
      isOpen: true,
      maxRunBytes: DATA_RUN_BYTES_MAX,
      bytesInFlight: 0,
      send: (run, done) => setImmediate(() => done(zeroAt.has(run.offsetBytes) ? 'zero' : 'acked', null)),
      whenSettled: (ready) => setImmediate(ready),
    };
    const { transport, sent } = recordingTransport();
    const zeroesWhileGated: boolean[] = [];
    const watching: ResyncTransport = {
      ...transport,
      sendZeroes: (offsetBytes, lengthBytes, done) => {
        zeroesWhileGated.push(gate.runningCount > 0);
        transport.sendZeroes(offsetBytes, lengthBytes, done);
      },
    };
    const engine = new ResyncEngine(store, gate, dirty, { windowRegions: 4, rateBytesPerSecond: 0, checksum: false, persistIntervalMs: 1000 }, async () => undefined, quiet);
    assert.equal(await engine.run({ ...watching, channel: batched(channel) }), true);
    assert.deepEqual(sent, ['zeroes 2+1', 'zeroes 6+1']);
    assert.deepEqual(zeroesWhileGated, [true, true], 'the batch\'s gate is held while its zero runs are written');
    assert.equal(gate.runningCount, 0, 'and released afterwards');
    const progress = engine.status();
    assert.equal(progress.regionsZero, 2);
    assert.equal(progress.bytesSent, 2 * REGION, 'only the runs with data count as sent');
    assert.equal(progress.bytesDone, 4 * REGION);
    assert.equal(dirty.count, 0);
  });

  it('takes one write gate per batch of runs, over the batch\'s whole span: an application write between its runs waits for every run of it, one beyond it does not', async () => {
    // Every other region dirty, all with data: runs of one region, CHANNEL_BATCH_RUNS_MAX to a batch.
    const regions = 4 * CHANNEL_BATCH_RUNS_MAX;
    assert.ok(2 * CHANNEL_BATCH_RUNS_MAX * REGION <= CHANNEL_BATCH_SPAN_BYTES_MAX, 'a batch here is bounded by its run count');
    const { store } = fakeStore(new Set(Array.from({ length: regions }, (_, i) => i)), regions);
    const dirty = new DirtyRegions(regions * REGION, REGION);
    for (let r = 0; r < regions; r += 2) dirty.mark(r * REGION, 1);
    const gate = new RangeGate();
    const spans: string[] = [];
    const enter = gate.enter.bind(gate);
    gate.enter = (offsetBytes, lengthBytes, start) => {
      spans.push(`${offsetBytes / REGION}+${lengthBytes / REGION}`);
      enter(offsetBytes, lengthBytes, start);
    };
    // A channel that settles runs only when told to.
    const queued: (() => void)[] = [];
    let inFlight = 0;
    const channel: PerRunChannel = {
      isOpen: true,
      maxRunBytes: DATA_RUN_BYTES_MAX,
      get bytesInFlight() {
        return inFlight;
      },
      send(run, done) {
        inFlight += run.lengthBytes;
        queued.push(() => {
          inFlight -= run.lengthBytes;
          done('acked', null);
        });
      },
      whenSettled(ready) {
        const poll = (): void => void (queued.length === 0 ? ready() : setImmediate(poll));
        poll();
      },
    };
    const { transport } = recordingTransport();
    const engine = new ResyncEngine(store, gate, dirty, { windowRegions: 4, rateBytesPerSecond: 0, checksum: false, persistIntervalMs: 1000 }, async () => undefined, quiet);
    const finished = engine.run({ ...transport, channel: batched(channel) });
    await new Promise((r) => setImmediate(r));
    const lastOfFirst = 2 * (CHANNEL_BATCH_RUNS_MAX - 1);
    assert.deepEqual(spans, [`0+${lastOfFirst + 1}`, `${lastOfFirst + 2}+${lastOfFirst + 1}`], 'two batches, one gate each, from the first run\'s start to the last run\'s end');
    assert.equal(queued.length, regions / 2, 'every run is on the channel');
    let between = false;
    let beyond = false;
    enter(1 * REGION, REGION, (release) => {
      between = true;
      release();
    }); // clean region 1, inside the first batch's span
    enter((regions - 1) * REGION, REGION, (release) => {
      beyond = true;
      release();
    }); // clean, past both spans
    assert.equal(beyond, true, 'a write outside every batch\'s span runs at once');
    for (let i = 0; i < CHANNEL_BATCH_RUNS_MAX - 1; i++) queued.shift()!();
    assert.equal(between, false, 'a write in a batch\'s span waits while a run of it is on the channel');
    queued.shift()!();
    assert.equal(between, true, 'and runs once the batch\'s last run is acknowledged');
    while (queued.length > 0) queued.shift()!();
    assert.equal(await finished, true);
    assert.equal(dirty.count, 0);
  });
});
