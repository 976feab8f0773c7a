/**
 * One mirror connection over TCP, either end: frames incoming bytes with the wire FrameReader,
 * decodes and validates every message before anyone acts on it, answers PING, watches the
 * keepalive, and counts messages and wake-ups. Any framing or validation failure closes the link
 * with a logged reason; nothing from a bad message is acted on.
 */
import type { Socket } from 'node:net';
import {
  MessageType,
  decodeMessage,
  encodePing,
  encodePong,
  typeName,
  validateMessage,
  type ConnectionLimits,
  type WireMessage,
} from '../wire';
import { loadNative } from '../native';
import type { PeerReceiver } from './peer-receiver';
import { socketFd } from '../util/socket-fd';

export interface PeerLinkHandlers {
  /** A decoded, validated message (PING/PONG are handled here and not passed on). Runs on the JS thread. */
  onMessage(message: WireMessage, head: Buffer): void;
  /**
   * The payload of the WRITE_INLINE / WRITE_META delivered just before: a view of receive memory
   * that stays valid until `release()` is called (call it once the payload is written or refused).
   */
  onPayload(ownerType: number, payload: Buffer, release: () => void): void;
  /** Called once when the link is gone; `reason` says why. */
  onClose(reason: string): void;
}

export interface PeerLinkOptions {
  keepaliveIntervalMs: number;
  /** No byte received for this long → the peer is considered dead. */
  keepaliveTimeoutMs: number;
}

export interface PeerLinkStats {
  messagesSent: number;
  messagesReceived: number;
  receivedByType: Record<string, number>;
  payloadBytesReceived: number;
  /** Socket reads: each is one wake-up of the JS thread for this link. */
  wakeups: number;
  copiedPayloadBytes: number;
}

export class PeerLink {
  limits: ConnectionLimits | undefined;
  private closed = false;
  private corked = false;
  private lastReceiveMs = Date.now();
  private readonly keepaliveTimer: NodeJS.Timeout;
  private pingNonce = 1n;
  readonly stats: PeerLinkStats = {
    messagesSent: 0,
    messagesReceived: 0,
    receivedByType: {},
    payloadBytesReceived: 0,
    wakeups: 0,
    copiedPayloadBytes: 0,
  };

  /** `socket` must read into `receiver` (made by its connect or adopt). */
  constructor(
    readonly socket: Socket,
    private readonly receiver: PeerReceiver,
    private readonly handlers: PeerLinkHandlers,
    private readonly options: PeerLinkOptions,
  ) {
    socket.setNoDelay(true);
    receiver.onReceived = () => this.onData();
    socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    socket.on('close', () => this.close('connection closed by peer'));
    socket.on('end', () => this.close('peer ended the connection'));
    this.keepaliveTimer = setInterval(() => this.keepalive(), options.keepaliveIntervalMs);
    this.keepaliveTimer.unref();
  }

  /** The frame reader (its copy counters are the link's). */
  get reader(): PeerReceiver['reader'] {
    return this.receiver.reader;
  }

  /** Receive slab counters. */
  get receiveStats(): PeerReceiver['slabs']['stats'] {
    return this.receiver.slabs.stats;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  get remoteAddress(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  /**
   * Send one message (and optionally its payload right behind it) without copying the payload.
   * `onPayloadWritten` runs once the payload's bytes are handed to the kernel: only then may the
   * buffer be reused (a pool slot goes back to native at that point at the earliest).
   */
  send(message: Buffer, payload?: Buffer, onPayloadWritten?: () => void): void {
    if (this.closed) {
      onPayloadWritten?.();
      return;
    }
    this.stats.messagesSent += 1;
    this.corkUntilNextTick();
    this.socket.write(message);
    if (payload !== undefined) this.socket.write(payload, onPayloadWritten === undefined ? undefined : () => onPayloadWritten());
  }

  /**
   * Everything sent in this turn of the event loop (a batch of NBD writes, the ACKs of one batch of
   * completions) leaves in one writev: fewer syscalls and segments, and fewer wake-ups at the peer.
   */
  private corkUntilNextTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.uncork);
  }

  /** Put everything sent so far in this tick on the wire now. */
  flush(): void {
    if (this.corked && !this.closed) this.uncork();
  }

  private readonly uncork = (): void => {
    if (!this.corked) return; // flushed earlier in this tick
    this.corked = false;
    this.socket.uncork();
  };

  /** Bytes queued in user space and not yet handed to the kernel (backpressure signal). */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /** Close the link once, with a reason that is logged and passed to onClose. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.receiver.onReceived = undefined;
    clearInterval(this.keepaliveTimer);
    if (this.corked) this.uncork(); // a last message (a refusal, its reason) must leave before the close
    this.socket.destroy();
    this.receiver.slabs.close();
    this.handlers.onClose(reason);
  }

  /**
   * Hand the connection to native code (a resync channel): stop reading at once, return a
   * duplicate of the socket's fd, and end this link without onClose. Only valid while the peer
   * sends nothing more until it hears from the new owner (bytes already read would be lost).
   */
  detachFd(): number {
    this.socket.pause();
    const fd = loadNative().duplicateFd(socketFd(this.socket));
    this.closed = true;
    this.receiver.onReceived = undefined;
    clearInterval(this.keepaliveTimer);
    this.socket.destroy();
    this.receiver.slabs.close();
    return fd;
  }

  private keepalive(): void {
    if (this.closed) return;
    const silentMs = Date.now() - this.lastReceiveMs;
    if (silentMs > this.options.keepaliveTimeoutMs) {
      this.close(`keepalive timeout: nothing received for ${silentMs} ms`);
      return;
    }
    this.send(encodePing(0, this.pingNonce++));
  }

  /** A wake-up's worth of peer bytes: every reply it completes goes out together (see withHeldReplies). */
  private onData(): void {
    if (this.closed) return;
    loadNative().withHeldReplies(() => this.processFrames());
  }

  private processFrames(): void {
    this.lastReceiveMs = Date.now();
    this.stats.wakeups += 1;
    for (;;) {
      const frame = this.reader.next();
      if (frame === null) break;
      if (frame.kind === 'error') {
        this.close(`protocol error: ${frame.reason}`);
        return;
      }
      if (frame.kind === 'payload') {
        this.stats.payloadBytesReceived += frame.payload.length;
        const payload = frame.payload;
        const slabs = this.receiver.slabs;
        slabs.hold(payload);
        this.handlers.onPayload(frame.type, payload, () => slabs.release(payload));
      } else {
        const decoded = decodeMessage(frame.head, frame.body);
        if (!decoded.ok) {
          this.close(`protocol error: ${decoded.reason}`);
          return;
        }
        const message = decoded.value;
        if (this.limits !== undefined) {
          const check = validateMessage(message, this.limits);
          if (!check.ok) {
            this.close(`protocol error: ${check.reason}`);
            return;
          }
        }
        this.stats.messagesReceived += 1;
        const name = typeName(message.type);
        this.stats.receivedByType[name] = (this.stats.receivedByType[name] ?? 0) + 1;
        if (message.type === MessageType.Ping) this.send(encodePong(message.tag, message.nonce));
        else if (message.type !== MessageType.Pong) this.handlers.onMessage(message, frame.head);
      }
      if (this.closed) return;
    }
    this.stats.copiedPayloadBytes = this.reader.copiedPayloadBytes;
  }
}
