/**
 * Primary side of the mirror: sends every modifying request to the secondary with the wire
 * format (WRITE_INLINE + data for small aligned writes; WRITE_NOTIFY + WRITE_META + data for the
 * rest; TRIM / WRITE_ZEROES; FLUSH), settles each request when the secondary's ACK arrives (sync
 * mode) or at once within a bounded window (async mode), tells the secondary which writes are
 * complete on both nodes (cumulative WRITE_COMPLETE), and when the peer dies or stalls carries on
 * alone (degraded), recording the regions the peer is missing.
 */
import * as net from 'node:net';
import { NbdCommand } from '../native';
import type { BlockRequest, Replicator } from '../controller';
import * as P from '../nbd/protocol';
import {
  AckStatus,
  HEAD_BYTES,
  HelloReason,
  MessageType,
  Role,
  SECTOR_BYTES,
  TAG_COUNT,
  WriteFlag,
  encodeFlush,
  encodeHello,
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
import { DirtyRegions } from './dirty-regions';
import { GENERATION_EMPTY, helloFields } from './hello';
import type { Logger } from '../util/log';

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
  nodeId: bigint;
  /** This primary's data generation; a secondary that reports it is in sync except for dirty regions. */
  generation: bigint;
  /** The store was created empty by this process: an empty secondary matches it except for dirty regions. */
  storeCreatedEmpty: boolean;
  epoch: bigint;
  regionBytes: number;
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
  /** A write not acknowledged within this time means the peer stalled. */
  ackTimeoutMs: number;
  reconnectDelayMs: number;
}

/** One operation on the wire awaiting its ACK. */
interface PendingOp {
  seq: number; // 0 for FLUSH (not a sequenced write)
  offsetBytes: number;
  lengthBytes: number;
  payloadBytes: number;
  sentAtMs: number;
  settle: ((nbdError: number) => void) | undefined;
}

const ZERO_SECTOR = Buffer.alloc(SECTOR_BYTES);

export class PrimaryMirror implements Replicator {
  state: PeerState = 'connecting';
  stateReason = 'starting';
  readonly dirty: DirtyRegions;
  private link: PeerLink | undefined;
  private pending = new Map<number, PendingOp>();
  private freeTags: number[] = [];
  private nextSeq = 1;
  private completeThroughSeq = 0;
  private ackedAhead = new Set<number>();
  private completeScheduled = false;
  private everConnected = false;
  private lastConnectFailure = '';
  private reconnectTimer: NodeJS.Timeout | undefined;
  private ackTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lagBytes = 0;
  private windowWaiters: { bytes: number; release: () => void }[] = [];
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
  };

  constructor(
    private readonly options: PrimaryMirrorOptions,
    private readonly log: Logger,
  ) {
    this.dirty = new DirtyRegions(options.volumeSizeBytes, options.regionBytes);
    for (let t = TAG_COUNT - 1; t >= 0; t--) this.freeTags.push(t);
  }

  /** Begin connecting to the secondary (and keep reconnecting while degraded). */
  start(): void {
    this.connect();
    this.ackTimer = setInterval(() => this.checkAckTimeouts(), Math.max(100, Math.floor(this.options.ackTimeoutMs / 4)));
    this.ackTimer.unref();
  }

  /**
   * Resolve once every write sent to the peer is acknowledged (or the link is gone): a clean
   * shutdown in async mode must not drop writes the client was already answered for.
   */
  async drain(): Promise<void> {
    while (this.pending.size > 0 && this.link !== undefined && this.link.isOpen) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Stop reconnecting and close the link (shutdown). Pending requests settle as degraded. */
  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    if (this.ackTimer !== undefined) clearInterval(this.ackTimer);
    this.link?.close('node shutting down');
  }

  /** Called by the controller for every modifying request (and FLUSH). */
  replicate(request: BlockRequest, done: (nbdError: number) => void): void {
    const link = this.link;
    if (this.state !== 'connected' || link === undefined || !link.isOpen) {
      if (request.command !== NbdCommand.Flush) {
        this.dirty.mark(request.offsetBytes, request.lengthBytes);
        this.counters.degradedWrites += 1;
      }
      done(P.NBD_OK);
      return;
    }
    if (this.freeTags.length < 4) {
      // 65536 tags in flight cannot happen with a 256-slot pool; treat as a peer stall.
      link.close('too many writes in flight to the peer');
      this.dirty.mark(request.offsetBytes, request.lengthBytes);
      done(P.NBD_OK);
      return;
    }
    switch (request.command) {
      case NbdCommand.Write:
        this.sendWrite(link, request.offsetBytes, request.data, this.wireFlags(request.flags), done, request.lengthBytes);
        return;
      case NbdCommand.Trim:
      case NbdCommand.WriteZeroes:
        this.sendExtent(link, request, done);
        return;
      case NbdCommand.Flush: {
        const tag = this.takeTag();
        this.track(tag, { seq: 0, offsetBytes: 0, lengthBytes: 0, payloadBytes: 0, sentAtMs: Date.now(), settle: done });
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
      address: `${this.options.peerHost}:${this.options.peerPort}`,
      outOfSyncBytes: this.dirty.dirtyBytes,
    };
  }

  mirrorStatus(): Record<string, unknown> {
    const link = this.link;
    return {
      mode: this.options.mode,
      inlineThresholdBytes: this.options.inlineThresholdBytes,
      ...this.counters,
      inFlight: this.pending.size,
      lagBytes: this.lagBytes,
      completeThroughSeq: this.completeThroughSeq,
      lastSeq: this.nextSeq - 1,
      epoch: Number(this.options.epoch),
      copiedPayloadBytes: 0, // the primary hands pool slots to socket.write: no payload copy
      peerMessagesReceived: link?.stats.messagesReceived ?? 0,
    };
  }

  private wireFlags(nbdFlags: number): number {
    return (nbdFlags & P.NBD_CMD_FLAG_FUA) !== 0 ? WriteFlag.Fua : 0;
  }

  /** One data write: inline if small and sector-aligned, else notify + meta; the payload follows either way. */
  private sendWrite(link: PeerLink, offsetBytes: number, data: Buffer, flags: number, done: ((e: number) => void) | undefined, lengthBytes: number): void {
    const tag = this.takeTag();
    const seq = this.nextSeq++;
    const settle = this.admitAsync(lengthBytes, done);
    this.track(tag, { seq, offsetBytes, lengthBytes, payloadBytes: lengthBytes, sentAtMs: Date.now(), settle });
    const aligned = offsetBytes % SECTOR_BYTES === 0 && lengthBytes % SECTOR_BYTES === 0;
    if (aligned && lengthBytes > 0 && lengthBytes <= this.options.inlineThresholdBytes) {
      this.counters.writesInline += 1;
      const head = encodeWriteInline(tag, flags, epochLow8(this.options.epoch), offsetBytes / SECTOR_BYTES, data);
      this.counters.messagesToPeer += 2;
      link.send(head, data);
    } else {
      this.counters.writesLarge += 1;
      const heads = Buffer.allocUnsafe(HEAD_BYTES + 40);
      encodeWriteNotify(tag, flags, seq, heads, 0);
      encodeWriteMeta(tag, offsetBytes, lengthBytes, payloadCrc32c(data), this.options.epoch, heads, HEAD_BYTES);
      this.counters.messagesToPeer += 3;
      link.send(heads, data);
    }
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
      pieces.push(() => this.sendWrite(link, start, Buffer.alloc(end - start), flags, pieceDone, end - start));
    } else {
      if (start < alignedStart) pieces.push(() => this.sendWrite(link, start, ZERO_SECTOR.subarray(0, alignedStart - start), flags, pieceDone, alignedStart - start));
      pieces.push(() => {
        const tag = this.takeTag();
        const seq = this.nextSeq++;
        this.track(tag, { seq, offsetBytes: alignedStart, lengthBytes: alignedEnd - alignedStart, payloadBytes: 0, sentAtMs: Date.now(), settle: this.admitAsync(0, pieceDone) });
        const encode = request.command === NbdCommand.Trim ? encodeTrim : encodeWriteZeroes;
        if (request.command === NbdCommand.Trim) this.counters.trims += 1;
        else this.counters.zeroes += 1;
        this.sendMessage(link, encode(tag, flags, alignedStart, alignedEnd - alignedStart, this.options.epoch));
      });
      if (alignedEnd < end) pieces.push(() => this.sendWrite(link, alignedEnd, ZERO_SECTOR.subarray(0, end - alignedEnd), flags, pieceDone, end - alignedEnd));
    }
    remaining = pieces.length;
    for (const send of pieces) send();
  }

  /**
   * Async mode: the client's reply does not wait for the peer, only for room in the window of
   * unacknowledged bytes. Returns the callback to run at ACK time (undefined if already settled).
   */
  private admitAsync(bytes: number, done: ((e: number) => void) | undefined): ((e: number) => void) | undefined {
    if (this.options.mode === 'sync' || done === undefined) return done;
    this.lagBytes += bytes;
    if (this.lagBytes <= this.options.asyncWindowBytes || bytes === this.lagBytes) {
      done(P.NBD_OK);
    } else {
      this.windowWaiters.push({ bytes, release: () => done(P.NBD_OK) });
    }
    return undefined;
  }

  private sendMessage(link: PeerLink, message: Buffer): void {
    this.counters.messagesToPeer += 1;
    link.send(message);
  }

  private takeTag(): number {
    return this.freeTags.pop()!;
  }

  private track(tag: number, op: PendingOp): void {
    this.pending.set(tag, op);
  }

  private connect(): void {
    if (this.stopped) return;
    this.reconnectTimer = undefined;
    if (this.state !== 'degraded') this.setState('connecting', 'connecting to the secondary');
    const socket = net.createConnection({ host: this.options.peerHost, port: this.options.peerPort });
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
      this.handshake(socket);
    });
  }

  /** HELLO, wait for HELLO_REPLY, decide whether the secondary may join. */
  private handshake(socket: net.Socket): void {
    let accepted = false;
    const link = new PeerLink(
      socket,
      {
        onMessage: (m) => {
          if (!accepted) {
            if (m.type !== MessageType.HelloReply) {
              link.close(`protocol error: expected HELLO_REPLY, got type ${m.type}`);
              return;
            }
            const refusal = this.judgeReply(m);
            if (refusal !== undefined) {
              this.log.warn(`secondary ${link.remoteAddress} not taken into service: ${refusal}`);
              this.stateReason = refusal;
              link.close(refusal);
              return;
            }
            accepted = true;
            this.onConnected(link, m);
            return;
          }
          this.onMessage(link, m);
        },
        onPayload: () => link.close('protocol error: the secondary sent a payload'),
        onClose: (reason) => {
          if (accepted) this.onLinkLost(link, reason);
          else this.noteConnectFailure(reason);
        },
      },
      { keepaliveIntervalMs: this.options.keepaliveIntervalMs, keepaliveTimeoutMs: this.options.keepaliveTimeoutMs },
      this.log,
    );
    link.send(
      encodeHello(
        0,
        helloFields({
          role: Role.Primary,
          volumeSizeBytes: this.options.volumeSizeBytes,
          blockSizeBytes: SECTOR_BYTES,
          nodeId: this.options.nodeId,
          currentGeneration: this.options.generation,
          epoch: this.options.epoch,
          inlineThresholdBytes: this.options.inlineThresholdBytes,
        }),
      ),
    );
  }

  /** Why this secondary cannot be brought into service now, or undefined if it is in sync except for dirty regions. */
  private judgeReply(reply: HelloReplyMessage): string | undefined {
    if (reply.reason !== HelloReason.Accepted) return `the secondary refused the connection (reason ${reply.reason}: ${helloReasonText(reply.reason)})`;
    if (reply.volumeSizeBytes !== this.options.volumeSizeBytes) return `volume sizes differ: secondary ${reply.volumeSizeBytes}, primary ${this.options.volumeSizeBytes}`;
    if (reply.role !== Role.Secondary) return 'the peer is not in the secondary role';
    const sameGeneration = reply.currentGeneration === this.options.generation;
    const emptyPeerOfEmptyStart = reply.currentGeneration === GENERATION_EMPTY && this.options.storeCreatedEmpty && !this.everConnected;
    if (!sameGeneration && !emptyPeerOfEmptyStart) {
      return 'the secondary holds data of another generation and needs a full sync before it can serve as a replica';
    }
    if (this.dirty.count > 0) {
      return `the secondary misses ${this.dirty.dirtyBytes} bytes written while it was away and must be resynced first`;
    }
    return undefined;
  }

  private onConnected(link: PeerLink, reply: HelloReplyMessage): void {
    this.link = link;
    this.everConnected = true;
    // Sequence numbers are implicit per connection: both ends start again at 1 after HELLO.
    this.nextSeq = 1;
    this.completeThroughSeq = 0;
    this.ackedAhead.clear();
    this.counters.connects += 1;
    link.limits = { volumeSizeBytes: this.options.volumeSizeBytes, inlineThresholdBytes: this.options.inlineThresholdBytes };
    // Confirms the secondary is in sync with our generation as of the last sequenced write.
    this.sendMessage(link, encodeWriteComplete(this.completeThroughSeq));
    this.setState('connected', `mirroring to ${link.remoteAddress} (node ${reply.nodeId.toString(16)})`);
  }

  private onMessage(link: PeerLink, m: WireMessage): void {
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
      this.dirty.mark(op.offsetBytes, op.lengthBytes);
      op.settle?.(P.NBD_OK);
      this.releaseLag(op.payloadBytes);
      link.close(`the secondary failed a write at ${op.offsetBytes}+${op.lengthBytes} (status ${m.status})`);
      return;
    }
    this.releaseLag(op.payloadBytes);
    if (op.seq > 0) this.noteComplete(link, op.seq);
    op.settle?.(P.NBD_OK);
  }

  /** Advance the cumulative complete sequence and send one WRITE_COMPLETE per turn of the event loop. */
  private noteComplete(link: PeerLink, seq: number): void {
    this.ackedAhead.add(seq);
    while (this.ackedAhead.has(this.completeThroughSeq + 1)) {
      this.ackedAhead.delete(this.completeThroughSeq + 1);
      this.completeThroughSeq += 1;
    }
    if (this.completeScheduled) return;
    this.completeScheduled = true;
    setImmediate(() => {
      this.completeScheduled = false;
      if (link.isOpen && this.link === link) {
        this.counters.completesSent += 1;
        this.sendMessage(link, encodeWriteComplete(this.completeThroughSeq));
      }
    });
  }

  private releaseLag(bytes: number): void {
    if (this.options.mode !== 'async') return;
    this.lagBytes -= bytes;
    while (this.windowWaiters.length > 0 && this.lagBytes <= this.options.asyncWindowBytes) {
      this.windowWaiters.shift()!.release();
    }
  }

  /** The link is gone: everything in flight is recorded as missing on the peer and settles locally. */
  private onLinkLost(link: PeerLink, reason: string): void {
    if (this.link !== link) return;
    this.link = undefined;
    this.counters.disconnects += 1;
    const inFlight = [...this.pending.values()];
    this.pending.clear();
    this.freeTags = [];
    for (let t = TAG_COUNT - 1; t >= 0; t--) this.freeTags.push(t);
    for (const op of inFlight) if (op.lengthBytes > 0) this.dirty.mark(op.offsetBytes, op.lengthBytes);
    this.ackedAhead.clear();
    this.lagBytes = 0;
    const waiters = this.windowWaiters;
    this.windowWaiters = [];
    this.setState('degraded', `peer lost: ${reason}`);
    this.log.warn(`peer lost (${reason}): running degraded; ${inFlight.length} in-flight operations recorded as out of sync (${this.dirty.dirtyBytes} bytes)`);
    for (const op of inFlight) op.settle?.(P.NBD_OK);
    for (const w of waiters) w.release();
    this.scheduleReconnect();
  }

  private noteConnectFailure(reason: string): void {
    if (reason !== this.lastConnectFailure) {
      // Logged once per distinct reason: a peer that stays away must not flood the log.
      this.log.warn(`secondary ${this.options.peerHost}:${this.options.peerPort} not connected: ${reason}`);
      this.lastConnectFailure = reason;
    }
    if (this.state === 'connecting' && this.everConnected) this.setState('degraded', reason);
    else this.stateReason = reason;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer !== undefined) return;
    this.reconnectTimer = setTimeout(() => this.connect(), this.options.reconnectDelayMs);
    this.reconnectTimer.unref();
  }

  /** A write unacknowledged for longer than ackTimeoutMs means the peer stalled: go degraded. */
  private checkAckTimeouts(): void {
    const link = this.link;
    if (link === undefined || this.pending.size === 0) return;
    const now = Date.now();
    for (const op of this.pending.values()) {
      if (now - op.sentAtMs > this.options.ackTimeoutMs) {
        link.close(`no ACK for ${now - op.sentAtMs} ms (peer stalled)`);
        return;
      }
    }
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
