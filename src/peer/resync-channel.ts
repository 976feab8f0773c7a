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
import { AckStatus, HEAD_BYTES, MessageType, decodeMessage, encodeResyncChannel } from '../wire';
import { loadNative } from '../native';
import type { LocalStore } from '../store/local-store';
import { socketFd } from '../util/socket-fd';

/** Largest write on a resync channel: both ends size their buffer for it (regions up to 4 MiB). */
export const RESYNC_CHANNEL_WRITE_BYTES_MAX = 4 * 1024 * 1024;
/** A batch (one native call, its ACKs awaited at its end) holds at most this many writes ... */
export const CHANNEL_BATCH_REGIONS_MAX = 256;
/** ... and about this many bytes: long enough that the pause between batches costs little. */
export const CHANNEL_BATCH_BYTES_MAX = 8 * 1024 * 1024;

/** What became of one run of a batch. */
export type ChannelOutcome = 'acked' | 'zero' | 'failed';

export interface ChannelRun {
  offsetBytes: number;
  lengthBytes: number;
}

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

/** A buffer of at least `bytes`, kept across channels (fresh pages cost a fault each on these VMs). */
const spareBuffers: Buffer[] = [];
function takeBuffer(bytes: number): Buffer {
  const i = spareBuffers.findIndex((b) => b.length >= bytes);
  return i >= 0 ? spareBuffers.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(bytes);
}
function giveBackBuffer(buffer: Buffer): void {
  if (spareBuffers.length < 2) spareBuffers.push(buffer);
}

/** A batch whose writes were sent and whose ACKs are still to be read. */
interface SentBatch {
  outcomes: ChannelOutcome[];
  /** Seq of each run that was sent (undefined: zero or failed, settled already). */
  seqs: (number | undefined)[];
  /** ACKs come in seq order: the runs before this index are settled. */
  nextToSettle: number;
  waiting: number;
  done: (outcomes: ChannelOutcome[], problem: string | null) => void;
}

/**
 * Primary end: one native call at a time on the channel's fd, each sending a batch and reading the
 * ACKs of the batch before it, so the secondary always has the next batch queued while the primary
 * waits for ACKs. `drain` reads the ACKs still outstanding.
 */
export class ResyncChannelSender {
  private nextSeq = 1;
  /** Every write with a lower seq has its ACK read. */
  private ackedBeforeSeq = 1;
  private busy = false;
  private closed = false;
  private released = false;
  private problem: string | null = null;
  private readonly unacked: SentBatch[] = [];
  private readonly buffer: Buffer;

  constructor(
    private readonly fd: number,
    private readonly store: LocalStore,
    private readonly epoch: bigint,
    private readonly timeoutMs: number,
    readonly maxRunBytes: number,
  ) {
    if (maxRunBytes > RESYNC_CHANNEL_WRITE_BYTES_MAX) throw new RangeError(`resync channel writes are at most ${RESYNC_CHANNEL_WRITE_BYTES_MAX} bytes`);
    this.buffer = takeBuffer(maxRunBytes);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Why the channel failed (a read, the socket, a bad or failed ACK), or null. */
  get failure(): string | null {
    return this.problem;
  }

  /**
   * Send `runs` (each at most maxRunBytes; all-zero runs are not sent but reported 'zero').
   * `done` gets every run's outcome once its ACK was read (by a later send or drain); `ready` runs
   * once the channel takes the next call.
   */
  send(runs: readonly ChannelRun[], done: (outcomes: ChannelOutcome[], problem: string | null) => void, ready: () => void): void {
    const list = new Float64Array(runs.length * 2);
    runs.forEach((r, i) => {
      list[2 * i] = r.offsetBytes;
      list[2 * i + 1] = r.lengthBytes;
    });
    this.call(list, { outcomes: runs.map(() => 'failed'), seqs: [], nextToSettle: 0, waiting: 0, done }, ready);
  }

  /** Read the ACKs still outstanding (their batches' `done` run), then `ready`. */
  drain(ready: () => void): void {
    this.call(new Float64Array(0), undefined, ready);
  }

  private call(list: Float64Array, batch: SentBatch | undefined, ready: () => void): void {
    if (this.closed || this.busy) {
      if (batch !== undefined) batch.done(batch.outcomes, this.closed ? 'the resync channel is closed' : 'the resync channel is busy');
      ready();
      return;
    }
    const firstSeq = this.nextSeq;
    const ackFirstSeq = this.ackedBeforeSeq;
    const results = new Int32Array(list.length / 2);
    const ackResults = new Int32Array(firstSeq - ackFirstSeq);
    this.busy = true;
    this.store.resyncSend(this.fd, this.buffer, list, firstSeq, this.epoch, this.timeoutMs, results, ackFirstSeq, ackResults, (problem, sent) => {
      this.busy = false;
      this.nextSeq += sent;
      // ACKs of earlier batches, in seq order.
      ackResults.forEach((status, k) => {
        if (status === 0) return; // not read: settled as failed below
        this.settle(ackFirstSeq + k, status === 1 ? 'acked' : 'failed');
        this.ackedBeforeSeq = ackFirstSeq + k + 1;
      });
      if (batch !== undefined) {
        let seq = firstSeq;
        results.forEach((r, i) => {
          if (r === 2) batch.outcomes[i] = 'zero';
          else if (r === 3) {
            batch.seqs[i] = seq++;
            batch.waiting += 1;
          }
        });
        if (batch.waiting === 0) batch.done(batch.outcomes, problem);
        else this.unacked.push(batch);
      }
      if (problem !== null) {
        this.problem ??= problem;
        this.closed = true;
      }
      if (this.closed) {
        for (const b of this.unacked.splice(0)) b.done(b.outcomes, problem ?? 'the resync channel is closed');
        this.release();
      }
      ready();
    });
  }

  /** The write `seq` has its outcome: settle it in its batch, and the batch once it is complete. */
  private settle(seq: number, outcome: ChannelOutcome): void {
    const batch = this.unacked[0];
    if (batch === undefined) return;
    let i = batch.nextToSettle;
    while (i < batch.seqs.length && batch.seqs[i] === undefined) i++;
    if (batch.seqs[i] !== seq) i = batch.seqs.indexOf(seq);
    else batch.nextToSettle = i + 1;
    if (i < 0) return;
    batch.outcomes[i] = outcome;
    batch.seqs[i] = undefined;
    batch.waiting -= 1;
    if (batch.waiting === 0) {
      this.unacked.shift();
      batch.done(batch.outcomes, null);
    }
  }

  /** End the channel: a running call fails at once (its socket is shut down). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.busy) {
      loadNative().shutdownSocket(this.fd);
      return;
    }
    for (const batch of this.unacked.splice(0)) batch.done(batch.outcomes, 'the resync channel is closed');
    this.release();
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    loadNative().closeFd(this.fd);
    giveBackBuffer(this.buffer);
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
