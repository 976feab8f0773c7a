/**
 * Secondary side of the mirror: accepts the primary's connection, checks its HELLO, and applies
 * every write, trim, zero and flush in stream order (overlapping operations strictly in order,
 * others concurrently), verifying CRC32C and epoch before a byte is written, and acknowledges
 * each one. A bad message writes nothing, is logged, and drops the connection.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { StoreOp, loadNative } from '../native';
import type { LocalStore } from '../store/local-store';
import {
  AckStatus,
  Feature,
  HelloReason,
  MessageType,
  ReadStatus,
  Role,
  SECTOR_BYTES,
  WIRE_VERSION,
  WriteFlag,
  encodeAck,
  encodeBitmapChunks,
  encodeHashReply,
  encodeHelloReply,
  encodeReadReply,
  epochLow8,
  verifyInlineWrite,
  verifyMetaPayload,
  type HelloMessage,
  type WireMessage,
  type WriteInlineMessage,
  type WriteMetaMessage,
} from '../wire';
import { PeerLink } from '../peer/peer-link';
import { PeerReceiver } from '../peer/peer-receiver';
import { reserveReceiveSlabs } from '../peer/receive-slabs';
import { ResyncChannelReceiver } from '../peer/resync-channel';
import { RangeGate } from '../range-gate';
import { regionDigest } from './region-digest';
import { helloFields } from './hello';
import { afterResyncTarget } from './sync-decision';
import type { MirrorMetadata } from './mirror-metadata';
import type { Logger } from '../util/log';
import { CompletionTracker } from './completion-tracker';

/** Receive slabs a secondary keeps from its start: a 102 MiB resync used two. */
const RECEIVE_RESERVED_SLABS = 2;

export interface SecondaryReplicaOptions {
  listenHost: string;
  listenPort: number;
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
}

/** Per-connection receive state. */
interface Session {
  link: PeerLink;
  epoch: bigint;
  primaryGeneration: bigint;
  primaryNodeId: bigint;
  accepted: boolean;
  /** The write whose payload is expected next. */
  awaiting: { tag: number; flags: number; offsetBytes: number; lengthBytes: number; inline: WriteInlineMessage | undefined; head: Buffer | undefined; meta: WriteMetaMessage | undefined } | undefined;
  pendingNotify: { tag: number; flags: number } | undefined;
  nextSeq: number;
  /** Operations are numbered from 1 as received; which of them are applied (for FLUSH ordering). */
  applied: CompletionTracker;
  nextOpId: number;
  /** How many of them are applied (status inFlight is the rest). */
  appliedCount: number;
  /** Each runs once every operation up to and including `afterOpId` is applied, in arrival order. */
  flushWaiters: { afterOpId: number; run: () => void }[];
  /** The token the primary announced for its next resync channel (one claim only). */
  channelToken: bigint | undefined;
  /** This session's resync channel while it runs. */
  channel: ResyncChannelReceiver | undefined;
  /** The primary offered PEER_READ in its HELLO (both ends of this version do). */
  peerRead: boolean;
}

export class SecondaryReplica {
  private server: net.Server | undefined;
  private session: Session | undefined;
  private readonly gate = new RangeGate();
  confirmedThroughSeq = 0;
  /** While this node is primary, the listener only answers HELLOs with a role conflict. */
  answerAsPrimary = false;
  /** Resync traffic was seen on this connection (the replica is inconsistent until RESYNC_DONE). */
  private resyncTarget = false;
  /** A metadata write every apply must wait for (the inconsistent mark). */
  private pendingPersist: Promise<void> | undefined;
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
    resyncWrites: 0,
    resyncBytes: 0,
    hashRequests: 0,
    /** READ_REQUESTs answered: reads the primary's store failed. */
    readRequests: 0,
    resyncsCompleted: 0,
    resyncChannels: 0,
  };
  private lastDisconnectReason = '';
  /** Reused memory for reading a region to hash (fresh pages per request are costly). */
  private hashMemory = Buffer.alloc(0);
  /** The last HELLO refusal logged (a retrying peer must not flood the log). */
  private lastRefusal = '';

  constructor(
    private readonly store: LocalStore,
    private readonly meta: MirrorMetadata,
    private readonly options: SecondaryReplicaOptions,
    private readonly log: Logger,
  ) {}

  /** Whether a primary is connected and accepted right now (promotion needs --force then). */
  get primaryConnected(): boolean {
    return this.session?.accepted === true;
  }

  /** Close the current connection from the primary (promotion with --force). */
  disconnectPrimary(reason: string): void {
    this.session?.link.close(reason);
  }

  async listen(): Promise<void> {
    // Receive memory for every connection to come, its pages touched now rather than during a resync.
    reserveReceiveSlabs(RECEIVE_RESERVED_SLABS);
    // Paused: the accepted socket is rewrapped to read into the link's receive slabs (PeerReceiver.adopt).
    const server = net.createServer({ pauseOnConnect: true }, (socket) => this.accept(socket));
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
      // The primary's disk: the source of every write this replica holds, up to date while connected.
      disk: s?.accepted ? 'upToDate' : 'unknown',
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
    const channel = this.session?.channel;
    return {
      mode: 'secondary',
      ...c,
      resyncWrites: c.resyncWrites + (channel?.counters[0] ?? 0),
      resyncBytes: c.resyncBytes + (channel?.counters[1] ?? 0),
      resyncChannelActive: channel !== undefined,
      wakeups,
      copiedPayloadBytes: copied,
      payloadBytesReceived: payloadBytes,
      /** Payload bytes the frame reader had to concatenate because they spanned socket reads. */
      copiedBytesPerPayloadByte: payloadBytes > 0 ? copied / payloadBytes : 0,
      messagesPerWrite: writes > 0 ? (c.messagesReceived + c.payloadsReceived) / writes : 0,
      wakeupsPerWrite: writes > 0 ? wakeups / writes : 0,
      inFlight: this.session === undefined ? 0 : this.session.nextOpId - 1 - this.session.appliedCount,
      /** The current connection's receive memory (slabs allocated, reused, idle; payloads holding one). */
      receiveSlabs: live?.receiveStats ?? null,
      confirmedThroughSeq: this.confirmedThroughSeq,
      resyncTarget: this.resyncTarget,
      epoch: Number(this.meta.epoch),
    };
  }

  private accept(accepted: net.Socket): void {
    this.counters.connections += 1;
    const receiver = new PeerReceiver();
    let socket: net.Socket;
    try {
      socket = receiver.adopt(accepted);
    } catch (error) {
      this.log.error(`cannot take over the connection from ${accepted.remoteAddress ?? '?'}: ${(error as Error).message}`);
      accepted.destroy();
      return;
    }
    const session: Session = {
      link: undefined as unknown as PeerLink,
      epoch: 0n,
      primaryGeneration: 0n,
      primaryNodeId: 0n,
      accepted: false,
      awaiting: undefined,
      pendingNotify: undefined,
      nextSeq: 1,
      applied: new CompletionTracker(),
      appliedCount: 0,
      nextOpId: 1,
      flushWaiters: [],
      channelToken: undefined,
      channel: undefined,
      peerRead: false,
    };
    const link = new PeerLink(
      socket,
      receiver,
      {
        onMessage: (m, head) => this.onMessage(session, m, head),
        onPayload: (type, payload, release) => this.onPayload(session, type, payload, release),
        onClose: (reason) => this.onClose(session, reason),
      },
      { keepaliveIntervalMs: this.options.keepaliveIntervalMs, keepaliveTimeoutMs: this.options.keepaliveTimeoutMs },
    );
    session.link = link;
    if (this.session === undefined) this.session = session;
  }

  private onClose(session: Session, reason: string): void {
    session.channel?.stop();
    const stats = session.link.stats;
    this.counters.wakeups += stats.wakeups;
    this.counters.copiedPayloadBytes += session.link.reader.copiedPayloadBytes;
    this.counters.payloadBytesReceived += stats.payloadBytesReceived;
    if (this.session === session) this.session = undefined;
    this.lastDisconnectReason = reason;
    if (!session.accepted && reason.startsWith('refused')) return; // already logged once as a refusal
    const level = reason.startsWith('protocol error') || reason.startsWith('refused') ? 'warn' : 'info';
    this.log[level](`connection from the primary ended: ${reason}`);
    if (this.resyncTarget) this.log.warn('the connection ended during a resync: this replica stays inconsistent until the resync is resumed');
  }

  private refuse(session: Session, reason: string): void {
    this.counters.refusedMessages += 1;
    session.link.close(`refused: ${reason}`);
  }

  private onMessage(session: Session, m: WireMessage, head: Buffer): void {
    this.counters.messagesReceived += 1;
    if (!session.accepted) {
      if (m.type === MessageType.ResyncChannel) return this.attachResyncChannel(session, m.tag, m.token);
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
        this.beforeApply(m.flags);
        if (isTrim) this.counters.trims += 1;
        else this.counters.zeroes += 1;
        this.apply(session, m.tag, m.offsetBytes, m.lengthBytes, (m.flags & WriteFlag.Fua) !== 0, (done) => {
          done(isTrim ? this.store.trimSync(m.offsetBytes, m.lengthBytes) : this.store.zeroSync(m.offsetBytes, m.lengthBytes));
        });
        return;
      }
      case MessageType.Flush:
        this.counters.flushes += 1;
        this.flushAfterEarlierOps(session, () => {
          this.store.submit(StoreOp.Flush, null, 0, 0, false, (result) => {
            session.link.send(encodeAck(m.tag, result === 0 ? AckStatus.Ok : AckStatus.IoError));
          });
        });
        return;
      case MessageType.ResyncChannel:
        if (session.channel?.active) return this.refuse(session, 'protocol error: RESYNC_CHANNEL while a resync channel is open');
        session.channelToken = m.token;
        session.link.send(encodeAck(m.tag, AckStatus.Ok));
        return;
      case MessageType.Bitmap:
        return; // the primary's own bitmap: informational, the primary decides
      case MessageType.HashRequest: {
        if (m.epoch !== session.epoch) return this.refuse(session, `HASH_REQUEST carries epoch ${m.epoch}, the connection's epoch is ${session.epoch}`);
        this.counters.hashRequests += 1;
        const { tag, offsetBytes, lengthBytes } = m;
        this.flushAfterEarlierOps(session, () => {
          const data = this.hashScratch(lengthBytes);
          const result = this.store.readSync(data, offsetBytes);
          session.link.send(encodeHashReply(tag, result === 0 ? 0 : 1, result === 0 ? regionDigest(data) : 0n));
        });
        return;
      }
      case MessageType.ReadRequest: {
        if (!session.peerRead) return this.refuse(session, 'protocol error: READ_REQUEST without the PEER_READ feature');
        if (m.epoch !== session.epoch) return this.refuse(session, `READ_REQUEST carries epoch ${m.epoch}, the connection's epoch is ${session.epoch}`);
        this.counters.readRequests += 1;
        const { tag, offsetBytes, lengthBytes } = m;
        // After every earlier write (section 10); the primary holds the range's gate until the reply,
        // so no later write to these bytes arrives while the read runs.
        this.flushAfterEarlierOps(session, () => {
          const data = Buffer.allocUnsafe(lengthBytes);
          this.store.submit(StoreOp.Read, data, offsetBytes, lengthBytes, false, (result) => {
            if (result === 0) {
              session.link.send(encodeReadReply(tag, ReadStatus.Ok, data), data);
              return;
            }
            this.log.error(`a read the primary asked for failed here too (errno ${-result}) at ${offsetBytes}+${lengthBytes}`);
            session.link.send(encodeReadReply(tag, ReadStatus.IoError, null));
          });
        });
        return;
      }
      case MessageType.ResyncDone: {
        const generation = m.generation;
        const tag = m.tag;
        this.flushAfterEarlierOps(session, () => {
          this.store.submit(StoreOp.Flush, null, 0, 0, false, (result) => {
            if (result !== 0) {
              this.log.error(`flush after resync failed (errno ${-result}): staying inconsistent`);
              session.link.send(encodeAck(tag, AckStatus.IoError));
              return;
            }
            const wasTarget = this.resyncTarget;
            this.meta.generations = afterResyncTarget(this.meta.generations, generation);
            this.meta.diskState = 'upToDate';
            this.meta.dirty.clearAll();
            this.resyncTarget = false;
            if (wasTarget) this.counters.resyncsCompleted += 1;
            void this.meta.persist().then(
              () => session.link.send(encodeAck(tag, AckStatus.Ok)),
              () => session.link.send(encodeAck(tag, AckStatus.IoError)),
            );
            this.log.info(`in sync with the primary (generation ${generation.toString(16)})${wasTarget ? ': resync complete' : ''}`);
          });
        });
        return;
      }
      case MessageType.WriteComplete:
        this.counters.completesReceived += 1;
        if (m.completeThroughSeq >= session.nextSeq) return this.refuse(session, `protocol error: WRITE_COMPLETE ${m.completeThroughSeq} is ahead of the last write ${session.nextSeq - 1}`);
        this.confirmedThroughSeq = m.completeThroughSeq;
        return;
      default:
        return this.refuse(session, `protocol error: unexpected message type ${m.type} from the primary`);
    }
  }

  private onHello(session: Session, hello: HelloMessage): void {
    const size = this.store.sizeBytes;
    let reason: number = HelloReason.Accepted;
    let why = '';
    const current = this.session !== session && this.session?.accepted ? this.session : undefined;
    if (this.answerAsPrimary) {
      reason = HelloReason.RoleConflict;
      why = 'this node is primary';
    } else if (current !== undefined && current.primaryNodeId !== hello.nodeId) {
      reason = HelloReason.Busy;
      why = `already replicating for primary node ${current.primaryNodeId.toString(16)}`;
    } else if (hello.protocolVersionMax < WIRE_VERSION) {
      reason = HelloReason.VersionUnsupported;
      why = `primary speaks up to version ${hello.protocolVersionMax}`;
    } else if (hello.volumeSizeBytes !== size) {
      reason = HelloReason.VolumeSizeMismatch;
      why = `primary volume is ${hello.volumeSizeBytes} bytes, this replica ${size}`;
    } else if (hello.role !== Role.Primary) {
      reason = HelloReason.RoleConflict;
      why = 'the connecting node is not a primary';
    } else if (hello.epoch < this.meta.epoch) {
      reason = HelloReason.StaleEpoch;
      why = `primary epoch ${hello.epoch} is older than ${this.meta.epoch} already seen (a stale primary)`;
    }
    const g = this.meta.generations;
    const reply = encodeHelloReply(0, reason, helloFields({
        role: this.answerAsPrimary ? Role.Primary : Role.Secondary,
        volumeSizeBytes: size,
        blockSizeBytes: SECTOR_BYTES,
        nodeId: this.meta.nodeId,
        generations: g,
        epoch: this.meta.epoch,
        inlineThresholdBytes: hello.inlineThresholdBytes,
      }));
    session.link.send(reply);
    if (reason !== HelloReason.Accepted) {
      if (why !== this.lastRefusal) this.log.warn(`refused ${session.link.remoteAddress}: ${why}`);
      this.lastRefusal = why;
      session.link.close(`refused: ${why}`);
      return;
    }
    // Our out-of-sync regions (e.g. an activity log after a crash, or changes discarded after a split brain).
    for (const chunk of encodeBitmapChunks(this.meta.dirty.toBytes(), this.meta.dirty.regionCount, this.meta.dirty.regionBytes)) session.link.send(chunk);
    if (current !== undefined) {
      // The same primary reconnected before we noticed its old connection died: the new one wins.
      this.log.warn(`primary reconnected from ${session.link.remoteAddress}: replacing its previous connection`);
      current.link.close('replaced by a new connection from the same primary');
    }
    this.session = session;
    this.lastRefusal = '';
    session.accepted = true;
    session.primaryNodeId = hello.nodeId;
    session.epoch = hello.epoch;
    session.primaryGeneration = hello.currentGeneration;
    session.peerRead = (hello.features & Feature.PeerRead) !== 0n;
    if (hello.epoch > this.meta.epoch) {
      this.meta.epoch = hello.epoch;
      void this.meta.persist();
    }
    session.link.limits = { volumeSizeBytes: size, inlineThresholdBytes: hello.inlineThresholdBytes };
    this.log.info(`primary ${session.link.remoteAddress} connected (node ${hello.nodeId.toString(16)}, epoch ${hello.epoch})`);
  }

  /** Verify and apply one write's payload; `release` frees its receive memory once it is written or refused. */
  private onPayload(session: Session, type: number, payload: Buffer, release: () => void): void {
    this.counters.payloadsReceived += 1;
    const w = session.awaiting;
    session.awaiting = undefined;
    if (w === undefined) {
      release();
      return this.refuse(session, 'protocol error: payload without a write');
    }
    const check = type === MessageType.WriteInline ? verifyInlineWrite(w.head!, payload) : verifyMetaPayload(w.meta!, payload);
    if (!check.ok) {
      release();
      return this.refuse(session, `protocol error: ${check.reason}; nothing written`);
    }
    if (w.inline !== undefined) this.counters.writesInline += 1;
    else this.counters.writesLarge += 1;
    const fua = (w.flags & WriteFlag.Fua) !== 0;
    if ((w.flags & WriteFlag.Resync) !== 0) {
      this.counters.resyncWrites += 1;
      this.counters.resyncBytes += payload.length;
    }
    this.beforeApply(w.flags);
    this.apply(session, w.tag, w.offsetBytes, w.lengthBytes, fua, (done) => {
      // Writes up to SYNC_IO_BYTES_MAX into the page cache: a copy on this thread, cheaper than two
      // thread hand-offs (measured: resync 1.3x faster and less CPU). Larger and FUA writes, and
      // O_DIRECT stores, go to the store's worker threads.
      if (this.store.runsSynchronously(payload.length, fua)) {
        const result = this.store.writeSync(payload, w.offsetBytes);
        release();
        done(result);
      } else {
        this.store.submit(StoreOp.Write, payload, w.offsetBytes, payload.length, fua, (result) => {
          release();
          done(result);
        });
      }
    }, payload.length);
  }

  /** `bytes` of reusable memory for a synchronous read-and-hash. */
  private hashScratch(bytes: number): Buffer {
    if (this.hashMemory.length < bytes) this.hashMemory = Buffer.alloc(bytes);
    return this.hashMemory.subarray(0, bytes);
  }

  /** Resync traffic makes this replica inconsistent until RESYNC_DONE: recorded durably before it lands. */
  /**
   * A new connection claims to be the resync channel of the primary's session (docs/wire-format.md
   * section 8.2): with the token that session announced, from its address, it becomes one (native
   * code serves it from here); otherwise it is refused. The replica is marked inconsistent (durably)
   * before the claim is answered, since the primary sends nothing on the channel before that answer.
   */
  private attachResyncChannel(claim: Session, tag: number, token: bigint): void {
    const main = this.session;
    if (main === undefined || main === claim || !main.accepted || !main.link.isOpen || main.channelToken === undefined || main.channelToken !== token) {
      return this.refuse(claim, 'a resync channel claim that matches no announcement of the connected primary');
    }
    if (claim.link.socket.remoteAddress !== main.link.socket.remoteAddress) {
      // The token travels in clear text: a claim must also come from the primary's own address.
      return this.refuse(claim, `a resync channel claim from ${claim.link.remoteAddress}, not from the primary's address ${main.link.remoteAddress}`);
    }
    main.channelToken = undefined;
    let fd: number;
    try {
      fd = claim.link.detachFd();
    } catch (error) {
      this.log.error(`cannot take over the resync channel: ${(error as Error).message}`);
      return;
    }
    this.beforeApply(WriteFlag.Resync);
    const persisted = this.pendingPersist ?? Promise.resolve();
    const start = (): void => {
      if (!main.link.isOpen) {
        loadNative().closeFd(fd);
        return;
      }
      try {
        fs.writeSync(fd, encodeAck(tag, AckStatus.Ok));
      } catch (error) {
        this.log.warn(`resync channel: answering the claim failed: ${(error as Error).message}`);
        loadNative().closeFd(fd);
        return;
      }
      this.counters.resyncChannels += 1;
      let channel: ResyncChannelReceiver;
      try {
        channel = this.serveResyncChannel(main, fd);
      } catch (error) {
        this.log.error(`resync channel: cannot serve it: ${(error as Error).message}`);
        loadNative().closeFd(fd);
        main.link.close('resync channel could not be served');
        return;
      }
      main.channel = channel;
    };
    persisted.then(start, (error: Error) => {
      this.log.error(`resync channel refused: marking the replica inconsistent failed: ${error.message}`);
      loadNative().closeFd(fd);
    });
  }

  /** Serve an accepted resync channel natively; its counters join this node's when it ends. */
  private serveResyncChannel(main: Session, fd: number): ResyncChannelReceiver {
    const channel = new ResyncChannelReceiver(fd, this.store, this.store.sizeBytes, main.epoch, (reason, clean, failedWrites) => {
      if (main.channel === channel) main.channel = undefined;
      const [writes, bytes] = [channel.counters[0]!, channel.counters[1]!];
      this.counters.resyncWrites += writes;
      this.counters.resyncBytes += bytes;
      this.counters.writesApplied += writes;
      this.counters.bytesApplied += bytes;
      this.counters.writesLarge += writes;
      // Each channel write is WRITE_NOTIFY, WRITE_META and its payload (docs/wire-format.md section 12).
      this.counters.messagesReceived += 2 * writes;
      this.counters.payloadsReceived += writes;
      this.counters.payloadBytesReceived += bytes;
      if (failedWrites > 0) this.log.error(`resync channel: ${failedWrites} writes failed on the store (the primary was told)`);
      if (clean) {
        this.log.info(`resync channel closed: ${writes} writes, ${bytes} bytes`);
        return;
      }
      this.log.warn(`resync channel ended: ${reason}`);
      if (reason.startsWith('protocol error')) this.counters.refusedMessages += 1;
      main.link.close(`resync channel: ${reason}`);
    });
    return channel;
  }

  private beforeApply(flags: number): void {
    if ((flags & WriteFlag.Resync) === 0 || this.resyncTarget) return;
    this.resyncTarget = true;
    this.meta.diskState = 'inconsistent';
    const persisted = this.meta.persist();
    this.pendingPersist = persisted;
    // Once durable, later applies need not wait on it (nor pay a promise hop each).
    const settled = (): void => {
      if (this.pendingPersist === persisted) this.pendingPersist = undefined;
    };
    persisted.then(settled, settled);
  }

  /** Apply one operation in order against overlapping ones, then ACK its tag. */
  private apply(session: Session, tag: number, offsetBytes: number, lengthBytes: number, fua: boolean, run: (done: (result: number) => void) => void, payloadBytes = 0): void {
    const opId = session.nextOpId++;
    const persisted = this.pendingPersist;
    this.gate.enter(offsetBytes, lengthBytes, (release) => {
      const go = (): void => run((result) => {
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
      if (persisted === undefined) go();
      else persisted.then(go, go);
    });
  }

  private opDone(session: Session, opId: number): void {
    session.appliedCount += 1;
    const through = session.applied.complete(opId);
    // Waiters are in arrival order, so their afterOpId only grows.
    while (session.flushWaiters.length > 0 && session.flushWaiters[0]!.afterOpId <= through) session.flushWaiters.shift()!.run();
  }

  /** Run `action` once every operation received before it has been applied (FLUSH, HASH_REQUEST, RESYNC_DONE). */
  private flushAfterEarlierOps(session: Session, action: () => void): void {
    const afterOpId = session.nextOpId - 1;
    if (session.applied.completeThrough >= afterOpId) action();
    else session.flushWaiters.push({ afterOpId, run: action });
  }
}
