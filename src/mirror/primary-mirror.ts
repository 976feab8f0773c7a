/**
 * Primary side of the mirror: sends every modifying request to the secondary with the wire
 * format (WRITE_INLINE + data for small aligned writes; WRITE_NOTIFY + WRITE_META + data for the
 * rest; TRIM / WRITE_ZEROES; FLUSH), settles each request when the secondary's ACK arrives (sync
 * mode) or at once within a bounded window (async mode), and tells the secondary which writes are
 * complete on both nodes (cumulative WRITE_COMPLETE).
 *
 * When the peer dies or stalls it carries on alone (degraded): the regions the peer misses are
 * recorded durably before the client's write is acknowledged. On (re)connect the generation
 * identifiers decide between nothing, a resync of the marked regions, a full sync, or a refusal
 * (stale primary, split brain, unrelated data); resync runs in the background while the device
 * stays in use. Online verify compares region hashes with the peer.
 */
import * as net from 'node:net';
import { NbdCommand, StoreOp } from '../native';
import { commandName, type BlockRequest, type Replicator } from '../controller';
import * as P from '../nbd/protocol';
import {
  AckStatus,
  BitmapAssembler,
  Feature,
  HEAD_BYTES,
  HelloReason,
  MessageType,
  Role,
  SECTOR_BYTES,
  TAG_COUNT,
  WriteFlag,
  encodeBitmapChunks,
  encodeFlush,
  encodeHashRequest,
  encodeHello,
  encodeReadRequest,
  encodeResyncChannel,
  encodeResyncDone,
  encodeTrim,
  encodeWriteComplete,
  encodeWriteInline,
  encodeWriteMeta,
  encodeWriteNotify,
  encodeWriteZeroes,
  epochLow8,
  payloadCrc32c,
  type HelloReplyMessage,
  type WireMessage,
} from '../wire';
import { PeerLink } from '../peer/peer-link';
import { PeerReceiver } from '../peer/peer-receiver';
import { helloFields, randomId64 } from './hello';
import { decideSync, rotateForDegradedWrites, afterResyncSource, GENERATION_EMPTY, GENERATION_NONE, type SyncDecision } from './sync-decision';
import { ActivityLog } from './activity-log';
import { DATA_RUN_BYTES_MAX, ResyncEngine, type ResyncTransport } from './resync';
import { RESYNC_CHANNEL_WRITE_BYTES_MAX, ResyncChannelSender, connectResyncChannel, newChannelToken } from '../peer/resync-channel';
import { regionDigest } from './region-digest';
import type { MirrorMetadata } from './mirror-metadata';
import type { LocalStore } from '../store/local-store';
import type { RangeGate } from '../range-gate';
import type { Logger } from '../util/log';
import { CompletionTracker } from './completion-tracker';
import { PeerReads } from './peer-reads';
import { RECONNECT_BACKOFF_MAX_MS } from '../limits';

export type MirrorMode = 'sync' | 'async';
export type PeerState = 'connecting' | 'connected' | 'degraded';

export interface PrimaryMirrorOptions {
  peerHost: string;
  peerPort: number;
  mode: MirrorMode;
  inlineThresholdBytes: number;
  /** Async mode: most unacknowledged bytes before client replies wait. */
  asyncWindowBytes: number;
  volumeSizeBytes: number;
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
  /** A write not acknowledged within this time means the peer stalled. */
  ackTimeoutMs: number;
  reconnectDelayMs: number;
  resyncRateBytesPerSecond: number;
  resyncChecksum: boolean;
  /** Open a resync channel when the secondary offers one (false: everything on the mirror connection). */
  resyncChannel: boolean;
}

/** Why the primary must not serve: the peer is a newer primary, or holds newer data. */
export type StaleHandler = (reason: string) => void;

/** One operation on the wire awaiting its ACK. */
interface PendingOp {
  seq: number; // 0 for FLUSH (not a sequenced write)
  offsetBytes: number;
  lengthBytes: number;
  payloadBytes: number;
  sentAtMs: number;
  settle: ((nbdError: number) => void) | undefined;
  /** Resync traffic: the region stays marked until the ACK. */
  resyncDone: ((ok: boolean) => void) | undefined;
}

export interface VerifyMismatch {
  offset: number;
  length: number;
}

const ZERO_SECTOR = Buffer.alloc(SECTOR_BYTES);
const RESYNC_WINDOW_REGIONS = 64;
/** Longest a due WRITE_COMPLETE waits for another message to ride with. */
const WRITE_COMPLETE_DELAY_MS = 20;
const VERIFY_WINDOW_REGIONS = 16;
const RESYNC_PERSIST_INTERVAL_MS = 1000;

export class PrimaryMirror implements Replicator {
  state: PeerState = 'connecting';
  stateReason = 'starting';
  splitBrain = false;
  private link: PeerLink | undefined;
  /** Features the connected secondary announced in its HELLO_REPLY. */
  private peerFeatures = 0n;
  /** The resync channel of the running resync, if it has one. */
  private channel: ResyncChannelSender | undefined;
  /** A resync is opening its channel (run() not called yet). */
  private resyncStarting = false;
  /** Regions were marked while a resync ran (behind its cursor, maybe): run another when it ends. */
  private resyncAgain = false;
  /**
   * The secondary ACKed the RESYNC_DONE that ends this connection's connect sequence or its last
   * resync: it durably holds our generation. Until then its disk counts as inconsistent.
   */
  private peerDiskConfirmed = false;
  private pending = new Map<number, PendingOp>();
  private hashWaiters = new Map<number, (digest: bigint | undefined) => void>();
  private freeTags: number[] = [];
  /** Client reads the local store failed, asked of the peer. */
  private readonly peerReads = new PeerReads((tag) => this.freeTags.push(tag));
  private nextSeq = 1;
  private completeThroughSeq = 0;
  private readonly completion = new CompletionTracker();
  /** The last WRITE_COMPLETE sent, and the timer that sends a due one when no other message carries it. */
  private completeSentThroughSeq = 0;
  private completeTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /**
   * Resyncs in a row that ended unfinished (a full disk on the secondary, a link that keeps
   * failing): each doubles the wait before the next reconnect, up to RECONNECT_BACKOFF_MAX_MS, so
   * a peer that cannot take the data is not hammered (nor the log flooded) four times a second.
   * A finished resync resets it.
   */
  private resyncFailuresInARow = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lagBytes = 0;
  private windowWaiters: { bytes: number; release: () => void }[] = [];
  private lastConnectFailure = '';
  private readonly activityLog: ActivityLog;
  private readonly alRequests = new WeakSet<BlockRequest>();
  readonly resync: ResyncEngine;
  private firstOutcome: ((outcome: string) => void) | undefined;
  readonly firstHandshake: Promise<string>;
  private verifying = false;
  readonly counters = {
    writesInline: 0,
    writesLarge: 0,
    trims: 0,
    zeroes: 0,
    flushes: 0,
    messagesToPeer: 0,
    acksReceived: 0,
    completesSent: 0,
    degradedWrites: 0,
    connects: 0,
    disconnects: 0,
    activityLogUpdates: 0,
    resyncs: 0,
    resyncChannels: 0,
    localWriteErrors: 0,
  };

  constructor(
    private readonly options: PrimaryMirrorOptions,
    private readonly meta: MirrorMetadata,
    private readonly store: LocalStore,
    private readonly gate: RangeGate,
    private readonly onStale: StaleHandler,
    private readonly log: Logger,
  ) {
    for (let t = TAG_COUNT - 1; t >= 0; t--) this.freeTags.push(t);
    this.activityLog = new ActivityLog(meta.activityLog);
    this.resync = new ResyncEngine(
      store,
      gate,
      meta.dirty,
      { windowRegions: RESYNC_WINDOW_REGIONS, rateBytesPerSecond: options.resyncRateBytesPerSecond, checksum: options.resyncChecksum, persistIntervalMs: RESYNC_PERSIST_INTERVAL_MS },
      () => meta.persist(),
      log,
    );
    this.firstHandshake = new Promise((resolve) => (this.firstOutcome = resolve));
  }

  /** Begin connecting to the secondary (and keep reconnecting while degraded). */
  start(): void {
    this.connect();
    this.ackTimer = setInterval(() => this.checkAckTimeouts(), Math.max(100, Math.floor(this.options.ackTimeoutMs / 4)));
    this.ackTimer.unref();
  }

  /** Resolve once every write sent to the peer is acknowledged (or the link is gone). */
  async drain(): Promise<void> {
    this.resync.stop();
    while (this.pending.size > 0 && this.link !== undefined && this.link.isOpen) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Stop reconnecting and close the link (shutdown or demotion). */
  stop(): void {
    this.stopped = true;
    this.resync.stop();
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    if (this.ackTimer !== undefined) clearInterval(this.ackTimer);
    if (this.completeTimer !== undefined) clearTimeout(this.completeTimer);
    this.link?.close('node shutting down');
  }

  get connected(): boolean {
    return this.state === 'connected' && this.link !== undefined && this.link.isOpen;
  }

  /** Before a write touches either node: activity log while mirroring, out-of-sync mark while not. */
  prepareWrite(request: BlockRequest): Promise<void> | undefined {
    if (this.connected) {
      this.alRequests.add(request);
      if (this.activityLog.begin(request.offsetBytes, request.lengthBytes)) {
        this.counters.activityLogUpdates += 1;
        return this.meta.persist();
      }
      return undefined;
    }
    return this.markOutOfSync(request.offsetBytes, request.lengthBytes);
  }

  finishWrite(request: BlockRequest): void {
    if (this.alRequests.has(request)) {
      this.alRequests.delete(request);
      this.activityLog.end(request.offsetBytes, request.lengthBytes);
    }
  }

  /** Record that the peer misses a range; durable before the returned promise resolves (undefined: already recorded). */
  private markOutOfSync(offsetBytes: number, lengthBytes: number): Promise<void> | undefined {
    let changed = false;
    const g = this.meta.generations;
    if (g.bitmap === GENERATION_NONE) {
      // First change without the peer: from now on the bitmap records changes since `g.current`.
      this.meta.generations = rotateForDegradedWrites(g, randomId64());
      changed = true;
    }
    const before = this.meta.dirty.count;
    this.meta.dirty.mark(offsetBytes, lengthBytes);
    if (this.meta.dirty.count !== before) changed = true;
    return changed ? this.meta.persist() : undefined;
  }

  /**
   * The local store failed a write, trim or zeroing that also went to the peer: the peer may hold
   * data this node does not, and nothing else would ever bring them together again. The range is
   * marked out of sync and resynced from this node, so the replicas converge on what this node
   * holds (the client was told the request failed, so either content is allowed there).
   */
  localWriteFailed(request: BlockRequest, errno: number): void {
    this.counters.localWriteErrors += 1;
    this.log.warn(
      `the local store failed a ${commandName(request.command)} at ${request.offsetBytes}+${request.lengthBytes} (errno ${-errno}) ` +
        'that the peer may have applied: the range is marked out of sync and resynced from this node',
    );
    this.meta.dirty.mark(request.offsetBytes, request.lengthBytes);
    this.meta.persist().then(
      () => {
        const link = this.link;
        if (!this.connected || link === undefined) return; // the next connection resyncs what is marked
        if (!this.startResync(link)) this.resyncAgain = true;
      },
      (error: Error) => this.log.error(`recording a range the local store failed: ${error.message}`),
    );
  }

  /** The controller dispatched a batch: send what it queued before the local writes run. */
  flushSends(): void {
    this.link?.flush();
  }

  /** Called by the controller for every modifying request (and FLUSH). */
  replicate(request: BlockRequest, done: (nbdError: number) => void): void {
    const link = this.link;
    if (!this.connected || link === undefined) {
      if (request.command === NbdCommand.Flush) {
        done(P.NBD_OK);
        return;
      }
      this.counters.degradedWrites += 1;
      const durable = this.markOutOfSync(request.offsetBytes, request.lengthBytes);
      if (durable === undefined) done(P.NBD_OK);
      else durable.then(() => done(P.NBD_OK), () => done(P.NBD_EIO));
      return;
    }
    if (this.freeTags.length < 4) {
      link.close('too many writes in flight to the peer');
      this.replicate(request, done);
      return;
    }
    switch (request.command) {
      case NbdCommand.Write:
        this.sendWrite(link, request.offsetBytes, request.data, this.wireFlags(request.flags), done, undefined);
        return;
      case NbdCommand.Trim:
      case NbdCommand.WriteZeroes:
        this.sendExtent(link, request, done);
        return;
      case NbdCommand.Flush: {
        const tag = this.takeTag();
        this.pending.set(tag, { seq: 0, offsetBytes: 0, lengthBytes: 0, payloadBytes: 0, sentAtMs: Date.now(), settle: done, resyncDone: undefined });
        this.counters.flushes += 1;
        this.sendMessage(link, encodeFlush(tag));
        return;
      }
      default:
        done(P.NBD_OK);
    }
  }

  /** Status sections `peer` and `mirror`. */
  peerStatus(): Record<string, unknown> {
    return {
      state: this.state,
      reason: this.stateReason,
      splitBrain: this.splitBrain,
      address: `${this.options.peerHost}:${this.options.peerPort}`,
      disk: this.peerDisk(),
      outOfSyncBytes: this.meta.dirty.dirtyBytes,
      resyncFailuresInARow: this.resyncFailuresInARow,
      reconnectDelayMs: this.reconnectDelayMs(),
    };
  }

  /**
   * The secondary's disk as this primary knows it (DRBD's peer-disk): upToDate only once the secondary
   * confirmed it holds our generation (the connect sequence or the last resync ended) and nothing is
   * out of sync; inconsistent while connected short of that; unknown while not connected. The signal
   * for a script that must know the pair is redundant again: `state` is connected already while the
   * connect sequence and the resync run.
   */
  private peerDisk(): 'upToDate' | 'inconsistent' | 'unknown' {
    if (this.state !== 'connected') return 'unknown';
    const upToDate = this.peerDiskConfirmed && this.meta.dirty.count === 0 && !this.resync.active && !this.resyncStarting;
    return upToDate ? 'upToDate' : 'inconsistent';
  }

  mirrorStatus(): Record<string, unknown> {
    const link = this.link;
    return {
      mode: this.options.mode,
      inlineThresholdBytes: this.options.inlineThresholdBytes,
      ...this.counters,
      activityLogExtents: this.activityLog.size,
      inFlight: this.pending.size,
      lagBytes: this.lagBytes,
      completeThroughSeq: this.completeThroughSeq,
      lastSeq: this.nextSeq - 1,
      epoch: Number(this.meta.epoch),
      copiedPayloadBytes: 0, // the primary hands pool slots to socket.write: no payload copy
      ...this.peerReads.counters,
      peerMessagesReceived: link?.stats.messagesReceived ?? 0,
    };
  }

  /**
   * Online verify: hash every region on both nodes (each under the write gate, so both see the
   * same writes) and return the mismatching ranges; optionally mark them for resync.
   */
  async verify(markForResync: boolean): Promise<{ mismatches: VerifyMismatch[]; regionsChecked: number; resyncStarted: boolean }> {
    const link = this.link;
    if (!this.connected || link === undefined) throw new Error(`cannot verify: the peer is not connected (${this.stateReason})`);
    if (this.resync.active) throw new Error('cannot verify while a resync is running');
    if (this.verifying) throw new Error('a verify is already running');
    this.verifying = true;
    const dirty = this.meta.dirty;
    const mismatched: number[] = [];
    let inFlight = 0;
    let failure: string | undefined;
    let wake: (() => void) | undefined;
    try {
      for (let region = 0; region < dirty.regionCount && failure === undefined; region++) {
        while (inFlight >= VERIFY_WINDOW_REGIONS) await new Promise<void>((r) => (wake = r));
        if (!link.isOpen || this.link !== link) {
          failure = 'the peer connection was lost during verify';
          break;
        }
        const { offsetBytes, lengthBytes } = dirty.regionRange(region);
        inFlight += 1;
        this.verifyRegion(link, offsetBytes, lengthBytes, (equal) => {
          inFlight -= 1;
          if (equal === undefined) failure = 'the peer could not hash a region';
          else if (!equal) mismatched.push(region);
          const w = wake;
          wake = undefined;
          w?.();
        });
      }
      while (inFlight > 0) await new Promise<void>((r) => (wake = r));
    } finally {
      this.verifying = false;
    }
    if (failure !== undefined) throw new Error(`verify failed: ${failure}`);
    mismatched.sort((a, b) => a - b);
    const mismatches: VerifyMismatch[] = [];
    for (const region of mismatched) {
      const { offsetBytes, lengthBytes } = dirty.regionRange(region);
      const last = mismatches[mismatches.length - 1];
      if (last !== undefined && last.offset + last.length === offsetBytes) last.length += lengthBytes;
      else mismatches.push({ offset: offsetBytes, length: lengthBytes });
    }
    this.log.info(`verify: ${dirty.regionCount} regions checked, ${mismatched.length} differ`);
    let resyncStarted = false;
    if (markForResync && mismatched.length > 0) {
      for (const region of mismatched) dirty.mark(region * dirty.regionBytes, 1);
      await this.meta.persist();
      resyncStarted = this.startResync(link);
    }
    return { mismatches, regionsChecked: dirty.regionCount, resyncStarted };
  }

  private verifyRegion(link: PeerLink, offsetBytes: number, lengthBytes: number, done: (equal: boolean | undefined) => void): void {
    this.gate.enter(offsetBytes, lengthBytes, (release) => {
      const data = Buffer.alloc(lengthBytes);
      this.store.submit(StoreOp.Read, data, offsetBytes, lengthBytes, false, (result) => {
        if (result !== 0) {
          release();
          done(undefined);
          return;
        }
        const local = regionDigest(data);
        this.requestPeerHash(link, offsetBytes, lengthBytes, (peer) => {
          release();
          done(peer === undefined ? undefined : peer === local);
        });
      });
    });
  }

  private requestPeerHash(link: PeerLink, offsetBytes: number, lengthBytes: number, done: (digest: bigint | undefined) => void): void {
    if (!link.isOpen) {
      done(undefined);
      return;
    }
    const tag = this.takeTag();
    this.hashWaiters.set(tag, done);
    this.sendMessage(link, encodeHashRequest(tag, offsetBytes, lengthBytes, this.meta.epoch));
  }

  /**
   * The local store failed to read `request`: ask the peer for the bytes (docs/wire-format.md 5.15)
   * when it holds them up to date: connected, PEER_READ negotiated, and no region of the range out
   * of sync. The caller holds the range's write gate. Returns false (nothing sent) when the peer
   * cannot serve it; otherwise `done` gets 0 with the bytes in request.data, or -EIO.
   */
  readFromPeer(request: BlockRequest, done: (result: number) => void): boolean {
    const link = this.link;
    if (!this.connected || link === undefined || (this.peerFeatures & Feature.PeerRead) === 0n) return false;
    if (this.meta.dirty.touchesDirty(request.offsetBytes, request.lengthBytes)) return false;
    const tag = this.takeTag();
    this.peerReads.add(tag, request, (result) => (result === 0 ? this.repairLocalRange(request, done) : done(result)));
    this.sendMessage(link, encodeReadRequest(tag, request.offsetBytes, request.lengthBytes, this.meta.epoch));
    return true;
  }

  /**
   * As md's RAID1 does after a read error: write the peer's bytes back over the range the local
   * store could not read (a disk remaps a bad sector when it is written), still under the range's
   * write gate, then answer the read. If the rewrite fails the range stays readable from the peer;
   * nothing is marked out of sync, since the peer holds the right bytes.
   */
  private repairLocalRange(request: BlockRequest, done: (result: number) => void): void {
    this.store.submit(StoreOp.Write, request.data, request.offsetBytes, request.lengthBytes, false, (written) => {
      this.peerReads.noteRepair(written);
      if (written !== 0 && this.peerReads.counters.readRepairFailures === 1) {
        this.log.warn(`rewriting ${request.offsetBytes}+${request.lengthBytes} with the peer's bytes after a read error failed (errno ${-written}): reads there keep going to the peer; replace the disk`);
      }
      done(0);
    });
  }

  private wireFlags(nbdFlags: number): number {
    return (nbdFlags & P.NBD_CMD_FLAG_FUA) !== 0 ? WriteFlag.Fua : 0;
  }

  /** One data write: inline if small and sector-aligned, else notify + meta; the payload follows either way. */
  private sendWrite(
    link: PeerLink, offsetBytes: number, data: Buffer, flags: number, done: ((e: number) => void) | undefined,
    resyncDone: ((ok: boolean) => void) | undefined, resyncWritten?: () => void,
  ): void {
    const lengthBytes = data.length;
    this.sendCompleteIfDue(link);
    const tag = this.takeTag();
    const seq = this.nextSeq++;
    // Async mode answers the client before the ACK, but never before the payload left its buffer.
    const early = resyncDone === undefined && this.options.mode === 'async' && done !== undefined;
    const settle = early ? undefined : done;
    if (early) this.lagBytes += lengthBytes;
    const onWritten = early ? (): void => this.admitAsync(lengthBytes, done!) : resyncWritten;
    this.pending.set(tag, { seq, offsetBytes, lengthBytes, payloadBytes: lengthBytes, sentAtMs: Date.now(), settle, resyncDone });
    const aligned = offsetBytes % SECTOR_BYTES === 0 && lengthBytes % SECTOR_BYTES === 0;
    if (aligned && lengthBytes > 0 && lengthBytes <= this.options.inlineThresholdBytes) {
      this.counters.writesInline += 1;
      const head = encodeWriteInline(tag, flags, epochLow8(this.meta.epoch), offsetBytes / SECTOR_BYTES, data);
      this.counters.messagesToPeer += 2;
      link.send(head, data, onWritten);
    } else {
      this.counters.writesLarge += 1;
      const heads = Buffer.allocUnsafe(HEAD_BYTES + 40);
      encodeWriteNotify(tag, flags, seq, heads, 0);
      encodeWriteMeta(tag, offsetBytes, lengthBytes, payloadCrc32c(data), this.meta.epoch, heads, HEAD_BYTES);
      this.counters.messagesToPeer += 3;
      link.send(heads, data, onWritten);
    }
  }

  /** A sector-aligned TRIM / WRITE_ZEROES message. */
  private sendExtentMessage(link: PeerLink, trim: boolean, offsetBytes: number, lengthBytes: number, flags: number, done: ((e: number) => void) | undefined, resyncDone: ((ok: boolean) => void) | undefined): void {
    this.sendCompleteIfDue(link);
    const tag = this.takeTag();
    const seq = this.nextSeq++;
    const early = resyncDone === undefined && this.options.mode === 'async' && done !== undefined;
    this.pending.set(tag, { seq, offsetBytes, lengthBytes, payloadBytes: 0, sentAtMs: Date.now(), settle: early ? undefined : done, resyncDone });
    if (early) this.admitAsync(0, done!);
    if (trim) this.counters.trims += 1;
    else this.counters.zeroes += 1;
    this.sendMessage(link, (trim ? encodeTrim : encodeWriteZeroes)(tag, flags, offsetBytes, lengthBytes, this.meta.epoch));
  }

  /** TRIM / WRITE_ZEROES: the sector-aligned middle as one message, unaligned edges as small zero writes. */
  private sendExtent(link: PeerLink, request: BlockRequest, done: (e: number) => void): void {
    const start = request.offsetBytes;
    const end = start + request.lengthBytes;
    const alignedStart = Math.ceil(start / SECTOR_BYTES) * SECTOR_BYTES;
    const alignedEnd = Math.floor(end / SECTOR_BYTES) * SECTOR_BYTES;
    const pieces: (() => void)[] = [];
    let remaining = 0;
    let result = P.NBD_OK;
    const pieceDone = (e: number): void => {
      if (result === P.NBD_OK) result = e;
      remaining -= 1;
      if (remaining === 0) done(result);
    };
    const flags = this.wireFlags(request.flags);
    if (alignedStart >= alignedEnd) {
      pieces.push(() => this.sendWrite(link, start, Buffer.alloc(end - start), flags, pieceDone, undefined));
    } else {
      if (start < alignedStart) pieces.push(() => this.sendWrite(link, start, ZERO_SECTOR.subarray(0, alignedStart - start), flags, pieceDone, undefined));
      pieces.push(() => this.sendExtentMessage(link, request.command === NbdCommand.Trim, alignedStart, alignedEnd - alignedStart, flags, pieceDone, undefined));
      if (alignedEnd < end) pieces.push(() => this.sendWrite(link, alignedEnd, ZERO_SECTOR.subarray(0, end - alignedEnd), flags, pieceDone, undefined));
    }
    remaining = pieces.length;
    for (const send of pieces) send();
  }

  /** Async mode: the reply waits only for room in the window of unacknowledged bytes (already counted in lagBytes). */
  private admitAsync(bytes: number, done: (e: number) => void): void {
    if (this.lagBytes <= this.options.asyncWindowBytes || bytes >= this.lagBytes) done(P.NBD_OK);
    else this.windowWaiters.push({ bytes, release: () => done(P.NBD_OK) });
  }

  private sendMessage(link: PeerLink, message: Buffer): void {
    this.counters.messagesToPeer += 1;
    link.send(message);
  }

  private takeTag(): number {
    return this.freeTags.pop()!;
  }

  private connect(): void {
    if (this.stopped) return;
    this.reconnectTimer = undefined;
    const receiver = new PeerReceiver();
    const socket = receiver.connect(this.options.peerHost, this.options.peerPort);
    let settled = false;
    const retry = (reason: string): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      this.noteConnectFailure(reason);
    };
    socket.once('error', (err) => retry(`cannot connect: ${err.message}`));
    socket.setTimeout(this.options.keepaliveTimeoutMs, () => retry('connect timed out'));
    socket.once('connect', () => {
      if (settled) return;
      settled = true;
      socket.setTimeout(0);
      socket.removeAllListeners('error');
      this.handshake(socket, receiver);
    });
  }

  /** HELLO, HELLO_REPLY, both bitmaps, then the decision. */
  private handshake(socket: net.Socket, receiver: PeerReceiver): void {
    let phase: 'hello' | 'bitmap' | 'running' = 'hello';
    let reply: HelloReplyMessage | undefined;
    const assembler = new BitmapAssembler();
    const link = new PeerLink(
      socket,
      receiver,
      {
        onMessage: (m, head) => {
          if (phase === 'running') {
            this.onMessage(link, m, head);
            return;
          }
          if (phase === 'hello') {
            if (m.type !== MessageType.HelloReply) {
              link.close(`protocol error: expected HELLO_REPLY, got type ${m.type}`);
              return;
            }
            reply = m;
            const refusal = this.judgeReply(m);
            if (refusal !== undefined) {
              this.stateReason = refusal;
              link.close(refusal);
              return;
            }
            phase = 'bitmap';
            return;
          }
          if (m.type !== MessageType.Bitmap) {
            link.close(`protocol error: expected BITMAP, got type ${m.type}`);
            return;
          }
          const check = assembler.add(m);
          if (!check.ok) {
            link.close(`protocol error: ${check.reason}`);
            return;
          }
          if (!assembler.complete) return;
          const peerBits = assembler.result()!;
          const decision = decideSync(this.meta.generations, {
            current: reply!.currentGeneration,
            bitmap: reply!.bitmapGeneration,
            history0: reply!.historyGeneration0,
            history1: reply!.historyGeneration1,
          });
          if (!this.applyDecision(link, decision, peerBits.bitmap, peerBits.regionBytes)) return;
          phase = 'running';
          void this.onConnected(link, reply!, decision);
        },
        onPayload: (type, payload, release) => {
          const problem = phase === 'running' && type === MessageType.ReadReply ? this.peerReads.onPayload(payload) : 'the secondary sent a payload';
          release();
          if (problem !== undefined) link.close(`protocol error: ${problem}`);
        },
        onClose: (reason) => {
          if (phase === 'running') this.onLinkLost(link, reason);
          else this.noteConnectFailure(reason);
        },
      },
      { keepaliveIntervalMs: this.options.keepaliveIntervalMs, keepaliveTimeoutMs: this.options.keepaliveTimeoutMs },
    );
    const g = this.meta.generations;
    link.send(
      encodeHello(0, helloFields({
          role: Role.Primary,
          volumeSizeBytes: this.options.volumeSizeBytes,
          blockSizeBytes: SECTOR_BYTES,
          nodeId: this.meta.nodeId,
          generations: g,
          epoch: this.meta.epoch,
          inlineThresholdBytes: this.options.inlineThresholdBytes,
        })),
    );
    for (const chunk of encodeBitmapChunks(this.meta.dirty.toBytes(), this.meta.dirty.regionCount, this.meta.dirty.regionBytes)) link.send(chunk);
  }

  /** Refusals that HELLO_REPLY alone decides. */
  private judgeReply(reply: HelloReplyMessage): string | undefined {
    if (reply.reason === HelloReason.RoleConflict && reply.role === Role.Primary) {
      const decision = decideSync(this.meta.generations, { current: reply.currentGeneration, bitmap: reply.bitmapGeneration, history0: reply.historyGeneration0, history1: reply.historyGeneration1 });
      if (decision.kind === 'splitBrain') {
        this.splitBrain = true;
        const why = `split brain: the peer is also primary and ${decision.reason}; nothing is overwritten. Run \`blockmirror resolve --discard-my-data\` on the node whose changes are to be discarded`;
        this.reportOnce(why, 'error');
        return why;
      }
      if (reply.epoch > this.meta.epoch || decision.kind === 'primaryStale') {
        const why = `the peer is primary with epoch ${reply.epoch} (ours ${this.meta.epoch}): it was promoted while this node was away; restart this node as a secondary to rejoin`;
        this.onStale(why);
        this.firstOutcome?.(why);
        return why;
      }
      return `the peer is also primary (epoch ${reply.epoch}); demote one of them`;
    }
    if (reply.reason !== HelloReason.Accepted) return `the secondary refused the connection (reason ${reply.reason}: ${helloReasonText(reply.reason)})`;
    if (reply.volumeSizeBytes !== this.options.volumeSizeBytes) return `volume sizes differ: secondary ${reply.volumeSizeBytes}, primary ${this.options.volumeSizeBytes}`;
    if (reply.role !== Role.Secondary) return 'the peer is not in the secondary role';
    return undefined;
  }

  /** Act on the generation comparison; false (link closed) if the secondary cannot be taken into service. */
  private applyDecision(link: PeerLink, decision: SyncDecision, peerBits: Uint8Array, peerRegionBytes: number): boolean {
    switch (decision.kind) {
      case 'inSync':
      case 'resyncFromPrimary':
        this.meta.dirty.orBytes(peerBits, peerRegionBytes);
        this.splitBrain = false;
        return true;
      case 'fullSync':
        this.meta.dirty.markAll();
        this.splitBrain = false;
        this.log.info('the secondary holds no data of ours: full sync (zero regions travel as WRITE_ZEROES)');
        return true;
      case 'primaryStale':
        this.onStale(`this primary is stale: ${decision.reason}`);
        this.firstOutcome?.(decision.reason);
        link.close(`refused: ${decision.reason}`);
        return false;
      case 'splitBrain': {
        this.splitBrain = true;
        const why = `split brain: ${decision.reason}; nothing is overwritten. Run \`blockmirror resolve --discard-my-data\` on the node whose changes are to be discarded`;
        this.reportOnce(why, 'error');
        this.stateReason = why;
        link.close(why);
        return false;
      }
      case 'unrelated': {
        const why = `${decision.reason}; to replace the secondary's data run \`blockmirror resolve --discard-my-data\` on it`;
        this.reportOnce(why, 'error');
        this.stateReason = why;
        link.close(why);
        return false;
      }
    }
  }

  private async onConnected(link: PeerLink, reply: HelloReplyMessage, decision: SyncDecision): Promise<void> {
    this.link = link;
    this.peerFeatures = reply.features;
    this.counters.connects += 1;
    this.nextSeq = 1;
    this.completeThroughSeq = 0;
    this.completeSentThroughSeq = 0;
    if (this.completeTimer !== undefined) clearTimeout(this.completeTimer);
    this.completeTimer = undefined;
    this.completion.reset();
    this.lastConnectFailure = '';
    this.peerDiskConfirmed = false;
    link.limits = { volumeSizeBytes: this.options.volumeSizeBytes, inlineThresholdBytes: this.options.inlineThresholdBytes };
    if (this.meta.generations.current === GENERATION_EMPTY) {
      // Data is about to be written: an empty store's generation must not name it any more.
      this.meta.generations = { ...this.meta.generations, current: randomId64() };
    }
    this.sendMessage(link, encodeWriteComplete(0));
    this.setState('connected', `mirroring to ${link.remoteAddress} (node ${reply.nodeId.toString(16)}, ${decision.kind})`);
    this.firstOutcome?.('connected');
    this.firstOutcome = undefined;
    await this.meta.persist();
    if (this.meta.dirty.count > 0) this.startResync(link);
    else this.finishInSync(link);
  }

  /** Start the background resync of every marked region; true if it started. */
  private startResync(link: PeerLink): boolean {
    if (this.resync.active || this.resyncStarting) return false;
    this.resyncStarting = true;
    this.peerDiskConfirmed = false;
    this.counters.resyncs += 1;
    const transport: ResyncTransport = {
      sendData: (offsetBytes, data, written, done) => {
        if (!link.isOpen) {
          written();
          done(false);
          return;
        }
        this.sendWrite(link, offsetBytes, data, WriteFlag.Resync, undefined, done, written);
      },
      sendZeroes: (offsetBytes, lengthBytes, done) => (link.isOpen ? this.sendExtentMessage(link, false, offsetBytes, lengthBytes, WriteFlag.Resync, undefined, done) : done(false)),
      peerHash: (offsetBytes, lengthBytes, done) => this.requestPeerHash(link, offsetBytes, lengthBytes, done),
      isOpen: () => link.isOpen && this.link === link,
      channel: undefined,
    };
    void (async () => {
      let channel: ResyncChannelSender | undefined;
      try {
        channel = await this.openResyncChannel(link);
        // Stopped or disconnected while the channel opened: no resync now (a reconnect starts one).
        if (this.stopped || this.link !== link || !link.isOpen) return;
        transport.channel = channel;
        this.resyncStarting = false;
        const complete = await this.resync.run(transport);
        channel?.close();
        if (complete) this.resyncFailuresInARow = 0;
        else if (!this.stopped) this.resyncFailuresInARow += 1;
        if (complete && this.link === link && link.isOpen) this.finishInSync(link);
        else if (channel?.failure && this.link === link && link.isOpen) {
          // The mirror connection is fine but the channel failed: reconnect, as after any failure, so
          // that the regions left out of sync are resynced (docs/wire-format.md section 8.2).
          link.close(`resync channel failed: ${channel.failure}`);
        }
      } catch (error) {
        this.log.error(`resync failed: ${(error as Error).message}`);
      } finally {
        this.resyncStarting = false;
        channel?.close();
        if (this.channel === channel) this.channel = undefined;
      }
      if (this.resyncAgain && !this.stopped && this.link === link && link.isOpen && this.meta.dirty.count > 0) {
        this.resyncAgain = false;
        this.startResync(link);
      }
    })();
    return true;
  }

  /**
   * A resync channel to the secondary (docs/wire-format.md section 8.2) when both ends support it
   * and the resync can use it (not in checksum mode, regions of at most 4 MiB);
   * undefined otherwise or when opening it fails: the resync then runs on the mirror connection.
   */
  private async openResyncChannel(link: PeerLink): Promise<ResyncChannelSender | undefined> {
    const maxRunBytes = Math.max(this.meta.dirty.regionBytes, DATA_RUN_BYTES_MAX);
    if (!this.options.resyncChannel || (this.peerFeatures & Feature.ResyncChannel) === 0n || this.options.resyncChecksum || maxRunBytes > RESYNC_CHANNEL_WRITE_BYTES_MAX) return undefined;
    const token = newChannelToken();
    const timeoutMs = this.options.keepaliveTimeoutMs;
    try {
      const announced = await new Promise<boolean>((resolve) => {
        if (!link.isOpen || this.link !== link) return resolve(false);
        const tag = this.takeTag();
        this.pending.set(tag, { seq: 0, offsetBytes: 0, lengthBytes: 0, payloadBytes: 0, sentAtMs: Date.now(), settle: undefined, resyncDone: resolve });
        this.sendMessage(link, encodeResyncChannel(tag, token));
      });
      if (!announced) return undefined;
      const fd = await connectResyncChannel(this.options.peerHost, this.options.peerPort, token, timeoutMs);
      const channel = new ResyncChannelSender(fd, this.store, this.meta.epoch, timeoutMs, maxRunBytes);
      if (!link.isOpen || this.link !== link) {
        channel.close();
        return undefined;
      }
      this.channel = channel;
      this.counters.resyncChannels += 1;
      return channel;
    } catch (error) {
      this.reportOnce(`resync channel not available, resyncing on the mirror connection: ${(error as Error).message}`, 'warn');
      return undefined;
    }
  }

  /** The peer now holds exactly our data: tell it our generation, forget the bitmap generation. */
  private finishInSync(link: PeerLink): void {
    const tag = this.takeTag();
    this.pending.set(tag, {
      seq: 0,
      offsetBytes: 0,
      lengthBytes: 0,
      payloadBytes: 0,
      sentAtMs: Date.now(),
      settle: undefined,
      resyncDone: (ok) => {
        // Acknowledged once the secondary durably holds our generation: the bitmap generation can go.
        if (!ok) return;
        if (this.link === link && link.isOpen) this.peerDiskConfirmed = true;
        this.meta.generations = afterResyncSource(this.meta.generations);
        void this.meta.persist();
      },
    });
    this.sendMessage(link, encodeResyncDone(tag, this.meta.generations.current));
  }

  private onMessage(link: PeerLink, m: WireMessage, head: Buffer): void {
    if (m.type === MessageType.ReadReply) {
      const problem = (this.peerFeatures & Feature.PeerRead) === 0n ? 'READ_REPLY without the PEER_READ feature' : this.peerReads.onReply(m, head);
      if (problem !== undefined) link.close(`protocol error: ${problem}`);
      return;
    }
    if (m.type === MessageType.HashReply) {
      const waiter = this.hashWaiters.get(m.tag);
      if (waiter === undefined) {
        link.close(`protocol error: HASH_REPLY for unknown tag ${m.tag}`);
        return;
      }
      this.hashWaiters.delete(m.tag);
      this.freeTags.push(m.tag);
      waiter(m.status === 0 ? m.rangeDigest : undefined);
      return;
    }
    if (m.type !== MessageType.Ack) {
      link.close(`protocol error: unexpected message type ${m.type} from the secondary`);
      return;
    }
    const op = this.pending.get(m.tag);
    if (op === undefined) {
      link.close(`protocol error: ACK for unknown tag ${m.tag}`);
      return;
    }
    this.counters.acksReceived += 1;
    this.pending.delete(m.tag);
    this.freeTags.push(m.tag);
    if (m.status !== AckStatus.Ok) {
      // The secondary could not apply it: the replicas differ there. Record it and stop mirroring.
      this.pending.set(m.tag, op); // let onLinkLost record and settle it durably
      this.freeTags.pop();
      link.close(`the secondary failed a write at ${op.offsetBytes}+${op.lengthBytes} (status ${m.status})`);
      return;
    }
    if (op.resyncDone === undefined) this.releaseLag(op.payloadBytes);
    if (op.seq > 0) this.noteComplete(link, op.seq);
    op.settle?.(P.NBD_OK);
    op.resyncDone?.(true);
  }

  /**
   * Advance the cumulative complete sequence. The WRITE_COMPLETE rides in front of the next
   * message to the secondary (same send, so no wake-up of its own there), or leaves on its own
   * after WRITE_COMPLETE_DELAY_MS when nothing else is sent.
   */
  private noteComplete(link: PeerLink, seq: number): void {
    this.completeThroughSeq = this.completion.complete(seq);
    if (this.completeThroughSeq <= this.completeSentThroughSeq || this.completeTimer !== undefined) return;
    this.completeTimer = setTimeout(() => {
      this.completeTimer = undefined;
      this.sendCompleteIfDue(link);
    }, WRITE_COMPLETE_DELAY_MS);
    this.completeTimer.unref();
  }

  /** Send WRITE_COMPLETE if writes were completed since the last one. */
  private sendCompleteIfDue(link: PeerLink): void {
    if (this.completeThroughSeq <= this.completeSentThroughSeq || !link.isOpen || this.link !== link) return;
    this.completeSentThroughSeq = this.completeThroughSeq;
    this.counters.completesSent += 1;
    this.sendMessage(link, encodeWriteComplete(this.completeThroughSeq));
  }

  private releaseLag(bytes: number): void {
    if (this.options.mode !== 'async') return;
    this.lagBytes -= bytes;
    while (this.windowWaiters.length > 0 && this.lagBytes <= this.options.asyncWindowBytes) {
      this.windowWaiters.shift()!.release();
    }
  }

  /** The link is gone: everything in flight is recorded (durably) as missing on the peer, then settles locally. */
  private onLinkLost(link: PeerLink, reason: string): void {
    if (this.link !== link) return;
    this.link = undefined;
    this.counters.disconnects += 1;
    this.resync.stop();
    this.channel?.close();
    const inFlight = [...this.pending.values()];
    const hashWaiters = [...this.hashWaiters.values()];
    this.pending.clear();
    this.hashWaiters.clear();
    this.peerReads.failAll(); // nothing to record for a read; its tags die with the connection
    this.freeTags = [];
    for (let t = TAG_COUNT - 1; t >= 0; t--) this.freeTags.push(t);
    this.completion.reset();
    this.lagBytes = 0;
    const waiters = this.windowWaiters;
    this.windowWaiters = [];
    this.setState('degraded', `peer lost: ${reason}`);
    let durable: Promise<void> | undefined;
    for (const op of inFlight) {
      if (op.lengthBytes > 0 && op.resyncDone === undefined) durable = this.markOutOfSync(op.offsetBytes, op.lengthBytes) ?? durable;
    }
    if (this.options.mode === 'async' && this.meta.generations.bitmap === GENERATION_NONE) durable = this.markOutOfSync(0, 0) ?? durable;
    this.log.warn(`peer lost (${reason}): running degraded; ${inFlight.length} operations in flight recorded as out of sync (${this.meta.dirty.dirtyBytes} bytes out of sync)`);
    const settleAll = (): void => {
      for (const op of inFlight) {
        op.settle?.(P.NBD_OK);
        op.resyncDone?.(false);
      }
      for (const w of hashWaiters) w(undefined);
      for (const w of waiters) w.release();
    };
    if (durable === undefined) settleAll();
    else durable.then(settleAll, settleAll);
    this.scheduleReconnect();
  }

  /** Log a connection problem once: a peer that stays away (or in split brain) must not flood the log. */
  private reportOnce(reason: string, level: 'warn' | 'error'): void {
    if (reason === this.lastConnectFailure) return;
    this.lastConnectFailure = reason;
    this.log[level](reason);
  }

  private noteConnectFailure(reason: string): void {
    if (reason !== this.lastConnectFailure) this.reportOnce(`secondary ${this.options.peerHost}:${this.options.peerPort} not connected: ${reason}`, 'warn');
    this.lastConnectFailure = reason;
    if (!reason.startsWith('split brain') && !reason.includes('unrelated')) this.stateReason = reason;
    if (this.state === 'connected') this.setState('degraded', reason);
    this.firstOutcome?.(reason);
    this.firstOutcome = undefined;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer !== undefined) return;
    this.reconnectTimer = setTimeout(() => this.connect(), this.reconnectDelayMs());
    this.reconnectTimer.unref();
  }

  /** The wait before the next reconnect: the base delay, doubled for each resync in a row that ended unfinished. */
  private reconnectDelayMs(): number {
    if (this.resyncFailuresInARow <= 1) return this.options.reconnectDelayMs;
    return Math.min(RECONNECT_BACKOFF_MAX_MS, this.options.reconnectDelayMs * 2 ** Math.min(this.resyncFailuresInARow - 1, 16));
  }

  /** A write unacknowledged for longer than ackTimeoutMs means the peer stalled: go degraded. */
  private checkAckTimeouts(): void {
    const link = this.link;
    if (link === undefined) return;
    const now = Date.now();
    for (const op of this.pending.values()) {
      if (now - op.sentAtMs > this.options.ackTimeoutMs) {
        link.close(`no ACK for ${now - op.sentAtMs} ms (peer stalled)`);
        return;
      }
    }
    const oldestRead = this.peerReads.oldestSentAtMs;
    if (oldestRead !== undefined && now - oldestRead > this.options.ackTimeoutMs) link.close(`no READ_REPLY for ${now - oldestRead} ms (peer stalled)`);
  }

  private setState(state: PeerState, reason: string): void {
    if (this.state !== state) this.log.info(`peer state ${this.state} -> ${state}: ${reason}`);
    this.state = state;
    this.stateReason = reason;
  }
}

function helloReasonText(reason: number): string {
  const names = Object.entries(HelloReason).find(([, v]) => v === reason);
  return names === undefined ? 'unknown' : names[0];
}
