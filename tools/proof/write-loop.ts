/**
 * The writer's engine: keeps up to queue-depth self-describing block writes in flight at random
 * block-aligned offsets (no two in flight on the same block), logs every acknowledgement
 * durably before doing anything else with it, and stops cleanly when told to or when the
 * server disappears.
 */
import { randomBytes } from 'node:crypto';
import { AckLogWriter, type AckedWrite } from './ack-log';
import { NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NbdClient, NbdConnectionLostError, NbdReplyError } from './nbd-client';
import { buildProofBlock } from './proof-block';

/** How long a stopping writer waits for the writes in flight before giving up on the server. */
export const STOP_DRAIN_TIMEOUT_MS = 30_000;
/** Random picks tried before falling back to a linear scan for a block with no write in flight. */
const OFFSET_PICK_ATTEMPTS = 16;

export interface WriteLoopOptions {
  blockBytes: number;
  queueDepth: number;
  /** Bytes from offset 0 the writer may touch. */
  areaBytes: number;
  /** Half of the writes go to the first regionBytes of the area, so blocks get overwritten often (0: off). */
  regionBytes: number;
  /** Percentage of writes sent with FUA (only if the server offers FUA). */
  fuaPercent: number;
  /** A FLUSH after every this many writes (0: never; only if the server offers FLUSH). */
  flushEveryWrites: number;
  runId: bigint;
}

/** How a run ended. */
export type WriteLoopEnd = { kind: 'stopped' } | { kind: 'server-lost'; reason: string } | { kind: 'server-error'; reason: string } | { kind: 'log-failed'; reason: string };

export interface WriteLoopResult {
  end: WriteLoopEnd;
  acknowledgedWrites: number;
  acknowledgedFuaWrites: number;
  acknowledgedFlushes: number;
  sentWrites: number;
  /** Writes sent but never acknowledged when the run ended (their blocks may or may not hold them). */
  unacknowledgedWrites: number;
}

/** A fresh random 64-bit run id (never 0). */
export function newRunId(): bigint {
  const id = randomBytes(8).readBigUInt64LE(0);
  return id === 0n ? 1n : id;
}

/** Runs writes until stop() is called or the server fails; resolves with the totals. */
export class WriteLoop {
  private nextSeq = 1n;
  private readonly inFlightOffsets = new Set<number>();
  private ackBatch: Omit<AckedWrite, 'index'>[] = [];
  private flushBatch: number[] = [];
  private drainScheduled = false;
  private stopping = false;
  private ended: WriteLoopEnd | undefined;
  /** Set when the end was requested and waits one turn for replies already parsed. */
  private endDeferred = false;
  private writesSinceFlush = 0;
  private sentWrites = 0;
  private ackedFua = 0;
  private ackedFlushes = 0;
  private stopTimer: NodeJS.Timeout | undefined;
  private finish: ((result: WriteLoopResult) => void) | undefined;
  private readonly fuaAllowed: boolean;
  private readonly flushAllowed: boolean;
  private readonly areaBlocks: number;
  private readonly regionBlocks: number;

  constructor(
    private readonly client: NbdClient,
    private readonly log: AckLogWriter,
    private readonly options: WriteLoopOptions,
  ) {
    this.fuaAllowed = (client.transmissionFlags & NBD_FLAG_SEND_FUA) !== 0 && options.fuaPercent > 0;
    this.flushAllowed = (client.transmissionFlags & NBD_FLAG_SEND_FLUSH) !== 0 && options.flushEveryWrites > 0;
    this.areaBlocks = Math.floor(options.areaBytes / options.blockBytes);
    this.regionBlocks = Math.min(this.areaBlocks, Math.floor(options.regionBytes / options.blockBytes));
  }

  /** Starts writing; the promise resolves once the loop has ended and the log holds every acknowledgement. */
  run(): Promise<WriteLoopResult> {
    const done = new Promise<WriteLoopResult>((resolve) => (this.finish = resolve));
    this.client.onLost = (error) => this.end({ kind: 'server-lost', reason: error.message });
    this.refill();
    return done;
  }

  /** Asks the loop to stop: no new writes, wait for the ones in flight (bounded), then end. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stopTimer = setTimeout(
      () => this.end({ kind: 'server-lost', reason: `writes still in flight ${STOP_DRAIN_TIMEOUT_MS} ms after stopping` }),
      STOP_DRAIN_TIMEOUT_MS,
    );
    this.maybeFinishStopping();
  }

  /** Acknowledgements logged so far (durable). */
  get acknowledgedWrites(): number {
    return this.log.writeCount;
  }

  /** Picks a random block-aligned offset with no write in flight (hot region half of the time). */
  private pickOffset(): number {
    for (let attempt = 0; attempt < OFFSET_PICK_ATTEMPTS; attempt++) {
      const useRegion = this.regionBlocks > 0 && Math.random() < 0.5;
      const block = Math.floor(Math.random() * (useRegion ? this.regionBlocks : this.areaBlocks));
      const offset = block * this.options.blockBytes;
      if (!this.inFlightOffsets.has(offset)) return offset;
    }
    const start = Math.floor(Math.random() * this.areaBlocks);
    for (let i = 0; i < this.areaBlocks; i++) {
      const offset = ((start + i) % this.areaBlocks) * this.options.blockBytes;
      if (!this.inFlightOffsets.has(offset)) return offset;
    }
    throw new Error('every block has a write in flight (area too small for the queue depth)');
  }

  /** Tops the queue up to queue-depth requests; only called when no acknowledgement waits to be logged. */
  private refill(): void {
    if (this.stopping || this.endDeferred || this.ended !== undefined) return;
    this.client.corked(() => {
      while (this.client.inFlight < this.options.queueDepth && !this.client.lost) {
        if (this.flushAllowed && this.writesSinceFlush >= this.options.flushEveryWrites) this.sendFlush();
        else this.sendWrite();
      }
    });
  }

  /** Sends one block write and arranges for its acknowledgement to be logged. */
  private sendWrite(): void {
    const seq = this.nextSeq++;
    const offset = this.pickOffset();
    const fua = this.fuaAllowed && Math.random() * 100 < this.options.fuaPercent;
    const block = buildProofBlock(this.options.runId, seq, offset, this.options.blockBytes);
    this.inFlightOffsets.add(offset);
    this.sentWrites++;
    this.writesSinceFlush++;
    this.client.write(offset, block, fua).then(
      () => {
        this.inFlightOffsets.delete(offset);
        if (this.ended !== undefined) return; // too late to log: the run already ended and closed the log
        this.ackBatch.push({ seq, offset, lengthBytes: block.length, fua });
        this.scheduleDrain();
      },
      (error: Error) => this.onRequestFailed(error),
    );
  }

  /** Sends a FLUSH covering every write logged so far. */
  private sendFlush(): void {
    this.writesSinceFlush = 0;
    const covered = this.log.writeCount; // the batch is empty here: refill runs only after a drain
    this.client.flush().then(
      () => {
        if (this.ended !== undefined) return;
        this.flushBatch.push(covered);
        this.scheduleDrain();
      },
      (error: Error) => this.onRequestFailed(error),
    );
  }

  /** A request failed: either the connection is gone or the server answered with an error. */
  private onRequestFailed(error: Error): void {
    if (error instanceof NbdReplyError) this.end({ kind: 'server-error', reason: error.message });
    else if (error instanceof NbdConnectionLostError) this.end({ kind: 'server-lost', reason: error.message });
    else this.end({ kind: 'server-error', reason: error.message });
  }

  /** Coalesces every acknowledgement of this event-loop turn into one log append + fdatasync. */
  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      if (this.ended !== undefined) return;
      if (!this.drainBatch()) return;
      this.refill();
      this.maybeFinishStopping();
    });
  }

  /** Writes the pending batch to the log; returns false (and ends the loop) if the log cannot be written. */
  private drainBatch(): boolean {
    const writes = this.ackBatch;
    const flushes = this.flushBatch;
    this.ackBatch = [];
    this.flushBatch = [];
    try {
      this.log.appendBatch(writes, flushes);
    } catch (error) {
      this.end({ kind: 'log-failed', reason: (error as Error).message }, false);
      return false;
    }
    for (const w of writes) if (w.fua) this.ackedFua++;
    this.ackedFlushes += flushes.length;
    return true;
  }

  /** When stopping, ends the loop once nothing is in flight any more. */
  private maybeFinishStopping(): void {
    if (this.stopping && this.client.inFlight === 0 && this.ackBatch.length === 0 && this.flushBatch.length === 0) {
      this.end({ kind: 'stopped' });
    }
  }

  /** Ends the run once: logs the acknowledgements already received, then reports. */
  private end(end: WriteLoopEnd, drainFirst = true): void {
    if (this.ended !== undefined) return;
    // Replies parsed in the same turn resolve their promises in microtasks; let them land in the batch first.
    if (drainFirst && !this.endDeferred) {
      this.endDeferred = true;
      queueMicrotask(() => setImmediate(() => this.endNow(end)));
      return;
    }
    this.endNow(end, drainFirst);
  }

  /** The actual end: final drain, then resolve run(). */
  private endNow(end: WriteLoopEnd, drainFirst = true): void {
    if (this.ended !== undefined) return;
    if (drainFirst && (this.ackBatch.length > 0 || this.flushBatch.length > 0) && !this.drainBatch()) return;
    this.ended = end;
    if (this.stopTimer !== undefined) clearTimeout(this.stopTimer);
    this.finish?.({
      end,
      acknowledgedWrites: this.log.writeCount,
      acknowledgedFuaWrites: this.ackedFua,
      acknowledgedFlushes: this.ackedFlushes,
      sentWrites: this.sentWrites,
      unacknowledgedWrites: this.inFlightOffsets.size,
    });
  }
}
