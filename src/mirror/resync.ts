/**
 * Background resynchronisation, source side: walks the out-of-sync regions and sends each one to
 * the peer (all-zero regions as WRITE_ZEROES, others as data, or, in checksum mode, data only when
 * the peer's hash differs), a bounded number at a time, within a rate limit, ordered against
 * application writes to the same region by the controller's RangeGate. A region's bit is cleared
 * only once the peer acknowledged it.
 */
import { loadNative, RunRequest, StoreOp } from '../native';
import type { LocalStore } from '../store/local-store';
import type { RangeGate } from '../range-gate';
import type { DirtyRegions } from './dirty-regions';
import { regionDigest } from './region-digest';
import { DataMap } from './data-map';
import { SECTOR_BYTES } from '../wire';
import { SYNC_IO_BYTES_MAX } from '../limits';
import type { Logger } from '../util/log';
import { CHANNEL_WINDOW_BYTES, type ChannelOutcome } from '../peer/resync-channel';

/** How the engine reaches the peer; each callback's `done` gets true once the peer acknowledged. */
export interface ResyncTransport {
  /**
   * `written` runs once `data` has been handed to the kernel (or dropped with a closed link): the
   * engine reuses the buffer from then on, long before the peer's ACK.
   */
  sendData(offsetBytes: number, data: Buffer, written: () => void, done: (ok: boolean) => void): void;
  sendZeroes(offsetBytes: number, lengthBytes: number, done: (ok: boolean) => void): void;
  /** regionDigest of the peer's bytes in the range, or undefined if the peer could not read it. */
  peerHash(offsetBytes: number, lengthBytes: number, done: (digest: bigint | undefined) => void): void;
  isOpen(): boolean;
  /**
   * The resync channel, when one is open (docs/wire-format.md section 8.2): runs of region data are then read, sent and
   * acknowledged by native code as a stream; zero runs found there go as sendZeroes.
   */
  channel?: ResyncChannel | undefined;
}

/** What the engine needs of a resync channel (ResyncChannelSender). */
export interface ResyncChannel {
  readonly isOpen: boolean;
  /** Longest run one channel write may carry. */
  readonly maxRunBytes: number;
  /** Bytes of the runs sent and not yet settled. */
  readonly bytesInFlight: number;
  /**
   * Queue the first `count` runs of `runs` (offset, length pairs) behind the others; `done` gets their
   * outcomes together, in order. The channel keeps `runs` until then: the caller must not change them.
   */
  sendBatch(runs: Float64Array, count: number, done: (outcomes: ChannelOutcome[], problem: string | null) => void): void;
  /** `ready` once every run sent so far has its outcome. */
  whenSettled(ready: () => void): void;
}

export interface ResyncOptions {
  /** Sends (data runs, hole runs or single regions) in flight at once. */
  windowRegions: number;
  /** Bytes per second of region data read and sent; 0 = unlimited. */
  rateBytesPerSecond: number;
  /** Send a region's hash first and its data only if the peer's differs. */
  checksum: boolean;
  /** Persist the bitmap (cleared bits) at most this often. */
  persistIntervalMs: number;
}

export interface ResyncProgress {
  active: boolean;
  checksum: boolean;
  bytesTotal: number;
  bytesDone: number;
  /** Bytes of region data actually sent (zero regions and equal checksums send none). */
  bytesSent: number;
  regionsZero: number;
  regionsSkippedEqual: number;
  bytesPerSecond: number;
  percent: number;
  etaSeconds: number | null;
  startedAt: string | null;
  finishedAt: string | null;
}

/** Largest hole run sent as one WRITE_ZEROES (the secondary zeroes it in one call). */
const HOLE_RUN_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Largest run of adjacent dirty regions with data read and sent as one write (as DRBD merges
 * adjacent resync bits into one request): one read, one message set, one ACK and one write on the
 * secondary instead of one per region. Regions larger than this go alone. Measured (docs/bench.md):
 * runs up to the synchronous I/O limit, read and written on the nodes' JS threads, resynced 64 KiB
 * regions written as 1 MiB blocks 1.25x faster than region by region; longer runs, which go to
 * the store threads, were slower than no runs at all.
 */
export const DATA_RUN_BYTES_MAX = SYNC_IO_BYTES_MAX;
/**
 * Read buffers of the engine, made once and kept across resyncs. A buffer is busy only from the
 * read until the socket has taken its bytes, not until the ACK, so a few cover a window of many
 * regions in flight; few buffers means few fresh pages (a page fault costs about 20 µs on the VMs
 * measured here: 64 region-sized buffers cost a 102 MiB resync about 40 ms of faults).
 */
export const READ_BUFFERS = 8;
/**
 * A batch of channel runs shares one write gate over the bytes from its first run's start to its
 * last run's end, clean regions between them included, as DRBD locks whole resync extents: a
 * resync of scattered regions enters the gate once per batch, not once per run. Measured here
 * (docs/bench.md): per-run gates were about a third of the primary's JavaScript in a 102 MiB
 * resync, and V8 spent about 35 ms compiling them. An application write to a batch's span waits
 * for at most its runs (CHANNEL_BATCH_RUNS_MAX runs within CHANNEL_BATCH_SPAN_BYTES_MAX).
 */
export const CHANNEL_BATCH_RUNS_MAX = 16;
export const CHANNEL_BATCH_SPAN_BYTES_MAX = 8 * 1024 * 1024;
/** With the channel's window full, the engine queues on once this much of it is free again. */
export const CHANNEL_REFILL_BYTES = 2 * 1024 * 1024;

export class ResyncEngine {
  private progress: ResyncProgress = emptyProgress(false);
  /** Idle read buffers (at most READ_BUFFERS are ever made). */
  private readonly readBuffers: Buffer[] = [];
  private readBuffersMade = 0;
  private startedMs = 0;
  /** Where the store may hold data, mapped afresh for each run() (hints: see DataMap). */
  private dataMap: DataMap;
  private running = false;
  private stopRequested = false;
  /** collectDataRuns' request and answer, reused for every batch. */
  private readonly runRequest = new Float64Array(RunRequest.Fields);
  private readonly runPairs = new Float64Array(2 * CHANNEL_BATCH_RUNS_MAX);

  constructor(
    private readonly store: LocalStore,
    private readonly gate: RangeGate,
    private readonly dirty: DirtyRegions,
    private readonly options: ResyncOptions,
    private readonly persistBitmap: () => Promise<void>,
    private readonly log: Logger,
  ) {
    this.dataMap = new DataMap(store);
  }

  get active(): boolean {
    return this.running;
  }

  status(): ResyncProgress {
    const p = { ...this.progress };
    if (this.running) {
      const seconds = (Date.now() - this.startedMs) / 1000;
      p.bytesPerSecond = seconds > 0 ? Math.round(p.bytesDone / seconds) : 0;
      p.percent = p.bytesTotal > 0 ? Math.min(100, (100 * p.bytesDone) / p.bytesTotal) : 100;
      p.etaSeconds = p.bytesPerSecond > 0 ? Math.ceil((p.bytesTotal - p.bytesDone) / p.bytesPerSecond) : null;
    }
    return p;
  }

  /** Ask a running resync to stop after the regions in flight (link lost, shutdown). */
  stop(): void {
    this.stopRequested = true;
  }

  /** Resync every dirty region; resolves true if all were acknowledged (the peer is now in sync). */
  async run(transport: ResyncTransport): Promise<boolean> {
    if (this.running) throw new Error('resync already running');
    this.running = true;
    this.stopRequested = false;
    this.dataMap = new DataMap(this.store);
    this.startedMs = Date.now();
    this.progress = emptyProgress(true);
    this.progress.checksum = this.options.checksum;
    this.progress.bytesTotal = this.dirty.dirtyBytes;
    this.progress.startedAt = new Date().toISOString();
    this.log.info(`resync started: ${this.progress.bytesTotal} bytes in ${this.dirty.count} regions${this.options.checksum ? ' (checksum mode)' : ''}`);
    let inFlight = 0;
    let failed = false;
    let wake: (() => void) | undefined;
    /** When set, wakeLoop wakes the loop only once this holds. */
    let wakeWhen: (() => boolean) | undefined;
    let lastPersistMs = Date.now();
    const wakeLoop = (): void => {
      if (wake === undefined || (wakeWhen !== undefined && !wakeWhen())) return;
      const w = wake;
      wake = undefined;
      wakeWhen = undefined;
      w();
    };
    /** Resolves once `ready()` holds, checked at each wakeLoop: no promise and no turn of the loop per outcome. */
    const until = (ready: () => boolean): Promise<void> | undefined =>
      ready() ? undefined : new Promise<void>((r) => {
        wake = r;
        wakeWhen = ready;
      });
    let tokens = 0;
    let tokensAtMs = Date.now();
    const channel = this.options.checksum ? undefined : transport.channel;
    let channelProblemLogged = false;
    const persistNow = (): void => {
      if (Date.now() - lastPersistMs <= this.options.persistIntervalMs) return;
      lastPersistMs = Date.now();
      void this.persistBitmap().catch((e: Error) => this.log.error(`persisting the resync bitmap failed: ${e.message}`));
    };
    /**
     * A batch of runs on the channel under one write gate, held until every run's outcome is known
     * (and a run found all zero is written as zeroes on the mirror connection).
     */
    const sendOnChannel = (batch: GatedBatch): void => {
      channel!.sendBatch(batch.runs, batch.count, (outcomes, problem) => {
        let zeroRuns = 0;
        const zeroDone = (offsetBytes: number, lengthBytes: number) => (ok: boolean): void => {
          inFlight -= 1;
          if (ok) this.rangeDone(offsetBytes, lengthBytes);
          else failed = true;
          zeroRuns -= 1;
          if (zeroRuns === 0) batch.release();
          wakeLoop();
        };
        for (let i = 0; i < batch.count; i++) {
          const offsetBytes = batch.runs[2 * i]!;
          const lengthBytes = batch.runs[2 * i + 1]!;
          const outcome = outcomes[i];
          if (outcome === 'acked') {
            this.rangeDone(offsetBytes, lengthBytes);
            this.progress.bytesSent += lengthBytes;
          } else if (outcome === 'zero') {
            // Read as zeroes under the gate: WRITE_ZEROES on the mirror connection, still under it.
            this.progress.regionsZero += this.dirty.lastRegion(offsetBytes, lengthBytes) - this.dirty.regionOf(offsetBytes) + 1;
            inFlight += 1;
            zeroRuns += 1;
            transport.sendZeroes(offsetBytes, lengthBytes, zeroDone(offsetBytes, lengthBytes));
          } else {
            failed = true;
          }
        }
        if (failed && problem !== null && !channelProblemLogged) {
          channelProblemLogged = true;
          this.log.warn(`resync channel: ${problem}`);
        }
        if (zeroRuns === 0) batch.release();
        persistNow();
        wakeLoop();
      });
    };
    const fastPath = channel !== undefined && this.options.rateBytesPerSecond === 0;
    try {
      for (let region = this.dirty.nextDirty(0); region >= 0 && !failed; region = this.dirty.nextDirty(region + 1)) {
        if (fastPath && !this.stopRequested && transport.isOpen()) {
          // Most regions: queued in batches, their runs collected by native code; what that leaves (a
          // hole, a region the channel cannot take, a busy gate) goes the long way below.
          let queued = this.queueChannelRuns(channel, region, sendOnChannel);
          // A full window: wait until there is room for a batch or so, then queue on from the same region.
          while (queued.windowFull === true && !failed && !this.stopRequested && transport.isOpen()) {
            await until(() => failed || channel.bytesInFlight <= CHANNEL_WINDOW_BYTES - CHANNEL_REFILL_BYTES);
            queued = this.queueChannelRuns(channel, queued.region, sendOnChannel);
          }
          region = queued.region;
          if (queued.waiting !== undefined) {
            sendOnChannel({ ...queued.waiting.batch, release: await queued.waiting.gate });
            continue;
          }
          if (region < 0) break;
        }
        while (inFlight >= this.options.windowRegions && !failed) await new Promise<void>((r) => (wake = r));
        if (failed || this.stopRequested || !transport.isOpen()) {
          failed = true;
          break;
        }
        const { offsetBytes, lengthBytes } = this.dirty.regionRange(region);
        const hole = this.holeRun(region, offsetBytes);
        if (hole !== undefined) {
          // Dirty regions that are all hole here: one WRITE_ZEROES, nothing read, nothing charged to the rate.
          inFlight += 1;
          const first = region;
          this.resyncHoleRun(transport, first, hole.regions, offsetBytes, hole.lengthBytes, (ok) => {
            inFlight -= 1;
            if (ok) {
              for (let r = first; r < first + hole.regions; r++) this.dirty.clear(r);
              this.progress.bytesDone += hole.lengthBytes;
            } else {
              failed = true;
            }
            wakeLoop();
          });
          region += hole.regions - 1;
          continue;
        }
        // Checksum mode compares region by region, so it sends them one at a time.
        const run = this.options.checksum ? { regions: 1, lengthBytes } : this.dataRun(region, lengthBytes, channel?.maxRunBytes);
        if (this.options.rateBytesPerSecond > 0) {
          for (;;) {
            const now = Date.now();
            tokens = Math.min(this.options.rateBytesPerSecond, tokens + ((now - tokensAtMs) * this.options.rateBytesPerSecond) / 1000);
            tokensAtMs = now;
            if (tokens >= run.lengthBytes || tokens >= this.options.rateBytesPerSecond) break;
            await new Promise((r) => setTimeout(r, Math.ceil(((run.lengthBytes - tokens) * 1000) / this.options.rateBytesPerSecond)));
          }
          tokens -= run.lengthBytes;
        }
        if (channel !== undefined && channel.isOpen && isSectorAligned(offsetBytes, run.lengthBytes)) {
          while (channel.bytesInFlight >= CHANNEL_WINDOW_BYTES && !failed) await new Promise<void>((r) => (wake = r));
          if (failed) break;
          // A run the batches left (after a hole run, or a rate-limited resync): a batch of its own.
          const entered = enterGate(this.gate, offsetBytes, run.lengthBytes);
          const release = typeof entered === 'function' ? entered : await entered;
          sendOnChannel({ runs: Float64Array.of(offsetBytes, run.lengthBytes), count: 1, release });
          region += run.regions - 1;
          continue;
        }
        while (this.readBuffers.length === 0 && this.readBuffersMade >= READ_BUFFERS && !failed) await new Promise<void>((r) => (wake = r));
        if (failed) break;
        const buffer = this.takeReadBuffer();
        let bufferBusy = true;
        const releaseBuffer = (): void => {
          if (!bufferBusy) return;
          bufferBusy = false;
          this.readBuffers.push(buffer);
          wakeLoop();
        };
        inFlight += 1;
        const first = region;
        this.resyncRegion(transport, first, offsetBytes, run.lengthBytes, buffer, releaseBuffer, (ok) => {
          inFlight -= 1;
          releaseBuffer();
          if (ok) {
            for (let r = first; r < first + run.regions; r++) this.dirty.clear(r);
            this.progress.bytesDone += run.lengthBytes;
          } else {
            failed = true;
          }
          persistNow();
          wakeLoop();
        });
        region += run.regions - 1;
      }
      if (channel !== undefined) {
        // The last runs' outcomes; after a failure too, so that no gate is left held (a closed
        // channel fails its runs at once).
        let settled = false;
        channel.whenSettled(() => {
          settled = true;
          wakeLoop();
        });
        while (!settled) await new Promise<void>((r) => (wake = r));
      }
      while (inFlight > 0) await new Promise<void>((r) => (wake = r));
      await this.persistBitmap();
    } finally {
      this.running = false;
      this.progress.active = false;
      this.progress.finishedAt = new Date().toISOString();
    }
    const complete = !failed && this.dirty.count === 0;
    const seconds = (Date.now() - this.startedMs) / 1000;
    this.progress.bytesPerSecond = seconds > 0 ? Math.round(this.progress.bytesDone / seconds) : 0;
    this.progress.percent = complete ? 100 : this.progress.bytesTotal > 0 ? (100 * this.progress.bytesDone) / this.progress.bytesTotal : 0;
    this.log.info(`resync ${complete ? 'finished' : 'interrupted'}: ${this.progress.bytesDone} of ${this.progress.bytesTotal} bytes, ${this.progress.bytesSent} sent, ${seconds.toFixed(1)} s`);
    return complete;
  }

  /**
   * Queues channel runs from dirty region `region` on, in batches under one write gate each, as
   * long as each batch's gate is free and the channel's window has room, without yielding. Returns
   * the first region it left to the caller (-1: none left): a hole run, a region the channel cannot
   * take, a full window (`windowFull`). When a batch's gate was busy the batch is `waiting`:
   * entered, its gate not yet free, and `region` is its last region.
   */
  private queueChannelRuns(
    channel: ResyncChannel, region: number, send: (batch: GatedBatch) => void,
  ): { region: number; windowFull?: boolean; waiting?: { batch: ChannelBatch; gate: Promise<() => void> } } {
    while (region >= 0) {
      if (!channel.isOpen) return { region };
      if (channel.bytesInFlight >= CHANNEL_WINDOW_BYTES) return { region, windowFull: true };
      const batch = this.channelBatch(channel, region);
      if (batch.count === 0) return { region };
      const start = batch.runs[0]!;
      const end = batch.runs[2 * batch.count - 2]! + batch.runs[2 * batch.count - 1]!;
      const lastRegion = this.dirty.lastRegion(start, end - start);
      const entered = enterGate(this.gate, start, end - start);
      if (typeof entered !== 'function') return { region: lastRegion, waiting: { batch, gate: entered } };
      send({ ...batch, release: entered });
      region = this.dirty.nextDirty(lastRegion + 1);
    }
    return { region };
  }

  /**
   * The data runs from dirty region `region` on that go to the channel as one batch: at most
   * CHANNEL_BATCH_RUNS_MAX runs (adjacent dirty regions with data merged up to the channel's longest write)
   * within CHANNEL_BATCH_SPAN_BYTES_MAX of the first, as many as the channel's window has room for
   * (one at least), ending before a region the data map shows as hole (a hole run: the caller's), a
   * run that is not sector-aligned, or the end of the map's window. Collected by native code
   * (collectDataRuns): in JavaScript this loop was most of the primary's JavaScript in a resync of
   * scattered regions, and its optimization cost V8 30-38 ms while the first resync of a process ran.
   */
  private channelBatch(channel: ResyncChannel, region: number): ChannelBatch {
    const budgetBytes = Math.max(0, CHANNEL_WINDOW_BYTES - channel.bytesInFlight);
    return this.collectRuns(region, CHANNEL_BATCH_RUNS_MAX, channel.maxRunBytes, CHANNEL_BATCH_SPAN_BYTES_MAX, budgetBytes);
  }

  /** collectDataRuns from dirty region `region` on, with the data map's window there. */
  private collectRuns(region: number, maxRuns: number, maxRunBytes: number, spanBytesMax: number, budgetBytes: number): ChannelBatch {
    const map = this.dataMap.windowAt(region * this.dirty.regionBytes);
    const q = this.runRequest;
    q[RunRequest.FromRegion] = region;
    q[RunRequest.RegionBytes] = this.dirty.regionBytes;
    q[RunRequest.VolumeBytes] = this.dirty.volumeSizeBytes;
    q[RunRequest.MaxRunBytes] = maxRunBytes;
    q[RunRequest.MaxRuns] = maxRuns;
    q[RunRequest.SpanBytesMax] = spanBytesMax;
    q[RunRequest.BudgetBytes] = budgetBytes;
    q[RunRequest.MapFrom] = map.from;
    q[RunRequest.MapTo] = map.to;
    q[RunRequest.ExtentCount] = map.count;
    const count = loadNative().collectDataRuns(this.dirty.bitmapView, q, map.extents, this.runPairs);
    return { runs: this.runPairs.slice(0, 2 * count), count };
  }

  /**
   * The run of adjacent dirty regions from dirty region `region` (which may hold data) that also may
   * hold data, up to `maxBytes`: read and sent as one write, by the rules the channel's batches follow
   * (collectDataRuns). It ends at a clean region, at a region the store holds as a hole (left to a
   * hole run, so a sparse volume still sends only its data), or at a region that does not end on a
   * sector boundary (the volume's last); where those rules give no run, `region` goes alone.
   */
  private dataRun(region: number, lengthBytes: number, maxBytes = DATA_RUN_BYTES_MAX): { regions: number; lengthBytes: number } {
    const run = this.collectRuns(region, 1, maxBytes, maxBytes, maxBytes);
    if (run.count === 0 || run.runs[0] !== region * this.dirty.regionBytes) return { regions: 1, lengthBytes };
    const runBytes = run.runs[1]!;
    return { regions: this.dirty.lastRegion(run.runs[0]!, runBytes) - region + 1, lengthBytes: runBytes };
  }

  /**
   * One region (or data run) under the write gate: read it into `buffer`, then send zeroes,
   * nothing (equal hash) or data. `releaseBuffer` runs once nothing needs `buffer` any more (at
   * the latest with `done`).
   */
  private resyncRegion(transport: ResyncTransport, region: number, offsetBytes: number, lengthBytes: number, buffer: Buffer, releaseBuffer: () => void, done: (ok: boolean) => void): void {
    this.gate.enter(offsetBytes, lengthBytes, (release) => {
      const finish = (ok: boolean): void => {
        release();
        releaseBuffer();
        done(ok);
      };
      const data = buffer.subarray(0, lengthBytes);
      this.read(data, offsetBytes, (result) => {
        if (result !== 0) {
          this.log.error(`resync: reading region ${region} failed (errno ${-result})`);
          finish(false);
          return;
        }
        const send = (): void => {
          if (isAllZero(data) && offsetBytes % 512 === 0 && lengthBytes % 512 === 0) {
            releaseBuffer();
            this.progress.regionsZero += 1;
            transport.sendZeroes(offsetBytes, lengthBytes, finish);
          } else {
            this.progress.bytesSent += lengthBytes;
            transport.sendData(offsetBytes, data, releaseBuffer, finish);
          }
        };
        if (!this.options.checksum) {
          send();
          return;
        }
        const local = regionDigest(data);
        transport.peerHash(offsetBytes, lengthBytes, (peer) => {
          if (peer === local) {
            this.progress.regionsSkippedEqual += 1;
            finish(true);
          } else {
            send();
          }
        });
      });
    });
  }

  /** A run's regions are in sync now. */
  private rangeDone(offsetBytes: number, lengthBytes: number): void {
    for (let r = this.dirty.regionOf(offsetBytes), last = this.dirty.lastRegion(offsetBytes, lengthBytes); r <= last; r++) this.dirty.clear(r);
    this.progress.bytesDone += lengthBytes;
  }

  /** An idle read buffer, or a new one while fewer than READ_BUFFERS exist. */
  private takeReadBuffer(): Buffer {
    const idle = this.readBuffers.pop();
    if (idle !== undefined) return idle;
    this.readBuffersMade += 1;
    return Buffer.allocUnsafeSlow(Math.max(this.dirty.regionBytes, DATA_RUN_BYTES_MAX));
  }

  /**
   * The run of consecutive dirty regions from `region` that the store holds as a hole (SEEK_DATA),
   * at most HOLE_RUN_BYTES_MAX and sector-aligned, or undefined when `region` may hold data. A
   * full sync of a sparse volume then costs one message per hole, not a read per region.
   */
  private holeRun(region: number, offsetBytes: number): { regions: number; lengthBytes: number } | undefined {
    const limit = Math.min(offsetBytes + HOLE_RUN_BYTES_MAX, this.store.sizeBytes);
    const dataAt = this.dataMap.nextData(offsetBytes, limit);
    let regions = 0;
    let end = offsetBytes;
    for (let r = region; r < this.dirty.regionCount && this.dirty.isDirty(r); r++) {
      const range = this.dirty.regionRange(r);
      const rangeEnd = range.offsetBytes + range.lengthBytes;
      if (rangeEnd > dataAt || rangeEnd % SECTOR_BYTES !== 0) break;
      regions += 1;
      end = rangeEnd;
    }
    return regions > 0 && offsetBytes % SECTOR_BYTES === 0 ? { regions, lengthBytes: end - offsetBytes } : undefined;
  }

  /**
   * One hole run under the write gate: still a hole once writes to it are held back → one
   * WRITE_ZEROES; an application write got there first → its regions one by one, the normal way.
   */
  private resyncHoleRun(transport: ResyncTransport, first: number, regions: number, offsetBytes: number, lengthBytes: number, done: (ok: boolean) => void): void {
    this.gate.enter(offsetBytes, lengthBytes, (release) => {
      if (this.store.nextDataOffset(offsetBytes, offsetBytes + lengthBytes) >= offsetBytes + lengthBytes) {
        this.progress.regionsZero += regions;
        transport.sendZeroes(offsetBytes, lengthBytes, (ok) => {
          release();
          done(ok);
        });
        return;
      }
      release();
      // A buffer of its own: other runs may fall back at the same time (rare, so not pooled).
      const buffer = Buffer.allocUnsafeSlow(this.dirty.regionBytes);
      const next = (r: number): void => {
        if (r === first + regions) return done(true);
        const range = this.dirty.regionRange(r);
        this.resyncRegion(transport, r, range.offsetBytes, range.lengthBytes, buffer, () => undefined, (ok) => (ok ? next(r + 1) : done(false)));
      };
      next(first);
    });
  }

  /** A page-cache read is a copy: done on this thread rather than paying two thread hand-offs; O_DIRECT reads go to the workers. */
  private read(data: Buffer, offsetBytes: number, done: (result: number) => void): void {
    if (this.store.runsSynchronously(data.length, false)) done(this.store.readSync(data, offsetBytes));
    else this.store.submit(StoreOp.Read, data, offsetBytes, data.length, false, done);
  }
}

/** Data runs for the resync channel: the first `count` offset, length pairs of `runs`. */
interface ChannelBatch {
  runs: Float64Array;
  count: number;
}

/** Data runs the engine holds one write gate for, over all of them, while they are on the resync channel. */
interface GatedBatch extends ChannelBatch {
  release: () => void;
}

/** The gate's release function when the range is free now, else a promise of it. */
function enterGate(gate: RangeGate, offsetBytes: number, lengthBytes: number): (() => void) | Promise<() => void> {
  let release: (() => void) | undefined;
  let resolveLater: ((release: () => void) => void) | undefined;
  gate.enter(offsetBytes, lengthBytes, (r) => {
    if (resolveLater !== undefined) resolveLater(r);
    else release = r;
  });
  return release ?? new Promise<() => void>((resolve) => (resolveLater = resolve));
}

function isSectorAligned(offsetBytes: number, lengthBytes: number): boolean {
  return offsetBytes % SECTOR_BYTES === 0 && lengthBytes % SECTOR_BYTES === 0;
}

function emptyProgress(active: boolean): ResyncProgress {
  return {
    active,
    checksum: false,
    bytesTotal: 0,
    bytesDone: 0,
    bytesSent: 0,
    regionsZero: 0,
    regionsSkippedEqual: 0,
    bytesPerSecond: 0,
    percent: active ? 0 : 100,
    etaSeconds: null,
    startedAt: null,
    finishedAt: null,
  };
}

let zeroes: Buffer = Buffer.alloc(0);

/** True if every byte is zero: one memcmp against a shared zero buffer. */
export function isAllZero(buf: Buffer): boolean {
  if (zeroes.length < buf.length) zeroes = Buffer.alloc(buf.length);
  return buf.equals(zeroes.subarray(0, buf.length));
}
