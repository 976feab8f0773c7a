/**
 * Streaming frame reader: takes socket chunks of any size and hands out complete frames:
 * a head on its own, a head with its body, or a raw payload whose length an earlier frame fixed.
 *
 * Zero-copy where it can be: a frame that lies inside one chunk is a subarray of that chunk, and a
 * chunk that continues the previous one in the same memory (consecutive reads into one receive
 * slab) is merged with it, so such a frame is a subarray too. A frame that spans separate chunks
 * is copied once into a new Buffer and counted (copiedPayloadBytes for payloads,
 * copiedControlBytes for heads and bodies). Pushed chunks are referenced, not copied: the caller
 * must not modify a chunk's memory while the frames cut from it are in use; `relocateBuffered`
 * moves the unframed bytes out when the caller wants to reuse that memory.
 *
 * The reader checks only what framing needs (version, type, body length, WRITE_NOTIFY → WRITE_META
 * order, payload length). Field checks and CRCs are decodeMessage / verify*. A framing error is
 * final: the reader returns one error frame and nothing after it.
 */
import {
  checkVersionAndType,
  bodyLengthProblem,
  headBodyLength,
  inlinePayloadBytes,
  metaPayloadBytes,
  readReplyPayloadBytes,
  typeHasBody,
  type Check,
} from './codec';
import { HEAD_BYTES, HeadOffset, MessageType, READ_LENGTH_BYTES_MAX, WRITE_PAYLOAD_BYTES_MAX } from './constants';
import { typeName } from './names';

export type Frame =
  | { kind: 'message'; type: number; head: Buffer; body: Buffer | null }
  /** Payload of the WRITE_INLINE, WRITE_META or READ_REPLY (`type`) framed just before it. */
  | { kind: 'payload'; type: number; payload: Buffer }
  | { kind: 'error'; reason: string };

const enum Expect {
  Head,
  Body,
  Payload,
}

const NO_TAG = -1;
/** Consumed chunk slots are dropped once this many accumulate at the front of the queue. */
const CHUNK_COMPACT_THRESHOLD = 64;

export class FrameReader {
  /** Payload bytes that had to be copied because their payload spanned chunks. */
  copiedPayloadBytes = 0;
  /** Head and body bytes that had to be copied because they spanned chunks. */
  copiedControlBytes = 0;

  private chunks: Buffer[] = [];
  private chunkIndex = 0;
  private chunkOffset = 0;
  private buffered = 0;
  private expect = Expect.Head;
  private needBytes = HEAD_BYTES;
  private pendingHead: Buffer | null = null;
  private pendingType = 0;
  private payloadOwner = 0;
  /** Tag of the WRITE_NOTIFY whose WRITE_META must come next, or NO_TAG. */
  private notifyTag = NO_TAG;
  private failureReason: string | null = null;
  private failureReported = false;

  /** Bytes received and not yet handed out in a frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The framing error, once one happened. */
  get failure(): string | null {
    return this.failureReason;
  }

  /** Payload bytes of the frame being read that have not arrived yet (0 unless a payload is due). */
  get payloadBytesDue(): number {
    return this.expect === Expect.Payload && !this.failureReason ? Math.max(0, this.needBytes - this.buffered) : 0;
  }

  /** Queues a chunk (referenced, not copied); one that continues the last chunk's memory extends it. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0 || this.failureReason) return;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.buffered += buf.length;
    const last = this.chunks.length > 0 ? this.chunks[this.chunks.length - 1]! : undefined;
    if (last !== undefined && last.buffer === buf.buffer && last.byteOffset + last.length === buf.byteOffset) {
      this.chunks[this.chunks.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + buf.length);
      return;
    }
    this.chunks.push(buf);
  }

  /**
   * Copies every byte not yet handed out in a frame (and a head still waiting for its body) out of
   * the memory it was pushed in, the unframed bytes to the start of `target`, so the caller may
   * reuse that memory. Returns the number of bytes now at the start of `target`, which the reader
   * holds from now on as its only chunk. The copy is counted like a spanning frame.
   */
  relocateBuffered(target: Buffer): number {
    if (this.pendingHead !== null) this.pendingHead = Buffer.from(this.pendingHead);
    const n = this.buffered;
    if (n > target.length) throw new RangeError(`relocateBuffered: ${n} buffered bytes do not fit ${target.length}`);
    let written = 0;
    for (let i = this.chunkIndex; i < this.chunks.length; i++) {
      const chunk = this.chunks[i]!;
      const from = i === this.chunkIndex ? this.chunkOffset : 0;
      written += chunk.copy(target, written, from);
    }
    this.chunks = n > 0 ? [target.subarray(0, n)] : [];
    this.chunkIndex = 0;
    this.chunkOffset = 0;
    if (this.expect === Expect.Payload) this.copiedPayloadBytes += n;
    else this.copiedControlBytes += n;
    return written;
  }

  /** Next complete frame, or null when more bytes are needed (or after the error frame). */
  next(): Frame | null {
    if (this.failureReason) return this.reportFailure();
    for (;;) {
      if (this.buffered < this.needBytes) return null;
      if (this.expect === Expect.Head) {
        const head = this.take(HEAD_BYTES, false);
        const frame = this.onHead(head);
        if (frame) return frame;
        continue; // a body follows: loop to see whether it is already here
      }
      if (this.expect === Expect.Body) return this.onBody(this.take(this.needBytes, false));
      const payload = this.take(this.needBytes, true);
      this.expectHead();
      return { kind: 'payload', type: this.payloadOwner, payload };
    }
  }

  /** Call at end of stream: says whether it ended on a frame boundary. */
  end(): Check {
    if (this.failureReason) return { ok: false, reason: this.failureReason };
    if (this.expect === Expect.Body) {
      return { ok: false, reason: `truncated ${typeName(this.pendingType)} body: ${this.buffered} of ${this.needBytes} bytes` };
    }
    if (this.expect === Expect.Payload) {
      return { ok: false, reason: `truncated ${typeName(this.payloadOwner)} payload: ${this.buffered} of ${this.needBytes} bytes` };
    }
    if (this.buffered > 0) return { ok: false, reason: `truncated head: ${this.buffered} of ${HEAD_BYTES} bytes` };
    if (this.notifyTag !== NO_TAG) return { ok: false, reason: 'stream ended after WRITE_NOTIFY without its WRITE_META' };
    return { ok: true };
  }

  /** Frames a head; returns its frame, or null when a body must be read first. */
  private onHead(head: Buffer): Frame | null {
    const vt = checkVersionAndType(head);
    if (!vt.ok) return this.fail(vt.reason);
    const type = vt.value;
    if (this.notifyTag !== NO_TAG && type !== MessageType.WriteMeta) {
      return this.fail(`WRITE_NOTIFY must be followed by WRITE_META, got ${typeName(type)}`);
    }
    if (type === MessageType.WriteMeta && this.notifyTag === NO_TAG) return this.fail('WRITE_META without a preceding WRITE_NOTIFY');
    if (typeHasBody(type)) {
      const bodyBytes = headBodyLength(head);
      const problem = bodyLengthProblem(type, bodyBytes);
      if (problem) return this.fail(problem);
      this.pendingHead = head;
      this.pendingType = type;
      this.expect = Expect.Body;
      this.needBytes = bodyBytes;
      return null;
    }
    if (type === MessageType.WriteInline) {
      this.expectPayload(type, inlinePayloadBytes(head));
    } else if (type === MessageType.WriteNotify) {
      this.notifyTag = head.readUInt16BE(HeadOffset.Tag);
    } else if (type === MessageType.ReadReply) {
      const payloadBytes = readReplyPayloadBytes(head);
      if (payloadBytes > READ_LENGTH_BYTES_MAX) return this.fail(`READ_REPLY length ${payloadBytes} exceeds READ_LENGTH_BYTES_MAX ${READ_LENGTH_BYTES_MAX}`);
      if (payloadBytes > 0) this.expectPayload(type, payloadBytes);
    }
    return { kind: 'message', type, head, body: null };
  }

  /** Frames a body; a WRITE_META body also fixes the length of the payload after it. */
  private onBody(body: Buffer): Frame {
    const head = this.pendingHead!;
    const type = this.pendingType;
    this.pendingHead = null;
    if (type === MessageType.WriteMeta) {
      const tag = head.readUInt16BE(HeadOffset.Tag);
      if (tag !== this.notifyTag) return this.fail(`WRITE_META tag ${tag} differs from its WRITE_NOTIFY tag ${this.notifyTag}`);
      this.notifyTag = NO_TAG;
      const payloadBytes = metaPayloadBytes(body);
      if (payloadBytes < 1 || payloadBytes > WRITE_PAYLOAD_BYTES_MAX) {
        return this.fail(`WRITE_META length ${payloadBytes} not in 1..${WRITE_PAYLOAD_BYTES_MAX} (WRITE_PAYLOAD_BYTES_MAX)`);
      }
      this.expectPayload(type, payloadBytes);
    } else {
      this.expectHead();
    }
    return { kind: 'message', type, head, body };
  }

  private expectHead(): void {
    this.expect = Expect.Head;
    this.needBytes = HEAD_BYTES;
  }

  private expectPayload(owner: number, bytes: number): void {
    this.expect = Expect.Payload;
    this.payloadOwner = owner;
    this.needBytes = bytes;
  }

  private fail(reason: string): Frame {
    this.failureReason = reason;
    this.chunks = [];
    this.chunkIndex = 0;
    this.chunkOffset = 0;
    this.buffered = 0;
    return this.reportFailure() ?? { kind: 'error', reason };
  }

  private reportFailure(): Frame | null {
    if (this.failureReported) return null;
    this.failureReported = true;
    return { kind: 'error', reason: this.failureReason! };
  }

  /** Removes n buffered bytes: a subarray when they lie in one chunk, else one counted copy. */
  private take(n: number, isPayload: boolean): Buffer {
    this.buffered -= n;
    const first = this.chunks[this.chunkIndex]!;
    const available = first.length - this.chunkOffset;
    if (available >= n) {
      const view = first.subarray(this.chunkOffset, this.chunkOffset + n);
      this.advance(n, available);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let written = 0;
    while (written < n) {
      const chunk = this.chunks[this.chunkIndex]!;
      const left = chunk.length - this.chunkOffset;
      const part = Math.min(left, n - written);
      chunk.copy(out, written, this.chunkOffset, this.chunkOffset + part);
      written += part;
      this.advance(part, left);
    }
    if (isPayload) this.copiedPayloadBytes += n;
    else this.copiedControlBytes += n;
    return out;
  }

  /** Moves the read position by n bytes within the current chunk (which had `left` unread). */
  private advance(n: number, left: number): void {
    if (n < left) {
      this.chunkOffset += n;
      return;
    }
    this.chunkIndex++;
    this.chunkOffset = 0;
    if (this.chunkIndex === this.chunks.length) {
      this.chunks = [];
      this.chunkIndex = 0;
    } else if (this.chunkIndex >= CHUNK_COMPACT_THRESHOLD) {
      this.chunks = this.chunks.slice(this.chunkIndex);
      this.chunkIndex = 0;
    }
  }
}
