/**
 * Secondary side of the mirror: accepts the primary's connection, checks its HELLO, and applies
 * every write, trim, zero and flush in stream order (overlapping operations strictly in order,
 * others concurrently), verifying CRC32C and epoch before a byte is written, and acknowledges
 * each one. A bad message writes nothing, is logged, and drops the connection.
 */
import * as net from 'node:net';
import { StoreOp } from '../native';
import type { LocalStore } from '../store/local-store';
import {
  AckStatus,
  HelloReason,
  MessageType,
  Role,
  SECTOR_BYTES,
  WIRE_VERSION,
  WriteFlag,
  encodeAck,
  encodeHelloReply,
  epochLow8,
  verifyInlineWrite,
  verifyMetaPayload,
  type HelloMessage,
  type WireMessage,
  type WriteInlineMessage,
  type WriteMetaMessage,
} from '../wire';
import { PeerLink } from '../peer/peer-link';
import { RangeGate } from '../range-gate';
import { GENERATION_EMPTY, helloFields, randomId64 } from './hello';
import type { Logger } from '../util/log';

export interface SecondaryReplicaOptions {
  listenHost: string;
  listenPort: number;
  nodeId: bigint;
  /** True when this process created the store empty: it matches a primary that also started empty. */
  storeCreatedEmpty: boolean;
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
}

/** Per-connection receive state. */
interface Session {
  link: PeerLink;
  epoch: bigint;
  primaryGeneration: bigint;
  accepted: boolean;
  /** The write whose payload is expected next. */
  awaiting: { tag: number; flags: number; offsetBytes: number; lengthBytes: number; inline: WriteInlineMessage | undefined; head: Buffer | undefined; meta: WriteMetaMessage | undefined } | undefined;
  pendingNotify: { tag: number; flags: number } | undefined;
  nextSeq: number;
  /** Operations received and not yet applied (for FLUSH ordering). */
  inFlight: Set<number>;
  nextOpId: number;
  flushWaiters: { waitFor: Set<number>; run: () => void }[];
}

export class SecondaryReplica {
  private server: net.Server | undefined;
  private session: Session | undefined;
  private readonly gate = new RangeGate();
  /** Generation this replica is in sync with (adopted at the first WRITE_COMPLETE of an accepted primary). */
  private currentGeneration: bigint;
  private highestEpoch = 0n;
  confirmedThroughSeq = 0;
  readonly counters = {
    connections: 0,
    writesApplied: 0,
    writesInline: 0,
    writesLarge: 0,
    trims: 0,
    zeroes: 0,
    flushes: 0,
    bytesApplied: 0,
    messagesReceived: 0,
    payloadsReceived: 0,
    wakeups: 0,
    completesReceived: 0,
    refusedMessages: 0,
    copiedPayloadBytes: 0,
    payloadBytesReceived: 0,
  };
  private lastDisconnectReason = '';

  constructor(
    private readonly store: LocalStore,
    private readonly options: SecondaryReplicaOptions,
    private readonly log: Logger,
  ) {
    this.currentGeneration = options.storeCreatedEmpty ? GENERATION_EMPTY : randomId64();
  }

  async listen(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.listenPort, this.options.listenHost, () => resolve());
    });
    server.on('error', (err) => this.log.error(`listener error: ${err.message}`));
    this.server = server;
    const a = server.address();
    this.log.info(`secondary listening on ${typeof a === 'object' && a !== null ? `${a.address}:${a.port}` : String(a)}`);
  }

  /** Port actually bound (0 in options picks one). */
  get port(): number {
    const a = this.server?.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  /** Stop accepting, close the link, wait for in-flight applies. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.session?.link.close('node shutting down');
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
    while (this.gate.runningCount + this.gate.waitingCount > 0) await new Promise((r) => setTimeout(r, 10));
  }

  peerStatus(): Record<string, unknown> {
    const s = this.session;
    return {
      state: s?.accepted ? 'connected' : s !== undefined ? 'connecting' : 'degraded',
      address: s?.link.remoteAddress ?? null,
      reason: s === undefined ? this.lastDisconnectReason || 'waiting for the primary' : 'connected',
    };
  }

  mirrorStatus(): Record<string, unknown> {
    const c = this.counters;
    const live = this.session?.link;
    const wakeups = c.wakeups + (live?.stats.wakeups ?? 0);
    const copied = c.copiedPayloadBytes + (live?.reader.copiedPayloadBytes ?? 0);
    const payloadBytes = c.payloadBytesReceived + (live?.stats.payloadBytesReceived ?? 0);
    const writes = c.writesApplied + c.trims + c.zeroes;
    return {
      mode: 'secondary',
      ...c,
      wakeups,
      copiedPayloadBytes: copied,
      payloadBytesReceived: payloadBytes,
      /** Payload bytes the frame reader had to concatenate because they spanned socket reads. */
      copiedBytesPerPayloadByte: payloadBytes > 0 ? copied / payloadBytes : 0,
      messagesPerWrite: writes > 0 ? (c.messagesReceived + c.payloadsReceived) / writes : 0,
      wakeupsPerWrite: writes > 0 ? wakeups / writes : 0,
      inFlight: this.session?.inFlight.size ?? 0,
      confirmedThroughSeq: this.confirmedThroughSeq,
      generation: this.currentGeneration.toString(16),
      epoch: Number(this.highestEpoch),
    };
  }

  private accept(socket: net.Socket): void {
    if (this.session !== undefined) {
      // A reconnecting primary replaces a connection we have not yet noticed is dead.
      this.log.warn(`new connection from ${socket.remoteAddress}:${socket.remotePort} replaces the current one`);
      this.session.link.close('replaced by a new connection from the primary');
    }
    this.counters.connections += 1;
    const session: Session = {
      link: undefined as unknown as PeerLink,
      epoch: 0n,
      primaryGeneration: 0n,
      accepted: false,
      awaiting: undefined,
      pendingNotify: undefined,
      nextSeq: 1,
      inFlight: new Set(),
      nextOpId: 1,
      flushWaiters: [],
    };
    session.link = new PeerLink(
      socket,
      {
        onMessage: (m, head) => this.onMessage(session, m, head),
        onPayload: (type, payload) => this.onPayload(session, type, payload),
        onClose: (reason) => this.onClose(session, reason),
      },
      { keepaliveIntervalMs: this.options.keepaliveIntervalMs, keepaliveTimeoutMs: this.options.keepaliveTimeoutMs },
      this.log,
    );
    this.session = session;
  }

  private onClose(session: Session, reason: string): void {
    const stats = session.link.stats;
    this.counters.wakeups += stats.wakeups;
    this.counters.copiedPayloadBytes += session.link.reader.copiedPayloadBytes;
    this.counters.payloadBytesReceived += stats.payloadBytesReceived;
    if (this.session === session) this.session = undefined;
    this.lastDisconnectReason = reason;
    const level = reason.startsWith('protocol error') || reason.startsWith('refused') ? 'warn' : 'info';
    this.log[level](`connection from the primary ended: ${reason}`);
  }

  private refuse(session: Session, reason: string): void {
    this.counters.refusedMessages += 1;
    session.link.close(`refused: ${reason}`);
  }

  private onMessage(session: Session, m: WireMessage, head: Buffer): void {
    this.counters.messagesReceived += 1;
    if (!session.accepted) {
      if (m.type !== MessageType.Hello) return this.refuse(session, `expected HELLO first, got type ${m.type}`);
      return this.onHello(session, m);
    }
    if (session.awaiting !== undefined && m.type !== MessageType.WriteMeta) {
      return this.refuse(session, `protocol error: type ${m.type} arrived while a write payload was expected`);
    }
    switch (m.type) {
      case MessageType.WriteInline: {
        if (m.epochLow8 !== epochLow8(session.epoch)) return this.refuse(session, `write carries epoch byte ${m.epochLow8}, the connection's epoch is ${session.epoch}`);
        session.nextSeq += 1;
        const offsetBytes = m.sectorAddress * SECTOR_BYTES;
        session.awaiting = { tag: m.tag, flags: m.flags, offsetBytes, lengthBytes: m.lengthSectors * SECTOR_BYTES, inline: m, head: Buffer.from(head), meta: undefined };
        return;
      }
      case MessageType.WriteNotify:
        if (m.seq !== session.nextSeq) return this.refuse(session, `protocol error: WRITE_NOTIFY seq ${m.seq}, expected ${session.nextSeq}`);
        session.nextSeq += 1;
        session.pendingNotify = { tag: m.tag, flags: m.flags };
        return;
      case MessageType.WriteMeta: {
        const notify = session.pendingNotify;
        if (notify === undefined || notify.tag !== m.tag) return this.refuse(session, 'protocol error: WRITE_META without its WRITE_NOTIFY');
        if (m.epoch !== session.epoch) return this.refuse(session, `write carries epoch ${m.epoch}, the connection's epoch is ${session.epoch}`);
        session.pendingNotify = undefined;
        session.awaiting = { tag: m.tag, flags: notify.flags, offsetBytes: m.offsetBytes, lengthBytes: m.lengthBytes, inline: undefined, head: undefined, meta: m };
        return;
      }
      case MessageType.Trim:
      case MessageType.WriteZeroes: {
        if (m.epoch !== session.epoch) return this.refuse(session, `${m.type === MessageType.Trim ? 'TRIM' : 'WRITE_ZEROES'} carries epoch ${m.epoch}, the connection's epoch is ${session.epoch}`);
        session.nextSeq += 1;
        const isTrim = m.type === MessageType.Trim;
        if (isTrim) this.counters.trims += 1;
        else this.counters.zeroes += 1;
        this.apply(session, m.tag, m.offsetBytes, m.lengthBytes, (m.flags & WriteFlag.Fua) !== 0, (done) => {
          done(isTrim ? this.store.trimSync(m.offsetBytes, m.lengthBytes) : this.store.zeroSync(m.offsetBytes, m.lengthBytes));
        });
        return;
      }
      case MessageType.Flush:
        this.counters.flushes += 1;
        this.flushAfterEarlierOps(session, m.tag);
        return;
      case MessageType.WriteComplete:
        this.counters.completesReceived += 1;
        if (m.completeThroughSeq >= session.nextSeq) return this.refuse(session, `protocol error: WRITE_COMPLETE ${m.completeThroughSeq} is ahead of the last write ${session.nextSeq - 1}`);
        this.confirmedThroughSeq = m.completeThroughSeq;
        // The primary confirmed we are its replica: from now on we hold its generation.
        this.currentGeneration = session.primaryGeneration;
        return;
      default:
        return this.refuse(session, `protocol error: unexpected message type ${m.type} from the primary`);
    }
  }

  private onHello(session: Session, hello: HelloMessage): void {
    const size = this.store.sizeBytes;
    let reason: number = HelloReason.Accepted;
    let why = '';
    if (hello.protocolVersionMax < WIRE_VERSION) {
      reason = HelloReason.VersionUnsupported;
      why = `primary speaks up to version ${hello.protocolVersionMax}`;
    } else if (hello.volumeSizeBytes !== size) {
      reason = HelloReason.VolumeSizeMismatch;
      why = `primary volume is ${hello.volumeSizeBytes} bytes, this replica ${size}`;
    } else if (hello.role !== Role.Primary) {
      reason = HelloReason.RoleConflict;
      why = 'the connecting node is not a primary';
    } else if (hello.epoch < this.highestEpoch) {
      reason = HelloReason.StaleEpoch;
      why = `primary epoch ${hello.epoch} is older than ${this.highestEpoch} already seen`;
    }
    const reply = encodeHelloReply(
      0,
      reason,
      helloFields({
        role: Role.Secondary,
        volumeSizeBytes: size,
        blockSizeBytes: SECTOR_BYTES,
        nodeId: this.options.nodeId,
        currentGeneration: this.currentGeneration,
        epoch: this.highestEpoch,
        inlineThresholdBytes: hello.inlineThresholdBytes,
      }),
    );
    session.link.send(reply);
    if (reason !== HelloReason.Accepted) {
      this.log.warn(`refused primary ${session.link.remoteAddress}: ${why}`);
      session.link.close(`refused: ${why}`);
      return;
    }
    session.accepted = true;
    session.epoch = hello.epoch;
    session.primaryGeneration = hello.currentGeneration;
    this.highestEpoch = hello.epoch;
    session.link.limits = { volumeSizeBytes: size, inlineThresholdBytes: hello.inlineThresholdBytes };
    this.log.info(`primary ${session.link.remoteAddress} connected (node ${hello.nodeId.toString(16)}, epoch ${hello.epoch})`);
  }

  private onPayload(session: Session, type: number, payload: Buffer): void {
    this.counters.payloadsReceived += 1;
    const w = session.awaiting;
    session.awaiting = undefined;
    if (w === undefined) return this.refuse(session, 'protocol error: payload without a write');
    const check = type === MessageType.WriteInline ? verifyInlineWrite(w.head!, payload) : verifyMetaPayload(w.meta!, payload);
    if (!check.ok) return this.refuse(session, `protocol error: ${check.reason}; nothing written`);
    if (w.inline !== undefined) this.counters.writesInline += 1;
    else this.counters.writesLarge += 1;
    const fua = (w.flags & WriteFlag.Fua) !== 0;
    this.apply(session, w.tag, w.offsetBytes, w.lengthBytes, fua, (done) => {
      if (this.store.runsSynchronously(payload.length, fua)) done(this.store.writeSync(payload, w.offsetBytes));
      else this.store.submit(StoreOp.Write, payload, w.offsetBytes, payload.length, fua, done);
    }, payload.length);
  }

  /** Apply one operation in order against overlapping ones, then ACK its tag. */
  private apply(session: Session, tag: number, offsetBytes: number, lengthBytes: number, fua: boolean, run: (done: (result: number) => void) => void, payloadBytes = 0): void {
    const opId = session.nextOpId++;
    session.inFlight.add(opId);
    this.gate.enter(offsetBytes, lengthBytes, (release) => {
      run((result) => {
        const finish = (final: number): void => {
          release();
          if (final === 0) {
            this.counters.writesApplied += payloadBytes > 0 ? 1 : 0;
            this.counters.bytesApplied += payloadBytes;
          } else {
            this.log.error(`local apply at ${offsetBytes}+${lengthBytes} failed: errno ${-final}`);
          }
          session.link.send(encodeAck(tag, final === 0 ? AckStatus.Ok : final === -28 ? AckStatus.NoSpace : AckStatus.IoError));
          this.opDone(session, opId);
        };
        // FUA on a synchronously applied write or on trim/zero: make it durable before the ACK.
        if (result === 0 && fua && !(payloadBytes > 0 && !this.store.runsSynchronously(payloadBytes, true))) {
          this.store.submit(StoreOp.Flush, null, 0, 0, false, finish);
        } else {
          finish(result);
        }
      });
    });
  }

  private opDone(session: Session, opId: number): void {
    session.inFlight.delete(opId);
    if (session.flushWaiters.length === 0) return;
    const ready: (() => void)[] = [];
    session.flushWaiters = session.flushWaiters.filter((w) => {
      w.waitFor.delete(opId);
      if (w.waitFor.size === 0) {
        ready.push(w.run);
        return false;
      }
      return true;
    });
    for (const run of ready) run();
  }

  /** FLUSH: every operation received before it is applied, then fdatasync, then ACK. */
  private flushAfterEarlierOps(session: Session, tag: number): void {
    const run = (): void => {
      this.store.submit(StoreOp.Flush, null, 0, 0, false, (result) => {
        session.link.send(encodeAck(tag, result === 0 ? AckStatus.Ok : AckStatus.IoError));
      });
    };
    if (session.inFlight.size === 0) run();
    else session.flushWaiters.push({ waitFor: new Set(session.inFlight), run });
  }
}
