/**
 * Encoder and decoder of every peer message (spec: docs/wire-format.md). Pure: no I/O, no clocks.
 *
 * Encoders write into a caller-provided Buffer at an offset (or a fresh one) and allocate nothing
 * else. Decoders never throw on peer bytes: they return `{ ok: false, reason }`.
 */
import { crc32c, crc32cRange } from './crc32c';
import {
  BITMAP_CHUNK_REGIONS_MAX,
  BITMAP_FIXED_BODY_BYTES,
  BITMAP_FLAGS_KNOWN,
  BITMAP_TOTAL_REGIONS_MAX,
  BitmapFlag,
  BitmapOffset,
  BLOCK_SIZE_MAX_BYTES,
  BLOCK_SIZE_MIN_BYTES,
  BODY_BYTES_MAX,
  EXTENT_BODY_BYTES,
  EXTENT_LENGTH_BYTES_MAX,
  ExtentOffset,
  HEAD_BYTES,
  HASH_LENGTH_BYTES_MAX,
  RANGE_DIGEST_MAX,
  HEAD_CRC_COVERED_BYTES,
  HashReplyOffset,
  HELLO_BODY_BYTES,
  HeadOffset,
  HelloOffset,
  INLINE_SECTORS_MAX,
  INLINE_THRESHOLD_MAX_BYTES,
  INLINE_THRESHOLD_MIN_BYTES,
  MessageType,
  READ_LENGTH_BYTES_MAX,
  ReadReplyOffset,
  REGION_BYTES_MAX,
  REGION_BYTES_MIN,
  Role,
  SECTOR_ADDRESS_MAX,
  SECTOR_BYTES,
  SECTOR_SHIFT,
  TAG_MAX,
  U64_NUMBER_MAX,
  WIRE_VERSION,
  WRITE_FLAGS_KNOWN,
  WRITE_PAYLOAD_BYTES_MAX,
} from './constants';
import { isKnownAckStatus, isKnownHashStatus, isKnownHelloReason, isKnownReadStatus, isKnownType, typeName } from './names';

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: string };
export type Check = { ok: true } | { ok: false; reason: string };

const OK: Check = Object.freeze({ ok: true }) as Check;

/** The state a node advertises in HELLO and HELLO_REPLY. */
export interface HelloFields {
  protocolVersionMax: number;
  role: number;
  blockSizeBytes: number;
  volumeSizeBytes: number;
  nodeId: bigint;
  /** Node id the sender expects at the other end; 0n accepts any. */
  peerNodeId: bigint;
  currentGeneration: bigint;
  bitmapGeneration: bigint;
  historyGeneration0: bigint;
  historyGeneration1: bigint;
  features: bigint;
  epoch: bigint;
  inlineThresholdBytes: number;
}

export interface HelloMessage extends HelloFields {
  type: typeof MessageType.Hello;
  tag: number;
}
export interface HelloReplyMessage extends HelloFields {
  type: typeof MessageType.HelloReply;
  tag: number;
  reason: number;
}
export interface WriteInlineMessage {
  type: typeof MessageType.WriteInline;
  tag: number;
  flags: number;
  lengthSectors: number;
  epochLow8: number;
  sectorAddress: number;
  /** CRC32C of head bytes 0..11 then the payload; checked by verifyInlineWrite once the payload is in. */
  crc32c: number;
}
export interface WriteNotifyMessage {
  type: typeof MessageType.WriteNotify;
  tag: number;
  flags: number;
  /** The write's implicit sequence number, repeated so both ends can check they agree. */
  seq: number;
}
export interface WriteMetaMessage {
  type: typeof MessageType.WriteMeta;
  tag: number;
  offsetBytes: number;
  lengthBytes: number;
  payloadCrc32c: number;
  epoch: bigint;
}
export interface AckMessage {
  type: typeof MessageType.Ack;
  tag: number;
  status: number;
}
export interface WriteCompleteMessage {
  type: typeof MessageType.WriteComplete;
  tag: number;
  completeThroughSeq: number;
}
export interface FlushMessage {
  type: typeof MessageType.Flush;
  tag: number;
}
export interface ExtentMessage<T extends number> {
  type: T;
  tag: number;
  flags: number;
  offsetBytes: number;
  lengthBytes: number;
  epoch: bigint;
}
export type TrimMessage = ExtentMessage<typeof MessageType.Trim>;
export type WriteZeroesMessage = ExtentMessage<typeof MessageType.WriteZeroes>;
export interface PingMessage {
  type: typeof MessageType.Ping;
  tag: number;
  nonce: bigint;
}
export interface PongMessage {
  type: typeof MessageType.Pong;
  tag: number;
  nonce: bigint;
}
/**
 * RESYNC_CHANNEL: on the mirror connection, the primary announces a channel token (the secondary
 * ACKs it); as the first message of a new connection, it claims that connection as the resync
 * channel of the session that announced the token (docs/wire-format.md section 8.2).
 */
export interface ResyncChannelMessage {
  type: typeof MessageType.ResyncChannel;
  tag: number;
  token: bigint;
}

/** The fixed fields of one BITMAP chunk (body bytes 0..23). */
export interface BitmapChunkFields {
  /** Region of bit 0 of the chunk's first byte; a multiple of 8. */
  firstRegion: number;
  /** Bits in this chunk: 1..BITMAP_CHUNK_REGIONS_MAX (0 only for an empty volume). */
  regionCount: number;
  /** Volume bytes one bit covers: a power of two in REGION_BYTES_MIN..REGION_BYTES_MAX. */
  regionBytes: number;
  /** BitmapFlag bits: LAST on the chunk that ends at totalRegions. */
  bitmapFlags: number;
  /** Bits in the whole bitmap: ceil(volumeSizeBytes / regionBytes). */
  totalRegions: number;
}
export interface BitmapMessage extends BitmapChunkFields {
  type: typeof MessageType.Bitmap;
  /** Chunk index modulo 65536 (0 for the first chunk). */
  tag: number;
  /** ceil(regionCount / 8) bytes: bit i of byte j is region firstRegion + 8j + i. */
  bits: Uint8Array;
}
export interface HashRequestMessage {
  type: typeof MessageType.HashRequest;
  tag: number;
  offsetBytes: number;
  lengthBytes: number;
  epoch: bigint;
}
export interface HashReplyMessage {
  type: typeof MessageType.HashReply;
  tag: number;
  status: number;
  /** First 7 bytes (56 bits) of the SHA-256 of the range's bytes (0 unless status is OK); see regionDigest. */
  rangeDigest: bigint;
}
/** READ_REQUEST: "send me these bytes, as they are after every earlier write" (feature PEER_READ). */
export interface ReadRequestMessage {
  type: typeof MessageType.ReadRequest;
  tag: number;
  offsetBytes: number;
  lengthBytes: number;
  epoch: bigint;
}
/** READ_REPLY: the status of a READ_REQUEST; `lengthBytes` payload bytes follow it (only when OK). */
export interface ReadReplyMessage {
  type: typeof MessageType.ReadReply;
  tag: number;
  status: number;
  lengthBytes: number;
  /** CRC32C of head bytes 0..11 then the payload; checked by verifyReadReply once the payload is in. */
  crc32c: number;
}
export interface ResyncDoneMessage {
  type: typeof MessageType.ResyncDone;
  tag: number;
  /** The generation the sync target now holds, whole. */
  generation: bigint;
}

export type WireMessage =
  | HelloMessage
  | HelloReplyMessage
  | WriteInlineMessage
  | WriteNotifyMessage
  | WriteMetaMessage
  | AckMessage
  | WriteCompleteMessage
  | FlushMessage
  | TrimMessage
  | WriteZeroesMessage
  | PingMessage
  | PongMessage
  | BitmapMessage
  | HashRequestMessage
  | HashReplyMessage
  | ResyncDoneMessage
  | ResyncChannelMessage
  | ReadRequestMessage
  | ReadReplyMessage;

/** Per-connection limits the decoder cannot know; used by validateMessage. */
export interface ConnectionLimits {
  volumeSizeBytes: number;
  inlineThresholdBytes: number;
}

// ---------------------------------------------------------------------------------------------
// Byte helpers (big-endian). Readers take Uint8Array so any view decodes without conversion.

const TWO_32 = 2 ** 32;

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
function u48(b: Uint8Array, o: number): number {
  return u16(b, o) * TWO_32 + u32(b, o + 2);
}
/** u64 as a number, or -1 when it exceeds 2^53-1 (an implementation limit, refused with a reason). */
function u64Number(b: Uint8Array, o: number): number {
  const hi = u32(b, o);
  if (hi > 0x1fffff) return -1;
  return hi * TWO_32 + u32(b, o + 4);
}
function u64Big(b: Uint8Array, o: number): bigint {
  return (BigInt(u32(b, o)) << 32n) | BigInt(u32(b, o + 4));
}
function u56Big(b: Uint8Array, o: number): bigint {
  return (BigInt(u32(b, o)) << 24n) | BigInt((b[o + 4]! << 16) | (b[o + 5]! << 8) | b[o + 6]!);
}
function allZero(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}
/** Direct byte stores: cheaper than Buffer.write* for the few bytes of a head. */
function put16(out: Uint8Array, o: number, v: number): void {
  out[o] = v >>> 8;
  out[o + 1] = v;
}
function put32(out: Uint8Array, o: number, v: number): void {
  out[o] = v >>> 24;
  out[o + 1] = v >>> 16;
  out[o + 2] = v >>> 8;
  out[o + 3] = v;
}
/** The low 56 bits of `v`, big-endian, in 7 bytes (the inverse of u56Big). */
function put56(out: Uint8Array, o: number, v: bigint): void {
  put32(out, o, Number(v >> 24n));
  const low = Number(v & 0xffffffn);
  out[o + 4] = low >>> 16;
  out[o + 5] = low >>> 8;
  out[o + 6] = low;
}
function zero(out: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) out[i] = 0;
}
function putU64Number(out: Uint8Array, o: number, v: number): void {
  put32(out, o, Math.floor(v / TWO_32));
  put32(out, o + 4, v % TWO_32);
}
function fail<T>(reason: string): DecodeResult<T> {
  return { ok: false, reason };
}
function hex32(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

/** Throws for a caller's own bad argument (a local bug, never peer input). */
function requireRange(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`wire encode: ${name}=${v} not in [${min}, ${max}]`);
}
function requireU64(name: string, v: bigint): void {
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`wire encode: ${name} is not a u64`);
}

// ---------------------------------------------------------------------------------------------
// Head framing shared by encoders, decoders and the frame reader.

/** Writes byte 0 (version|type), flags and tag. */
function putHeadStart(out: Buffer, o: number, type: number, flags: number, tag: number): void {
  out[o] = (WIRE_VERSION << 6) | type;
  out[o + 1] = flags;
  put16(out, o + 2, tag);
}

/** CRC32C of head bytes 0..11 (software, no allocation) continued over `tail` when given. */
function headCrc(head: Uint8Array, o: number, tail: Uint8Array | null): number {
  const seed = crc32cRange(head, o, o + HEAD_CRC_COVERED_BYTES);
  return tail && tail.length ? crc32c(tail, seed) : seed;
}

function allocate(out: Buffer | undefined, offset: number, size: number): Buffer {
  const buf = out ?? Buffer.allocUnsafe(size);
  if (offset < 0 || offset + size > buf.length) throw new RangeError(`wire encode: ${size} bytes do not fit at offset ${offset}`);
  return buf;
}

/** True for the types whose head is followed by a body (its length in head bytes 4..7). */
export function typeHasBody(type: number): boolean {
  return (
    type === MessageType.Hello ||
    type === MessageType.HelloReply ||
    type === MessageType.WriteMeta ||
    type === MessageType.Trim ||
    type === MessageType.WriteZeroes ||
    type === MessageType.Bitmap ||
    type === MessageType.HashRequest ||
    type === MessageType.ReadRequest
  );
}

/** Why a body length is not allowed for `type`, or null when it is. */
export function bodyLengthProblem(type: number, bodyBytes: number): string | null {
  if (bodyBytes > BODY_BYTES_MAX) return `${typeName(type)} body length ${bodyBytes} exceeds BODY_BYTES_MAX ${BODY_BYTES_MAX}`;
  if (type === MessageType.Hello || type === MessageType.HelloReply) {
    return bodyBytes < HELLO_BODY_BYTES ? `${typeName(type)} body length ${bodyBytes} is below ${HELLO_BODY_BYTES}` : null;
  }
  if (type === MessageType.Bitmap) {
    return bodyBytes < BITMAP_FIXED_BODY_BYTES ? `BITMAP body length ${bodyBytes} is below ${BITMAP_FIXED_BODY_BYTES}` : null;
  }
  if (bodyBytes !== EXTENT_BODY_BYTES) return `${typeName(type)} body length ${bodyBytes} is not ${EXTENT_BODY_BYTES}`;
  return null;
}

/** Version and type of a head, the first thing every receiver checks. */
export function checkVersionAndType(head: Uint8Array, o = 0): DecodeResult<number> {
  const version = head[o]! >>> 6;
  if (version !== WIRE_VERSION) return fail(`unsupported version ${version} (expected ${WIRE_VERSION})`);
  const type = head[o]! & 0x3f;
  if (!isKnownType(type)) return fail(`unknown message type ${type}`);
  return { ok: true, value: type };
}

/** Body length announced by a body-carrying head (bytes 4..7). */
export function headBodyLength(head: Uint8Array, o = 0): number {
  return u32(head, o + HeadOffset.BodyLength);
}

/** Payload bytes that follow a WRITE_INLINE head. */
export function inlinePayloadBytes(head: Uint8Array, o = 0): number {
  return (head[o + HeadOffset.InlineLengthSectorsMinus1]! + 1) << SECTOR_SHIFT;
}

/** Payload bytes that follow a READ_REPLY head (0 when it is an error). */
export function readReplyPayloadBytes(head: Uint8Array, o = 0): number {
  return u32(head, o + ReadReplyOffset.LengthBytes);
}

/** Payload bytes that follow a WRITE_META message, read from its body. */
export function metaPayloadBytes(body: Uint8Array, o = 0): number {
  return u32(body, o + ExtentOffset.LengthBytes);
}

// ---------------------------------------------------------------------------------------------
// Encoders. Each returns the buffer it wrote (out, or a fresh one of exactly the message size).

/** WRITE_INLINE head for a sector-aligned payload of 1..256 sectors; the payload is sent right after it. */
export function encodeWriteInline(
  tag: number,
  flags: number,
  epochLow8: number,
  sectorAddress: number,
  payload: Uint8Array,
  out?: Buffer,
  offset = 0,
): Buffer {
  const sectors = payload.length >>> SECTOR_SHIFT;
  if (payload.length % SECTOR_BYTES !== 0 || sectors < 1 || sectors > INLINE_SECTORS_MAX) {
    throw new RangeError(`wire encode: inline payload of ${payload.length} bytes is not 1..${INLINE_SECTORS_MAX} sectors`);
  }
  requireRange('tag', tag, 0, TAG_MAX);
  requireRange('flags', flags & ~WRITE_FLAGS_KNOWN, 0, 0);
  requireRange('epochLow8', epochLow8, 0, 0xff);
  requireRange('sectorAddress', sectorAddress, 0, SECTOR_ADDRESS_MAX);
  const buf = allocate(out, offset, HEAD_BYTES);
  putHeadStart(buf, offset, MessageType.WriteInline, flags, tag);
  buf[offset + HeadOffset.InlineLengthSectorsMinus1] = sectors - 1;
  buf[offset + HeadOffset.InlineEpochLow8] = epochLow8;
  buf.writeUIntBE(sectorAddress, offset + HeadOffset.InlineSectorAddress, 6);
  put32(buf, offset + HeadOffset.Crc, headCrc(buf, offset, payload));
  return buf;
}

/** Head with a u64 number in bytes 4..11 (WRITE_NOTIFY seq, WRITE_COMPLETE seq). */
function encodeU64Head(type: number, flags: number, tag: number, value: number, out: Buffer | undefined, offset: number): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  requireRange('u64 field', value, 0, U64_NUMBER_MAX);
  const buf = allocate(out, offset, HEAD_BYTES);
  putHeadStart(buf, offset, type, flags, tag);
  putU64Number(buf, offset + HeadOffset.U64, value);
  put32(buf, offset + HeadOffset.Crc, headCrc(buf, offset, null));
  return buf;
}

/** WRITE_NOTIFY: first message of a large or unaligned write; `seq` is the write's sequence number. */
export function encodeWriteNotify(tag: number, flags: number, seq: number, out?: Buffer, offset = 0): Buffer {
  requireRange('flags', flags & ~WRITE_FLAGS_KNOWN, 0, 0);
  requireRange('seq', seq, 1, U64_NUMBER_MAX);
  return encodeU64Head(MessageType.WriteNotify, flags, tag, seq, out, offset);
}

/** WRITE_COMPLETE: every write with seq ≤ completeThroughSeq is complete on both nodes. */
export function encodeWriteComplete(completeThroughSeq: number, out?: Buffer, offset = 0): Buffer {
  return encodeU64Head(MessageType.WriteComplete, 0, 0, completeThroughSeq, out, offset);
}

/** Head + 24-byte extent body (WRITE_META, TRIM, WRITE_ZEROES). */
function encodeExtent(
  type: number,
  tag: number,
  flags: number,
  offsetBytes: number,
  lengthBytes: number,
  payloadCrc32c: number,
  epoch: bigint,
  out: Buffer | undefined,
  offset: number,
): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  requireRange('offsetBytes', offsetBytes, 0, U64_NUMBER_MAX);
  requireU64('epoch', epoch);
  const buf = allocate(out, offset, HEAD_BYTES + EXTENT_BODY_BYTES);
  putHeadStart(buf, offset, type, flags, tag);
  put32(buf, offset + HeadOffset.BodyLength, EXTENT_BODY_BYTES);
  put32(buf, offset + 8, 0);
  const b = offset + HEAD_BYTES;
  putU64Number(buf, b + ExtentOffset.OffsetBytes, offsetBytes);
  put32(buf, b + ExtentOffset.LengthBytes, lengthBytes);
  put32(buf, b + ExtentOffset.PayloadCrc, payloadCrc32c >>> 0);
  buf.writeBigUInt64BE(epoch, b + ExtentOffset.Epoch);
  const seed = crc32cRange(buf, offset, offset + HEAD_CRC_COVERED_BYTES);
  put32(buf, offset + HeadOffset.Crc, crc32cRange(buf, b, b + EXTENT_BODY_BYTES, seed));
  return buf;
}

/** WRITE_META (head + body, 40 bytes): all metadata of a large write; the payload follows it. */
export function encodeWriteMeta(
  tag: number,
  offsetBytes: number,
  lengthBytes: number,
  payloadCrc32c: number,
  epoch: bigint,
  out?: Buffer,
  offset = 0,
): Buffer {
  requireRange('lengthBytes', lengthBytes, 1, WRITE_PAYLOAD_BYTES_MAX);
  return encodeExtent(MessageType.WriteMeta, tag, 0, offsetBytes, lengthBytes, payloadCrc32c, epoch, out, offset);
}

/** TRIM (head + body): sector-aligned extent, no payload. */
export function encodeTrim(tag: number, flags: number, offsetBytes: number, lengthBytes: number, epoch: bigint, out?: Buffer, offset = 0): Buffer {
  requireExtentArgs(flags, offsetBytes, lengthBytes);
  return encodeExtent(MessageType.Trim, tag, flags, offsetBytes, lengthBytes, 0, epoch, out, offset);
}

/** WRITE_ZEROES (head + body): sector-aligned extent, no payload. */
export function encodeWriteZeroes(tag: number, flags: number, offsetBytes: number, lengthBytes: number, epoch: bigint, out?: Buffer, offset = 0): Buffer {
  requireExtentArgs(flags, offsetBytes, lengthBytes);
  return encodeExtent(MessageType.WriteZeroes, tag, flags, offsetBytes, lengthBytes, 0, epoch, out, offset);
}

function requireExtentArgs(flags: number, offsetBytes: number, lengthBytes: number): void {
  requireRange('flags', flags & ~WRITE_FLAGS_KNOWN, 0, 0);
  requireRange('lengthBytes', lengthBytes, SECTOR_BYTES, EXTENT_LENGTH_BYTES_MAX);
  if (offsetBytes % SECTOR_BYTES !== 0 || lengthBytes % SECTOR_BYTES !== 0) throw new RangeError('wire encode: extent is not sector aligned');
}

/** ACK of a tagged request (write, TRIM, WRITE_ZEROES, FLUSH) with a status. */
export function encodeAck(tag: number, status: number, out?: Buffer, offset = 0): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  requireRange('status', status, 0, 0xff);
  const buf = allocate(out, offset, HEAD_BYTES);
  putHeadStart(buf, offset, MessageType.Ack, 0, tag);
  buf[offset + HeadOffset.Status] = status;
  zero(buf, offset + 5, offset + 12);
  put32(buf, offset + HeadOffset.Crc, headCrc(buf, offset, null));
  return buf;
}

/** FLUSH: the secondary applies all earlier writes and fdatasyncs before acknowledging. */
export function encodeFlush(tag: number, out?: Buffer, offset = 0): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  const buf = allocate(out, offset, HEAD_BYTES);
  putHeadStart(buf, offset, MessageType.Flush, 0, tag);
  zero(buf, offset + 4, offset + 12);
  put32(buf, offset + HeadOffset.Crc, headCrc(buf, offset, null));
  return buf;
}

/** Head with a u64 identifier in bytes 4..11 (PING / PONG nonce, RESYNC_DONE generation). */
function encodeNonce(type: number, tag: number, nonce: bigint, out: Buffer | undefined, offset: number): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  requireU64('nonce', nonce);
  const buf = allocate(out, offset, HEAD_BYTES);
  putHeadStart(buf, offset, type, 0, tag);
  buf.writeBigUInt64BE(nonce, offset + HeadOffset.U64);
  put32(buf, offset + HeadOffset.Crc, headCrc(buf, offset, null));
  return buf;
}

/** PING keepalive; the peer answers PONG with the same tag and nonce. */
export function encodePing(tag: number, nonce: bigint, out?: Buffer, offset = 0): Buffer {
  return encodeNonce(MessageType.Ping, tag, nonce, out, offset);
}

/** PONG: echoes a PING's tag and nonce. */
export function encodePong(tag: number, nonce: bigint, out?: Buffer, offset = 0): Buffer {
  return encodeNonce(MessageType.Pong, tag, nonce, out, offset);
}

/** RESYNC_CHANNEL with its 64-bit token (head only, like PING). */
export function encodeResyncChannel(tag: number, token: bigint, out?: Buffer, offset = 0): Buffer {
  return encodeNonce(MessageType.ResyncChannel, tag, token, out, offset);
}

/** Bitmap bytes a chunk of `regionCount` bits carries. */
export function bitmapChunkBytes(regionCount: number): number {
  return Math.ceil(regionCount / 8);
}

/** Why a BITMAP chunk's fixed fields break the format, or null; shared by encoder and decoder. */
function bitmapChunkProblem(c: BitmapChunkFields): string | null {
  if (!isPowerOfTwo(c.regionBytes) || c.regionBytes < REGION_BYTES_MIN || c.regionBytes > REGION_BYTES_MAX) {
    return `BITMAP region size ${c.regionBytes} is not a power of two in ${REGION_BYTES_MIN}..${REGION_BYTES_MAX}`;
  }
  if (c.bitmapFlags & ~BITMAP_FLAGS_KNOWN) return `BITMAP reserved flag bits set: ${hex32(c.bitmapFlags & ~BITMAP_FLAGS_KNOWN)}`;
  if (c.totalRegions > BITMAP_TOTAL_REGIONS_MAX) return `BITMAP totalRegions ${c.totalRegions} exceeds BITMAP_TOTAL_REGIONS_MAX ${BITMAP_TOTAL_REGIONS_MAX}`;
  if (c.firstRegion % 8 !== 0) return `BITMAP firstRegion ${c.firstRegion} is not a multiple of 8`;
  if (c.regionCount > BITMAP_CHUNK_REGIONS_MAX) return `BITMAP regionCount ${c.regionCount} exceeds BITMAP_CHUNK_REGIONS_MAX ${BITMAP_CHUNK_REGIONS_MAX}`;
  if (c.regionCount === 0 && c.totalRegions !== 0) return 'BITMAP regionCount 0 (only an empty bitmap has an empty chunk)';
  const end = c.firstRegion + c.regionCount;
  if (end > c.totalRegions) return `BITMAP chunk ${c.firstRegion}+${c.regionCount} goes past totalRegions ${c.totalRegions}`;
  const last = (c.bitmapFlags & BitmapFlag.Last) !== 0;
  if (last !== (end === c.totalRegions)) {
    return last ? `BITMAP chunk flagged LAST ends at ${end}, before totalRegions ${c.totalRegions}` : `BITMAP chunk ends at totalRegions ${c.totalRegions} without the LAST flag`;
  }
  return null;
}

/** Why the chunk's last byte has bits set beyond regionCount, or null. */
function bitmapTailProblem(regionCount: number, bits: Uint8Array, o: number): string | null {
  const used = regionCount % 8;
  if (used === 0 || regionCount === 0) return null;
  const extra = bits[o + bitmapChunkBytes(regionCount) - 1]! & (0xff << used) & 0xff;
  return extra ? `BITMAP unused high bits of the last byte are set: 0x${extra.toString(16).padStart(2, '0')}` : null;
}

/**
 * BITMAP (head + 24-byte fixed body + ceil(regionCount/8) bitmap bytes): one chunk of the sender's
 * out-of-sync bitmap. `tag` is the chunk index modulo 65536. encodeBitmapChunks splits a bitmap.
 */
export function encodeBitmap(tag: number, chunk: BitmapChunkFields, bits: Uint8Array, out?: Buffer, offset = 0): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  requireRange('firstRegion', chunk.firstRegion, 0, 0xffffffff);
  requireRange('regionCount', chunk.regionCount, 0, 0xffffffff);
  requireRange('regionBytes', chunk.regionBytes, 0, 0xffffffff);
  requireRange('bitmapFlags', chunk.bitmapFlags, 0, 0xffffffff);
  requireRange('totalRegions', chunk.totalRegions, 0, U64_NUMBER_MAX);
  const problem = bitmapChunkProblem(chunk);
  if (problem) throw new RangeError(`wire encode: ${problem}`);
  const bitBytes = bitmapChunkBytes(chunk.regionCount);
  if (bits.length !== bitBytes) throw new RangeError(`wire encode: BITMAP of ${chunk.regionCount} regions needs ${bitBytes} bytes, got ${bits.length}`);
  const tail = bitmapTailProblem(chunk.regionCount, bits, 0);
  if (tail) throw new RangeError(`wire encode: ${tail}`);
  const bodyBytes = BITMAP_FIXED_BODY_BYTES + bitBytes;
  const buf = allocate(out, offset, HEAD_BYTES + bodyBytes);
  putHeadStart(buf, offset, MessageType.Bitmap, 0, tag);
  put32(buf, offset + HeadOffset.BodyLength, bodyBytes);
  put32(buf, offset + 8, 0);
  const b = offset + HEAD_BYTES;
  put32(buf, b + BitmapOffset.FirstRegion, chunk.firstRegion);
  put32(buf, b + BitmapOffset.RegionCount, chunk.regionCount);
  put32(buf, b + BitmapOffset.RegionBytes, chunk.regionBytes);
  put32(buf, b + BitmapOffset.Flags, chunk.bitmapFlags);
  putU64Number(buf, b + BitmapOffset.TotalRegions, chunk.totalRegions);
  buf.set(bits, b + BitmapOffset.Bits);
  const seed = crc32cRange(buf, offset, offset + HEAD_CRC_COVERED_BYTES);
  put32(buf, offset + HeadOffset.Crc, crc32cRange(buf, b, b + bodyBytes, seed));
  return buf;
}

/** HASH_REQUEST (head + extent body): "CRC32C this sector-aligned range after every earlier write". */
export function encodeHashRequest(tag: number, offsetBytes: number, lengthBytes: number, epoch: bigint, out?: Buffer, offset = 0): Buffer {
  requireRange('lengthBytes', lengthBytes, SECTOR_BYTES, HASH_LENGTH_BYTES_MAX);
  if (offsetBytes % SECTOR_BYTES !== 0 || lengthBytes % SECTOR_BYTES !== 0) throw new RangeError('wire encode: HASH_REQUEST range is not sector aligned');
  return encodeExtent(MessageType.HashRequest, tag, 0, offsetBytes, lengthBytes, 0, epoch, out, offset);
}

/** HASH_REPLY (head only): the status and digest of the range a HASH_REQUEST with this tag asked for. */
export function encodeHashReply(tag: number, status: number, rangeDigest: bigint, out?: Buffer, offset = 0): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  requireRange('status', status, 0, 0xff);
  if (rangeDigest < 0n || rangeDigest > RANGE_DIGEST_MAX) throw new RangeError(`wire encode: rangeDigest ${rangeDigest} is not a 56-bit value`);
  if (status !== 0 && rangeDigest !== 0n) throw new RangeError('wire encode: HASH_REPLY range digest must be 0 unless the status is OK');
  const buf = allocate(out, offset, HEAD_BYTES);
  putHeadStart(buf, offset, MessageType.HashReply, 0, tag);
  buf[offset + HashReplyOffset.Status] = status;
  put56(buf, offset + HashReplyOffset.RangeDigest, rangeDigest);
  put32(buf, offset + HeadOffset.Crc, headCrc(buf, offset, null));
  return buf;
}

/** READ_REQUEST (head + extent body): "these bytes, after every earlier write"; any byte range of 1..32 MiB. */
export function encodeReadRequest(tag: number, offsetBytes: number, lengthBytes: number, epoch: bigint, out?: Buffer, offset = 0): Buffer {
  requireRange('lengthBytes', lengthBytes, 1, READ_LENGTH_BYTES_MAX);
  return encodeExtent(MessageType.ReadRequest, tag, 0, offsetBytes, lengthBytes, 0, epoch, out, offset);
}

/**
 * READ_REPLY head: the status of the READ_REQUEST with this tag. With status OK, `payload` (the
 * bytes read) is sent right after the head and the head's CRC covers it; otherwise there is none.
 */
export function encodeReadReply(tag: number, status: number, payload: Uint8Array | null, out?: Buffer, offset = 0): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  requireRange('status', status, 0, 0xff);
  const lengthBytes = payload === null ? 0 : payload.length;
  if ((status === 0) !== (lengthBytes > 0)) throw new RangeError('wire encode: a READ_REPLY carries a payload exactly when its status is OK');
  requireRange('payload length', lengthBytes, 0, READ_LENGTH_BYTES_MAX);
  const buf = allocate(out, offset, HEAD_BYTES);
  putHeadStart(buf, offset, MessageType.ReadReply, 0, tag);
  buf[offset + ReadReplyOffset.Status] = status;
  zero(buf, offset + 5, offset + ReadReplyOffset.LengthBytes);
  put32(buf, offset + ReadReplyOffset.LengthBytes, lengthBytes);
  put32(buf, offset + HeadOffset.Crc, headCrc(buf, offset, payload));
  return buf;
}

/** RESYNC_DONE (head only): the sync target now holds `generation`; answered by ACK once durable. */
export function encodeResyncDone(tag: number, generation: bigint, out?: Buffer, offset = 0): Buffer {
  return encodeNonce(MessageType.ResyncDone, tag, generation, out, offset);
}

function encodeHelloLike(type: number, tag: number, reason: number, h: HelloFields, out: Buffer | undefined, offset: number): Buffer {
  requireRange('tag', tag, 0, TAG_MAX);
  requireRange('reason', reason, 0, 0xff);
  requireRange('volumeSizeBytes', h.volumeSizeBytes, 0, U64_NUMBER_MAX);
  requireRange('protocolVersionMax', h.protocolVersionMax, 0, 0xff);
  requireRange('role', h.role, 0, 0xff);
  requireRange('blockSizeBytes', h.blockSizeBytes, 0, 0xffffffff);
  requireRange('inlineThresholdBytes', h.inlineThresholdBytes, 0, 0xffffffff);
  const buf = allocate(out, offset, HEAD_BYTES + HELLO_BODY_BYTES);
  putHeadStart(buf, offset, type, 0, tag);
  put32(buf, offset + HeadOffset.BodyLength, HELLO_BODY_BYTES);
  put32(buf, offset + 8, 0);
  buf[offset + HeadOffset.Reason] = reason;
  const b = offset + HEAD_BYTES;
  buf[b + HelloOffset.ProtocolVersionMax] = h.protocolVersionMax;
  buf[b + HelloOffset.Role] = h.role;
  put16(buf, b + HelloOffset.Reserved16, 0);
  put32(buf, b + HelloOffset.BlockSizeBytes, h.blockSizeBytes);
  putU64Number(buf, b + HelloOffset.VolumeSizeBytes, h.volumeSizeBytes);
  buf.writeBigUInt64BE(h.nodeId, b + HelloOffset.NodeId);
  buf.writeBigUInt64BE(h.peerNodeId, b + HelloOffset.PeerNodeId);
  buf.writeBigUInt64BE(h.currentGeneration, b + HelloOffset.CurrentGeneration);
  buf.writeBigUInt64BE(h.bitmapGeneration, b + HelloOffset.BitmapGeneration);
  buf.writeBigUInt64BE(h.historyGeneration0, b + HelloOffset.HistoryGeneration0);
  buf.writeBigUInt64BE(h.historyGeneration1, b + HelloOffset.HistoryGeneration1);
  buf.writeBigUInt64BE(h.features, b + HelloOffset.Features);
  buf.writeBigUInt64BE(h.epoch, b + HelloOffset.Epoch);
  put32(buf, b + HelloOffset.InlineThresholdBytes, h.inlineThresholdBytes);
  put32(buf, b + HelloOffset.Reserved32, 0);
  const seed = crc32cRange(buf, offset, offset + HEAD_CRC_COVERED_BYTES);
  put32(buf, offset + HeadOffset.Crc, crc32cRange(buf, b, b + HELLO_BODY_BYTES, seed));
  return buf;
}

/** HELLO (head + 88-byte body): the primary's state and proposals; first message on a connection. */
export function encodeHello(tag: number, hello: HelloFields, out?: Buffer, offset = 0): Buffer {
  return encodeHelloLike(MessageType.Hello, tag, 0, hello, out, offset);
}

/** HELLO_REPLY (head + 88-byte body): the secondary's state; reason 0 accepts, anything else refuses. */
export function encodeHelloReply(tag: number, reason: number, hello: HelloFields, out?: Buffer, offset = 0): Buffer {
  return encodeHelloLike(MessageType.HelloReply, tag, reason, hello, out, offset);
}

/**
 * Encodes any message (head + body, not the payload). For WRITE_INLINE the payload is needed to
 * compute the CRC, so it must be given; the message's own crc32c field is ignored.
 */
export function encodeMessage(m: WireMessage, payload?: Uint8Array): Buffer {
  switch (m.type) {
    case MessageType.Hello:
      return encodeHello(m.tag, m);
    case MessageType.HelloReply:
      return encodeHelloReply(m.tag, m.reason, m);
    case MessageType.WriteInline:
      if (!payload) throw new RangeError('wire encode: WRITE_INLINE needs its payload');
      return encodeWriteInline(m.tag, m.flags, m.epochLow8, m.sectorAddress, payload);
    case MessageType.WriteNotify:
      return encodeWriteNotify(m.tag, m.flags, m.seq);
    case MessageType.WriteMeta:
      return encodeWriteMeta(m.tag, m.offsetBytes, m.lengthBytes, m.payloadCrc32c, m.epoch);
    case MessageType.Ack:
      return encodeAck(m.tag, m.status);
    case MessageType.WriteComplete:
      return encodeWriteComplete(m.completeThroughSeq);
    case MessageType.Flush:
      return encodeFlush(m.tag);
    case MessageType.Trim:
      return encodeTrim(m.tag, m.flags, m.offsetBytes, m.lengthBytes, m.epoch);
    case MessageType.WriteZeroes:
      return encodeWriteZeroes(m.tag, m.flags, m.offsetBytes, m.lengthBytes, m.epoch);
    case MessageType.Ping:
      return encodePing(m.tag, m.nonce);
    case MessageType.Pong:
      return encodePong(m.tag, m.nonce);
    case MessageType.ResyncChannel:
      return encodeResyncChannel(m.tag, m.token);
    case MessageType.Bitmap:
      return encodeBitmap(m.tag, m, m.bits);
    case MessageType.HashRequest:
      return encodeHashRequest(m.tag, m.offsetBytes, m.lengthBytes, m.epoch);
    case MessageType.HashReply:
      return encodeHashReply(m.tag, m.status, m.rangeDigest);
    case MessageType.ResyncDone:
      return encodeResyncDone(m.tag, m.generation);
    case MessageType.ReadRequest:
      return encodeReadRequest(m.tag, m.offsetBytes, m.lengthBytes, m.epoch);
    case MessageType.ReadReply:
      if (m.lengthBytes > 0 && (!payload || payload.length !== m.lengthBytes)) throw new RangeError('wire encode: READ_REPLY needs its payload');
      return encodeReadReply(m.tag, m.status, m.lengthBytes > 0 ? payload! : null);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoders.

/** Checks the head CRC (bytes 12..15) over head bytes 0..11 followed by `tail` (body or nothing). */
function checkHeadCrc(head: Uint8Array, tail: Uint8Array | null): Check {
  const expected = u32(head, HeadOffset.Crc);
  const actual = headCrc(head, 0, tail);
  if (expected !== actual) return { ok: false, reason: `bad CRC32C: head says ${hex32(expected)}, computed ${hex32(actual)}` };
  return OK;
}

/** Flags byte check: write types allow FUA and RESYNC, every other type needs 0. */
function flagsProblem(type: number, flags: number): string | null {
  const allowed =
    type === MessageType.WriteInline || type === MessageType.WriteNotify || type === MessageType.Trim || type === MessageType.WriteZeroes
      ? WRITE_FLAGS_KNOWN
      : 0;
  return flags & ~allowed ? `${typeName(type)} reserved flag bits set: 0x${(flags & ~allowed).toString(16).padStart(2, '0')}` : null;
}

function reservedProblem(head: Uint8Array, from: number, to: number, type: number): string | null {
  return allZero(head, from, to) ? null : `${typeName(type)} reserved head bytes ${from}..${to - 1} are not zero`;
}

/**
 * Decodes one message from its 16-byte head and, for body-carrying types, its body.
 * Checks version, type, reserved bits, field ranges, and the CRC (except WRITE_INLINE, whose CRC
 * also covers the payload: see verifyInlineWrite). Never throws.
 */
export function decodeMessage(head: Uint8Array, body: Uint8Array | null = null): DecodeResult<WireMessage> {
  if (head.length < HEAD_BYTES) return fail(`truncated head: ${head.length} of ${HEAD_BYTES} bytes`);
  const vt = checkVersionAndType(head);
  if (!vt.ok) return vt;
  const type = vt.value;
  const flags = head[HeadOffset.Flags]!;
  const tag = u16(head, HeadOffset.Tag);
  const flagIssue = flagsProblem(type, flags);
  if (flagIssue) return fail(flagIssue);

  if (typeHasBody(type)) {
    const announced = headBodyLength(head);
    const lengthIssue = bodyLengthProblem(type, announced);
    if (lengthIssue) return fail(lengthIssue);
    if (!body || body.length < announced) return fail(`truncated ${typeName(type)} body: ${body ? body.length : 0} of ${announced} bytes`);
    if (body.length > announced) return fail(`${typeName(type)} body has ${body.length} bytes, head announces ${announced}`);
  } else if (body && body.length > 0) {
    return fail(`${typeName(type)} carries no body but ${body.length} body bytes were given`);
  }
  // WRITE_INLINE's CRC, and that of a READ_REPLY with data, also covers the payload: checked with it.
  if (type !== MessageType.WriteInline && !(type === MessageType.ReadReply && readReplyPayloadBytes(head) > 0)) {
    const crc = checkHeadCrc(head, body);
    if (!crc.ok) return crc;
  }

  switch (type) {
    case MessageType.Hello:
    case MessageType.HelloReply:
      return decodeHelloLike(type, tag, head, body!);
    case MessageType.WriteInline:
      return {
        ok: true,
        value: {
          type,
          tag,
          flags,
          lengthSectors: head[HeadOffset.InlineLengthSectorsMinus1]! + 1,
          epochLow8: head[HeadOffset.InlineEpochLow8]!,
          sectorAddress: u48(head, HeadOffset.InlineSectorAddress),
          crc32c: u32(head, HeadOffset.Crc),
        },
      };
    case MessageType.WriteNotify: {
      const seq = u64Number(head, HeadOffset.U64);
      if (seq < 1) return fail(seq === 0 ? 'WRITE_NOTIFY seq 0 (sequence numbers start at 1)' : 'WRITE_NOTIFY seq exceeds 2^53-1');
      return { ok: true, value: { type, tag, flags, seq } };
    }
    case MessageType.WriteComplete: {
      if (tag !== 0) return fail('WRITE_COMPLETE tag is reserved and must be 0');
      const seq = u64Number(head, HeadOffset.U64);
      if (seq < 0) return fail('WRITE_COMPLETE seq exceeds 2^53-1');
      return { ok: true, value: { type, tag, completeThroughSeq: seq } };
    }
    case MessageType.Ack: {
      const reserved = reservedProblem(head, 5, 12, type);
      if (reserved) return fail(reserved);
      const status = head[HeadOffset.Status]!;
      if (!isKnownAckStatus(status)) return fail(`ACK unknown status ${status}`);
      return { ok: true, value: { type, tag, status } };
    }
    case MessageType.Flush: {
      const reserved = reservedProblem(head, 4, 12, type);
      if (reserved) return fail(reserved);
      return { ok: true, value: { type, tag } };
    }
    case MessageType.WriteMeta:
    case MessageType.Trim:
    case MessageType.WriteZeroes:
      return decodeExtent(type, tag, flags, head, body!);
    case MessageType.Ping:
    case MessageType.Pong:
      return { ok: true, value: { type, tag, nonce: u64Big(head, HeadOffset.U64) } };
    case MessageType.ResyncChannel:
      return { ok: true, value: { type, tag, token: u64Big(head, HeadOffset.U64) } };
    case MessageType.Bitmap:
      return decodeBitmap(tag, head, body!);
    case MessageType.HashRequest:
      return decodeExtent(type, tag, flags, head, body!);
    case MessageType.HashReply: {
      const status = head[HashReplyOffset.Status]!;
      if (!isKnownHashStatus(status)) return fail(`HASH_REPLY unknown status ${status}`);
      const rangeDigest = u56Big(head, HashReplyOffset.RangeDigest);
      if (status !== 0 && rangeDigest !== 0n) return fail(`HASH_REPLY with status ${status} has a range digest (head bytes 5..11 must be 0)`);
      return { ok: true, value: { type, tag, status, rangeDigest } };
    }
    case MessageType.ResyncDone:
      return { ok: true, value: { type, tag, generation: u64Big(head, HeadOffset.U64) } };
    case MessageType.ReadRequest:
      return decodeExtent(type, tag, flags, head, body!);
    case MessageType.ReadReply: {
      const reserved = reservedProblem(head, 5, ReadReplyOffset.LengthBytes, type);
      if (reserved) return fail(reserved);
      const status = head[ReadReplyOffset.Status]!;
      if (!isKnownReadStatus(status)) return fail(`READ_REPLY unknown status ${status}`);
      const lengthBytes = readReplyPayloadBytes(head);
      if (lengthBytes > READ_LENGTH_BYTES_MAX) return fail(`READ_REPLY length ${lengthBytes} exceeds READ_LENGTH_BYTES_MAX ${READ_LENGTH_BYTES_MAX}`);
      if ((status === 0) !== (lengthBytes > 0)) {
        return fail(status === 0 ? 'READ_REPLY with status OK carries no data' : `READ_REPLY with status ${status} announces ${lengthBytes} payload bytes`);
      }
      return { ok: true, value: { type, tag, status, lengthBytes, crc32c: u32(head, HeadOffset.Crc) } };
    }
  }
  return fail(`unknown message type ${type}`);
}

function decodeExtent(type: number, tag: number, flags: number, head: Uint8Array, body: Uint8Array): DecodeResult<WireMessage> {
  const reserved = reservedProblem(head, 8, 12, type);
  if (reserved) return fail(reserved);
  const offsetBytes = u64Number(body, ExtentOffset.OffsetBytes);
  if (offsetBytes < 0) return fail(`${typeName(type)} offset exceeds 2^53-1`);
  const lengthBytes = u32(body, ExtentOffset.LengthBytes);
  const payloadCrc32c = u32(body, ExtentOffset.PayloadCrc);
  const epoch = u64Big(body, ExtentOffset.Epoch);
  if (type === MessageType.WriteMeta) {
    if (lengthBytes < 1 || lengthBytes > WRITE_PAYLOAD_BYTES_MAX) {
      return fail(`WRITE_META length ${lengthBytes} not in 1..${WRITE_PAYLOAD_BYTES_MAX} (WRITE_PAYLOAD_BYTES_MAX)`);
    }
    return { ok: true, value: { type, tag, offsetBytes, lengthBytes, payloadCrc32c, epoch } };
  }
  if (payloadCrc32c !== 0) return fail(`${typeName(type)} reserved body bytes 12..15 are not zero`);
  if (type === MessageType.ReadRequest) {
    if (lengthBytes < 1 || lengthBytes > READ_LENGTH_BYTES_MAX) return fail(`READ_REQUEST length ${lengthBytes} not in 1..${READ_LENGTH_BYTES_MAX} (READ_LENGTH_BYTES_MAX)`);
    return { ok: true, value: { type: MessageType.ReadRequest, tag, offsetBytes, lengthBytes, epoch } };
  }
  if (lengthBytes < SECTOR_BYTES || offsetBytes % SECTOR_BYTES !== 0 || lengthBytes % SECTOR_BYTES !== 0) {
    return fail(`${typeName(type)} extent ${offsetBytes}+${lengthBytes} is not whole 512-byte sectors`);
  }
  if (type === MessageType.HashRequest) {
    if (lengthBytes > HASH_LENGTH_BYTES_MAX) return fail(`HASH_REQUEST length ${lengthBytes} exceeds HASH_LENGTH_BYTES_MAX ${HASH_LENGTH_BYTES_MAX}`);
    return { ok: true, value: { type: MessageType.HashRequest, tag, offsetBytes, lengthBytes, epoch } };
  }
  return {
    ok: true,
    value: { type: type as typeof MessageType.Trim | typeof MessageType.WriteZeroes, tag, flags, offsetBytes, lengthBytes, epoch },
  };
}

function isPowerOfTwo(v: number): boolean {
  return v > 0 && v <= 0x80000000 && (v & (v - 1)) === 0;
}

function decodeBitmap(tag: number, head: Uint8Array, body: Uint8Array): DecodeResult<WireMessage> {
  const reserved = reservedProblem(head, 8, 12, MessageType.Bitmap);
  if (reserved) return fail(reserved);
  const totalRegions = u64Number(body, BitmapOffset.TotalRegions);
  if (totalRegions < 0) return fail('BITMAP totalRegions exceeds 2^53-1');
  const chunk: BitmapChunkFields = {
    firstRegion: u32(body, BitmapOffset.FirstRegion),
    regionCount: u32(body, BitmapOffset.RegionCount),
    regionBytes: u32(body, BitmapOffset.RegionBytes),
    bitmapFlags: u32(body, BitmapOffset.Flags),
    totalRegions,
  };
  const problem = bitmapChunkProblem(chunk);
  if (problem) return fail(problem);
  const expectedBytes = BITMAP_FIXED_BODY_BYTES + bitmapChunkBytes(chunk.regionCount);
  if (body.length !== expectedBytes) return fail(`BITMAP body length ${body.length} is not ${expectedBytes} for ${chunk.regionCount} regions`);
  const tail = bitmapTailProblem(chunk.regionCount, body, BitmapOffset.Bits);
  if (tail) return fail(tail);
  return { ok: true, value: { type: MessageType.Bitmap, tag, ...chunk, bits: body.subarray(BitmapOffset.Bits) } };
}

function decodeHelloLike(type: number, tag: number, head: Uint8Array, body: Uint8Array): DecodeResult<WireMessage> {
  const name = typeName(type);
  const reason = head[HeadOffset.Reason]!;
  if (type === MessageType.Hello && head[HeadOffset.Reason] !== 0) return fail('HELLO reserved head bytes 8..11 are not zero');
  const reserved = reservedProblem(head, 9, 12, type);
  if (reserved) return fail(reserved);
  if (type === MessageType.HelloReply && !isKnownHelloReason(reason)) return fail(`HELLO_REPLY unknown reason ${reason}`);
  if (u16(body, HelloOffset.Reserved16) !== 0 || u32(body, HelloOffset.Reserved32) !== 0) return fail(`${name} reserved body bytes are not zero`);
  const protocolVersionMax = body[HelloOffset.ProtocolVersionMax]!;
  if (protocolVersionMax < 1) return fail(`${name} protocolVersionMax 0`);
  const role = body[HelloOffset.Role]!;
  if (role !== Role.Primary && role !== Role.Secondary) return fail(`${name} unknown role ${role}`);
  const blockSizeBytes = u32(body, HelloOffset.BlockSizeBytes);
  if (!isPowerOfTwo(blockSizeBytes) || blockSizeBytes < BLOCK_SIZE_MIN_BYTES || blockSizeBytes > BLOCK_SIZE_MAX_BYTES) {
    return fail(`${name} block size ${blockSizeBytes} is not a power of two in ${BLOCK_SIZE_MIN_BYTES}..${BLOCK_SIZE_MAX_BYTES}`);
  }
  const volumeSizeBytes = u64Number(body, HelloOffset.VolumeSizeBytes);
  if (volumeSizeBytes < 0) return fail(`${name} volume size exceeds 2^53-1`);
  if (volumeSizeBytes % blockSizeBytes !== 0) return fail(`${name} volume size ${volumeSizeBytes} is not a multiple of the block size ${blockSizeBytes}`);
  const inlineThresholdBytes = u32(body, HelloOffset.InlineThresholdBytes);
  if (
    inlineThresholdBytes < INLINE_THRESHOLD_MIN_BYTES ||
    inlineThresholdBytes > INLINE_THRESHOLD_MAX_BYTES ||
    inlineThresholdBytes % SECTOR_BYTES !== 0
  ) {
    return fail(`${name} inline threshold ${inlineThresholdBytes} is not whole sectors in ${INLINE_THRESHOLD_MIN_BYTES}..${INLINE_THRESHOLD_MAX_BYTES}`);
  }
  const fields: HelloFields = {
    protocolVersionMax,
    role,
    blockSizeBytes,
    volumeSizeBytes,
    nodeId: u64Big(body, HelloOffset.NodeId),
    peerNodeId: u64Big(body, HelloOffset.PeerNodeId),
    currentGeneration: u64Big(body, HelloOffset.CurrentGeneration),
    bitmapGeneration: u64Big(body, HelloOffset.BitmapGeneration),
    historyGeneration0: u64Big(body, HelloOffset.HistoryGeneration0),
    historyGeneration1: u64Big(body, HelloOffset.HistoryGeneration1),
    features: u64Big(body, HelloOffset.Features),
    epoch: u64Big(body, HelloOffset.Epoch),
    inlineThresholdBytes,
  };
  if (type === MessageType.Hello) return { ok: true, value: { type: MessageType.Hello, tag, ...fields } };
  return { ok: true, value: { type: MessageType.HelloReply, tag, reason, ...fields } };
}

// ---------------------------------------------------------------------------------------------
// Checks that need more than one message, or per-connection knowledge.

/** Checks a WRITE_INLINE once its payload is complete: payload length and CRC over head 0..11 + payload. */
export function verifyInlineWrite(head: Uint8Array, payload: Uint8Array): Check {
  if (head.length < HEAD_BYTES) return { ok: false, reason: `truncated head: ${head.length} of ${HEAD_BYTES} bytes` };
  const expectedBytes = inlinePayloadBytes(head);
  if (payload.length !== expectedBytes) return { ok: false, reason: `WRITE_INLINE payload has ${payload.length} bytes, head announces ${expectedBytes}` };
  return checkHeadCrc(head, payload);
}

/** Checks a READ_REPLY's payload once complete: length and CRC over head 0..11 + payload. */
export function verifyReadReply(head: Uint8Array, payload: Uint8Array): Check {
  if (head.length < HEAD_BYTES) return { ok: false, reason: `truncated head: ${head.length} of ${HEAD_BYTES} bytes` };
  const expectedBytes = readReplyPayloadBytes(head);
  if (payload.length !== expectedBytes) return { ok: false, reason: `READ_REPLY payload has ${payload.length} bytes, head announces ${expectedBytes}` };
  return checkHeadCrc(head, payload);
}

/** Checks a large write's payload against its WRITE_META: length and payload CRC32C. */
export function verifyMetaPayload(meta: WriteMetaMessage, payload: Uint8Array): Check {
  if (payload.length !== meta.lengthBytes) return { ok: false, reason: `WRITE_META payload has ${payload.length} bytes, meta announces ${meta.lengthBytes}` };
  const actual = crc32c(payload);
  if (actual !== meta.payloadCrc32c) {
    return { ok: false, reason: `bad payload CRC32C: meta says ${hex32(meta.payloadCrc32c)}, computed ${hex32(actual)}` };
  }
  return OK;
}

/** CRC32C a large write's payload for WRITE_META (through the injectable implementation). */
export function payloadCrc32c(payload: Uint8Array): number {
  return crc32c(payload);
}

/** Low 8 bits of the full epoch, the value WRITE_INLINE carries. */
export function epochLow8(epoch: bigint): number {
  return Number(epoch & 0xffn);
}

/**
 * Range checks that need the connection's negotiated volume size and inline threshold: an extent
 * that ends past the volume, or an inline write above the threshold, is a protocol error.
 */
export function validateMessage(m: WireMessage, limits: ConnectionLimits): Check {
  switch (m.type) {
    case MessageType.WriteInline: {
      const lengthBytes = m.lengthSectors * SECTOR_BYTES;
      if (lengthBytes > limits.inlineThresholdBytes) {
        return { ok: false, reason: `WRITE_INLINE of ${lengthBytes} bytes exceeds the inline threshold ${limits.inlineThresholdBytes}` };
      }
      return extentWithinVolume(m.type, m.sectorAddress * SECTOR_BYTES, lengthBytes, limits.volumeSizeBytes);
    }
    case MessageType.WriteMeta:
    case MessageType.Trim:
    case MessageType.WriteZeroes:
    case MessageType.HashRequest:
    case MessageType.ReadRequest:
      return extentWithinVolume(m.type, m.offsetBytes, m.lengthBytes, limits.volumeSizeBytes);
    case MessageType.Bitmap: {
      const expected = bitmapRegionCount(limits.volumeSizeBytes, m.regionBytes);
      if (m.totalRegions !== expected) {
        return { ok: false, reason: `BITMAP totalRegions ${m.totalRegions} is not ceil(volume size ${limits.volumeSizeBytes} / region size ${m.regionBytes}) = ${expected}` };
      }
      return OK;
    }
    default:
      return OK;
  }
}

/** Bits of the bitmap of a volume: ceil(volumeSizeBytes / regionBytes). */
export function bitmapRegionCount(volumeSizeBytes: number, regionBytes: number): number {
  return Math.ceil(volumeSizeBytes / regionBytes);
}

function extentWithinVolume(type: number, offsetBytes: number, lengthBytes: number, volumeSizeBytes: number): Check {
  if (offsetBytes > volumeSizeBytes || lengthBytes > volumeSizeBytes - offsetBytes) {
    return { ok: false, reason: `${typeName(type)} extent ${offsetBytes}+${lengthBytes} ends beyond the volume size ${volumeSizeBytes}` };
  }
  return OK;
}
