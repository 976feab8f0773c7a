/**
 * Reads that the primary's own store failed and that it asked its peer for instead (READ_REQUEST /
 * READ_REPLY, docs/wire-format.md sections 5.15 and 5.16): which tag waits for which client read,
 * and what a reply must be before its bytes reach the client. The mirror connection owns the
 * sending; this module owns the bookkeeping and the checks.
 */
import type { BlockRequest } from '../controller';
import { ReadStatus, verifyReadReply, type ReadReplyMessage } from '../wire';

/** -EIO: what a read that neither node could serve fails with. */
const EIO = -5;

interface PeerRead {
  request: BlockRequest;
  /** 0 once the peer's bytes are in request.data, else -errno. */
  done: (result: number) => void;
  sentAtMs: number;
}

export interface PeerReadCounters {
  /** Client reads served with the peer's bytes after the local store failed them. */
  readsFromPeer: number;
  bytesReadFromPeer: number;
  /** Reads asked of the peer that it could not serve either (or the link went away). */
  peerReadFailures: number;
  /** Ranges rewritten locally with the peer's bytes after a read from the peer, and rewrites that failed. */
  readRepairs: number;
  readRepairFailures: number;
}

export class PeerReads {
  readonly counters: PeerReadCounters = { readsFromPeer: 0, bytesReadFromPeer: 0, peerReadFailures: 0, readRepairs: 0, readRepairFailures: 0 };
  private readonly waiting = new Map<number, PeerRead>();
  /** The READ_REPLY whose payload is the next frame. */
  private replyWithPayload: { tag: number; read: PeerRead; head: Buffer } | undefined;

  /** `freeTag` gives a request tag back to the connection's tag space. */
  constructor(private readonly freeTag: (tag: number) => void) {}

  get size(): number {
    return this.waiting.size;
  }

  /** When the longest-waiting read was sent, or undefined when none waits. */
  get oldestSentAtMs(): number | undefined {
    let oldest: number | undefined;
    for (const read of this.waiting.values()) if (oldest === undefined || read.sentAtMs < oldest) oldest = read.sentAtMs;
    return oldest;
  }

  /** A READ_REQUEST with `tag` went out for `request`. */
  add(tag: number, request: BlockRequest, done: (result: number) => void): void {
    this.waiting.set(tag, { request, done, sentAtMs: Date.now() });
  }

  /**
   * A READ_REPLY head. An error status fails the read now; OK waits for the payload frame. Returns a
   * protocol error (the caller drops the connection, which fails every read still waiting).
   */
  onReply(m: ReadReplyMessage, head: Buffer): string | undefined {
    const read = this.waiting.get(m.tag);
    if (read === undefined) return `READ_REPLY for unknown tag ${m.tag}`;
    if (m.status !== ReadStatus.Ok) {
      this.finish(m.tag, read, EIO);
      return undefined;
    }
    if (m.lengthBytes !== read.request.lengthBytes) return `READ_REPLY of ${m.lengthBytes} bytes for a read of ${read.request.lengthBytes}`;
    this.replyWithPayload = { tag: m.tag, read, head: Buffer.from(head) };
    return undefined;
  }

  /** Whether the next payload frame belongs to a READ_REPLY. */
  get expectsPayload(): boolean {
    return this.replyWithPayload !== undefined;
  }

  /** The payload of the READ_REPLY framed just before: checked, then copied into the client's buffer. */
  onPayload(payload: Buffer): string | undefined {
    const reply = this.replyWithPayload;
    if (reply === undefined) return 'a payload that no READ_REPLY announced';
    this.replyWithPayload = undefined;
    const check = verifyReadReply(reply.head, payload);
    if (!check.ok) return check.reason;
    payload.copy(reply.read.request.data, 0, 0, reply.read.request.lengthBytes);
    this.counters.readsFromPeer += 1;
    this.counters.bytesReadFromPeer += payload.length;
    this.finish(reply.tag, reply.read, 0);
    return undefined;
  }

  /** The local rewrite of a range read from the peer ended with `result` (0 or -errno). */
  noteRepair(result: number): void {
    if (result === 0) this.counters.readRepairs += 1;
    else this.counters.readRepairFailures += 1;
  }

  /** The connection is gone: every waiting read fails (its tags are void with the connection). */
  failAll(): void {
    const reads = [...this.waiting.values()];
    this.waiting.clear();
    this.replyWithPayload = undefined;
    for (const read of reads) {
      this.counters.peerReadFailures += 1;
      read.done(EIO);
    }
  }

  private finish(tag: number, read: PeerRead, result: number): void {
    this.waiting.delete(tag);
    this.freeTag(tag);
    if (result !== 0) this.counters.peerReadFailures += 1;
    read.done(result);
  }
}

