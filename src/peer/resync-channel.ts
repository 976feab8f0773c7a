/**
 * The resync channel (docs/wire-format.md section 8.2): a second TCP connection from a primary to its
 * secondary that carries only a resync's region data, moved by native code on a pool thread at both
 * ends (native/resync_channel.h), so a region costs the JS threads only its bookkeeping. The mirror
 * connection keeps everything else, application writes included; the primary's write gate keeps a
 * region's application writes waiting until the region's resync write is acknowledged, so the two
 * connections never carry writes to the same bytes at the same time.
 *
 * Opening it: the primary announces a random 64-bit token on the mirror connection (RESYNC_CHANNEL,
 * which the secondary ACKs), connects again, and claims the new connection with the same token as
 * its first message; the secondary ACKs the claim and hands the socket to native code. Neither end's
 * JavaScript reads or writes that socket afterwards. The channel lives for one resync.
 */
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:os';
import { AckStatus, HEAD_BYTES, MessageType, decodeMessage, encodeResyncChannel } from '../wire';
import { loadNative, ResyncSendOutcome, type NativeResyncSender } from '../native';
import type { LocalStore } from '../store/local-store';
import { socketFd } from '../util/socket-fd';

/** Largest write on a resync channel: both ends size their buffer for it (regions up to 4 MiB). */
export const RESYNC_CHANNEL_WRITE_BYTES_MAX = 4 * 1024 * 1024;
/** Bytes of runs the resync keeps queued on the channel (their write gates held) at most. */
export const CHANNEL_WINDOW_BYTES = 16 * 1024 * 1024;

/** What became of one run sent on the channel. */
export type ChannelOutcome = 'acked' | 'zero' | 'failed';

/** A fresh channel token (never 0). */
export function newChannelToken(): bigint {
  const token = randomBytes(8).readBigUInt64BE(0);
  return token === 0n ? 1n : token;
}

/**
 * Primary: connect to host:port, claim the connection as the resync channel announced with
 * `token`, and return a duplicate of its fd for native use (the Node socket is closed).
 */
export function connectResyncChannel(host: string, port: number, token: bigint, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host, port });
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (error: Error | undefined, fd?: number): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined) reject(error);
      else resolve(fd!);
    };
    const timer = setTimeout(() => finish(new Error(`no answer to the channel claim within ${timeoutMs} ms`)), timeoutMs);
    socket.setNoDelay(true);
    socket.once('connect', () => socket.write(encodeResyncChannel(0, token)));
    socket.on('error', (e) => finish(e));
    socket.on('close', () => finish(new Error('the secondary closed the connection instead of accepting the channel')));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < HEAD_BYTES) return;
      // Nothing but this ACK can arrive before our first write, so nothing native needs is read here.
      const m = decodeMessage(received.subarray(0, HEAD_BYTES));
      if (received.length > HEAD_BYTES || !m.ok || m.value.type !== MessageType.Ack || m.value.tag !== 0) {
        finish(new Error(`unexpected answer to the channel claim${m.ok ? ` (${m.value.type})` : `: ${m.reason}`}`));
        return;
      }
      if (m.value.status !== AckStatus.Ok) {
        finish(new Error(`the secondary refused the channel (ACK status ${m.value.status})`));
        return;
      }
      socket.pause();
      try {
        finish(undefined, loadNative().duplicateFd(socketFd(socket)));
      } catch (e) {
        finish(e as Error);
      }
    });
  });
}

/** Native code uses a channel buffer from its first page boundary on, so an O_DIRECT store needs no bounce copy. */
const PAGE_BYTES = 4096;

/**
 * A buffer with `bytes` usable from its first page boundary, kept across channels (fresh pages
 * cost a fault each on these VMs).
 */
const spareBuffers: Buffer[] = [];
function takeBuffer(bytes: number): Buffer {
  const i = spareBuffers.findIndex((b) => b.length >= bytes + PAGE_BYTES);
  return i >= 0 ? spareBuffers.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(bytes + PAGE_BYTES);
}
function giveBackBuffer(buffer: Buffer): void {
  if (spareBuffers.length < 2) spareBuffers.push(buffer);
}

/** Why the secondary could not write a run, from its negative outcome (-errno of the ACK status). */
function peerWriteFailure(outcome: number): string {
  const noSpace = -outcome === constants.errno.ENOSPC;
  return `the peer could not write region data (ACK status ${noSpace ? AckStatus.NoSpace : AckStatus.IoError}: ${noSpace ? 'no space left on its store' : 'I/O error'})`;
}

/** A batch of runs queued on the channel, waiting for their outcomes. */
interface QueuedBatch {
  /** The runs' offset, length pairs (the caller's array, unchanged until the batch settles). */
  runs: Float64Array;
  count: number;
  /** Outcomes so far, in run order. */
  outcomes: ChannelOutcome[];
  problem: string | null;
  done: (outcomes: ChannelOutcome[], problem: string | null) => void;
}

/**
 * Primary end: a native thread (NativeResyncSender) streams the runs queued here, in order, for as
 * long as the channel lives; outcomes come back in the same order. Each batch crosses to native code
 * in one call and gets its outcomes in one callback.
 */
export class ResyncChannelSender {
  private readonly native: NativeResyncSender;
  /** Batches without every outcome, oldest first, from index `head`. */
  private queued: QueuedBatch[] = [];
  private head = 0;
  private inFlightBytes = 0;
  private closed = false;
  private ended = false;
  private problem: string | null = null;
  private settledWaiters: (() => void)[] = [];

  constructor(
    fd: number,
    store: LocalStore,
    epoch: bigint,
    timeoutMs: number,
    readonly maxRunBytes: number,
  ) {
    if (maxRunBytes > RESYNC_CHANNEL_WRITE_BYTES_MAX) {
      loadNative().closeFd(fd);
      throw new RangeError(`resync channel writes are at most ${RESYNC_CHANNEL_WRITE_BYTES_MAX} bytes`);
    }
    const buffer = takeBuffer(maxRunBytes);
    this.native = store.openResyncSender(fd, buffer, epoch, timeoutMs, (outcomes) => this.onSettled(outcomes), (problem) => {
      giveBackBuffer(buffer);
      this.onEnd(problem);
    });
  }

  get isOpen(): boolean {
    return !this.closed && !this.ended;
  }

  /** Why the channel failed (a read, the socket, a bad or failed ACK), or null. */
  get failure(): string | null {
    return this.problem;
  }

  /** Bytes of the runs queued and not yet settled. */
  get bytesInFlight(): number {
    return this.inFlightBytes;
  }

  /**
   * Queue the first `count` runs of `runs` (offset, length pairs; each run at most maxRunBytes) behind
   * every run queued before. The channel keeps `runs` until `done`: the caller must not change them.
   * `done` gets their outcomes
   * together, in order: 'acked' once the secondary ACKed the run, 'zero' when it was all zeroes (not
   * sent), 'failed' when the channel ended first or the secondary could not write it, with the first
   * reason a run failed.
   */
  sendBatch(runs: Float64Array, count: number, done: (outcomes: ChannelOutcome[], problem: string | null) => void): void {
    if (count === 0) {
      done([], null);
      return;
    }
    if (!this.isOpen) {
      done(new Array<ChannelOutcome>(count).fill('failed'), this.problem ?? 'the resync channel is closed');
      return;
    }
    const batch = runs.subarray(0, 2 * count);
    for (let i = 0; i < count; i++) this.inFlightBytes += batch[2 * i + 1]!;
    this.queued.push({ runs: batch, count, outcomes: [], problem: null, done });
    this.native.push(batch); // native code copies the pairs before it returns
  }

  /** `ready` once every run queued so far has its outcome. */
  whenSettled(ready: () => void): void {
    if (this.head === this.queued.length) ready();
    else this.settledWaiters.push(ready);
  }

  /** End the channel: the native thread stops at once, and runs without an outcome fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
  }

  private onSettled(outcomes: Int32Array): void {
    for (const outcome of outcomes) {
      const batch = this.queued[this.head];
      if (batch === undefined) break; // more outcomes than runs: cannot happen (native settles what JS pushed)
      const i = batch.outcomes.length;
      this.inFlightBytes -= batch.runs[2 * i + 1]!;
      batch.outcomes.push(outcome === ResyncSendOutcome.Acked ? 'acked' : outcome === ResyncSendOutcome.Zero ? 'zero' : 'failed');
      if (outcome < 0) batch.problem ??= peerWriteFailure(outcome);
      if (batch.outcomes.length === batch.count) this.finishHead();
    }
    this.compactQueue();
  }

  private onEnd(problem: string | null): void {
    this.ended = true;
    this.problem ??= problem;
    const reason = this.problem ?? 'the resync channel is closed';
    while (this.head < this.queued.length) {
      const batch = this.queued[this.head]!;
      for (let i = batch.outcomes.length; i < batch.count; i++) {
        this.inFlightBytes -= batch.runs[2 * i + 1]!;
        batch.outcomes.push('failed');
      }
      batch.problem ??= reason;
      this.finishHead();
    }
    this.compactQueue();
  }

  /** The oldest batch has every outcome: hand them over. */
  private finishHead(): void {
    const batch = this.queued[this.head]!;
    this.queued[this.head++] = undefined as unknown as QueuedBatch;
    batch.done(batch.outcomes, batch.problem);
  }

  /** Drop settled entries once they are half the array; wake whoever waits for everything settled. */
  private compactQueue(): void {
    if (this.head === this.queued.length) {
      this.queued = [];
      this.head = 0;
      for (const ready of this.settledWaiters.splice(0)) ready();
    } else if (this.head > 1024 && this.head * 2 > this.queued.length) {
      this.queued = this.queued.slice(this.head);
      this.head = 0;
    }
  }
}

/** Secondary end: serves the channel on a pool thread from construction until it ends. */
export class ResyncChannelReceiver {
  /** [writes applied, bytes applied], updated by the native thread as it goes. */
  readonly counters = new Float64Array(2);
  private ended = false;

  constructor(
    private readonly fd: number,
    store: LocalStore,
    volumeBytes: number,
    epoch: bigint,
    onEnd: (reason: string, clean: boolean, failedWrites: number) => void,
  ) {
    const buffer = takeBuffer(RESYNC_CHANNEL_WRITE_BYTES_MAX);
    store.resyncReceive(fd, buffer, volumeBytes, epoch, this.counters, (reason, clean, failedWrites) => {
      this.ended = true;
      giveBackBuffer(buffer);
      onEnd(reason, clean, failedWrites);
    });
  }

  get active(): boolean {
    return !this.ended;
  }

  /** Stop serving (the mirror connection ended): the native side sees its socket shut down. */
  stop(): void {
    if (!this.ended) loadNative().shutdownSocket(this.fd);
  }
}
