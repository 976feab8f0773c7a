/**
 * Writes test/vectors/wire.json. It assembles every byte from the layout tables of
 * docs/wire-format.md with its own helpers and uses nothing from src/wire except the CRC32C
 * (itself checked against published vectors), so the codec is tested against a second, independent
 * reading of the spec rather than against its own output.
 *
 * Usage: node dist/test/vectors/generate-wire-vectors.js > test/vectors/wire.json
 */
import { createHash } from 'node:crypto';
import { crc32cSoftware } from '../../src/wire/crc32c';

type Fields = Record<string, string | number>;
interface Vector {
  name: string;
  description: string;
  hex: string;
  valid: boolean;
  /** One entry per decoded message, in stream order; payloadHex when a payload followed it. */
  fields?: Fields[];
  /** Substring of the rejection reason (invalid vectors). */
  reason?: string;
  /** Connection limits for validateMessage (the decoder alone cannot know them). */
  limits?: { volumeSizeBytes: number; inlineThresholdBytes: number };
}

const V1 = 0x40; // version 1 in the top two bits of byte 0
const T = { HELLO: 1, HELLO_REPLY: 2, WRITE_INLINE: 3, WRITE_NOTIFY: 4, WRITE_META: 5, ACK: 6, WRITE_COMPLETE: 7, FLUSH: 8, TRIM: 9, WRITE_ZEROES: 10, PING: 11, PONG: 12, BITMAP: 13, HASH_REQUEST: 14, HASH_REPLY: 15, RESYNC_DONE: 16, RESYNC_CHANNEL: 17, READ_REQUEST: 18, READ_REPLY: 19 };

function be(value: bigint | number, bytes: number): number[] {
  let v = BigInt(value);
  const out = new Array<number>(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}
function crcOf(bytes: number[]): number[] {
  return be(crc32cSoftware(Uint8Array.from(bytes)), 4);
}
/** Head: byte0, flags, tag, 8 type-specific bytes, then CRC32C(head 0..11 ‖ tail). */
function head(byte0: number, flags: number, tag: number, mid: number[], tail: number[] = []): number[] {
  if (mid.length !== 8) throw new Error('mid must be 8 bytes');
  const first12 = [byte0, flags, ...be(tag, 2), ...mid];
  return [...first12, ...crcOf([...first12, ...tail])];
}
function hex(bytes: number[]): string {
  return Buffer.from(bytes).toString('hex');
}
function id(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}
function pattern(length: number, salt: number): number[] {
  return Array.from({ length }, (_, i) => (i * 31 + salt) & 0xff);
}

// ---- HELLO body (88 bytes) ----
interface Hello {
  protocolVersionMax: number; role: number; blockSizeBytes: number; volumeSizeBytes: number;
  nodeId: bigint; peerNodeId: bigint; currentGeneration: bigint; bitmapGeneration: bigint;
  historyGeneration0: bigint; historyGeneration1: bigint; features: bigint; epoch: bigint; inlineThresholdBytes: number;
}
function helloBody(h: Hello): number[] {
  return [
    h.protocolVersionMax, h.role, 0, 0, ...be(h.blockSizeBytes, 4), ...be(h.volumeSizeBytes, 8),
    ...be(h.nodeId, 8), ...be(h.peerNodeId, 8), ...be(h.currentGeneration, 8), ...be(h.bitmapGeneration, 8),
    ...be(h.historyGeneration0, 8), ...be(h.historyGeneration1, 8), ...be(h.features, 8), ...be(h.epoch, 8),
    ...be(h.inlineThresholdBytes, 4), 0, 0, 0, 0,
  ];
}
function helloJson(h: Hello): Fields {
  return {
    protocolVersionMax: h.protocolVersionMax, role: h.role, blockSizeBytes: h.blockSizeBytes, volumeSizeBytes: h.volumeSizeBytes,
    nodeId: id(h.nodeId), peerNodeId: id(h.peerNodeId), currentGeneration: id(h.currentGeneration), bitmapGeneration: id(h.bitmapGeneration),
    historyGeneration0: id(h.historyGeneration0), historyGeneration1: id(h.historyGeneration1), features: id(h.features), epoch: id(h.epoch),
    inlineThresholdBytes: h.inlineThresholdBytes,
  };
}
function hello(tag: number, h: Hello, bodyLength = 88): number[] {
  const body = helloBody(h);
  return [...head(V1 | T.HELLO, 0, tag, [...be(bodyLength, 4), 0, 0, 0, 0], body), ...body];
}
function helloReply(tag: number, reason: number, h: Hello): number[] {
  const body = helloBody(h);
  return [...head(V1 | T.HELLO_REPLY, 0, tag, [...be(88, 4), reason, 0, 0, 0], body), ...body];
}

// ---- writes ----
function inline(tag: number, flags: number, epochLow8: number, sector: number, payload: number[]): number[] {
  return [...head(V1 | T.WRITE_INLINE, flags, tag, [payload.length / 512 - 1, epochLow8, ...be(sector, 6)], payload), ...payload];
}
function extentBody(offset: bigint | number, length: number, crc: number, epoch: bigint): number[] {
  return [...be(offset, 8), ...be(length, 4), ...be(crc, 4), ...be(epoch, 8)];
}
function extent(type: number, tag: number, flags: number, body: number[], bodyLength = 24): number[] {
  return [...head(V1 | type, flags, tag, [...be(bodyLength, 4), 0, 0, 0, 0], body), ...body];
}
function notify(tag: number, flags: number, seq: bigint | number): number[] {
  return head(V1 | T.WRITE_NOTIFY, flags, tag, be(seq, 8));
}
function meta(tag: number, offset: number, payload: number[], epoch: bigint, lengthOverride?: number): number[] {
  const crc = crc32cSoftware(Uint8Array.from(payload));
  return extent(T.WRITE_META, tag, 0, extentBody(offset, lengthOverride ?? payload.length, crc, epoch));
}
function ack(tag: number, status: number, flags = 0, reserved: number[] = [0, 0, 0, 0, 0, 0, 0]): number[] {
  return head(V1 | T.ACK, flags, tag, [status, ...reserved]);
}
function complete(seq: number, tag = 0): number[] {
  return head(V1 | T.WRITE_COMPLETE, 0, tag, be(seq, 8));
}

// ---- resync ----
const LAST = 1;
interface Chunk { tag: number; firstRegion: number; regionCount: number; regionBytes: number; flags: number; totalRegions: number; bits: number[] }
/** BITMAP: head (body length in 4..7, 8..11 reserved) + u32 firstRegion, u32 regionCount, u32 regionBytes, u32 flags, u64 totalRegions, bits. */
function bitmap(c: Chunk, headFlags = 0, bodyLengthOverride?: number): number[] {
  const body = [...be(c.firstRegion, 4), ...be(c.regionCount, 4), ...be(c.regionBytes, 4), ...be(c.flags, 4), ...be(c.totalRegions, 8), ...c.bits];
  return [...head(V1 | T.BITMAP, headFlags, c.tag, [...be(bodyLengthOverride ?? body.length, 4), 0, 0, 0, 0], body), ...body];
}
function bitmapJson(c: Chunk): Fields {
  return { type: 'BITMAP', tag: c.tag, firstRegion: c.firstRegion, regionCount: c.regionCount, regionBytes: c.regionBytes, bitmapFlags: c.flags, totalRegions: c.totalRegions, bits: hex(c.bits) };
}
function hashRequest(tag: number, offset: number, length: number, epoch: bigint, flags = 0, reservedCrc = 0): number[] {
  return extent(T.HASH_REQUEST, tag, flags, extentBody(offset, length, reservedCrc, epoch));
}
/** HASH_REPLY: byte 4 status, 5..7 reserved, 8..11 u32 CRC32C of the range. */
function hashReply(tag: number, status: number, rangeDigest: bigint): number[] {
  return head(V1 | T.HASH_REPLY, 0, tag, [status, ...be(rangeDigest, 7)]);
}
/** The first 7 bytes of a SHA-256, as the 56-bit number HASH_REPLY carries. */
function digest56(data: Uint8Array): bigint {
  return createHash('sha256').update(data).digest().readBigUInt64BE(0) >> 8n;
}
function hex56(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}
// ---- reading from the peer ----
function readRequest(tag: number, offset: number, length: number, epoch: bigint, reservedCrc = 0): number[] {
  return extent(T.READ_REQUEST, tag, 0, extentBody(offset, length, reservedCrc, epoch));
}
/** READ_REPLY: byte 4 status, 5..7 reserved, 8..11 u32 payload length; the CRC continues over the payload. */
function readReply(tag: number, status: number, payload: number[], lengthOverride?: number, reserved: number[] = [0, 0, 0]): number[] {
  return [...head(V1 | T.READ_REPLY, 0, tag, [status, ...reserved, ...be(lengthOverride ?? payload.length, 4)], payload), ...payload];
}
function readReplyFields(tag: number, status: number, bytes: number[], payload: number[]): Fields {
  return {
    type: 'READ_REPLY', tag, status, lengthBytes: payload.length, crc32c: Number(BigInt('0x' + hex(bytes.slice(12, 16)))),
    ...(payload.length > 0 ? { payloadHex: hex(payload) } : {}),
  };
}
function resyncDone(tag: number, generation: bigint): number[] {
  return head(V1 | T.RESYNC_DONE, 0, tag, be(generation, 8));
}

const EPOCH = 7n;
const primary: Hello = {
  protocolVersionMax: 1, role: 1, blockSizeBytes: 4096, volumeSizeBytes: 1073741824,
  nodeId: 0x0123456789abcdefn, peerNodeId: 0xfedcba9876543210n,
  currentGeneration: 0x1111111111111111n, bitmapGeneration: 0x2222222222222222n,
  historyGeneration0: 0x3333333333333333n, historyGeneration1: 0x4444444444444444n,
  features: 3n, epoch: EPOCH, inlineThresholdBytes: 32768,
};
const secondary: Hello = { ...primary, role: 2, nodeId: primary.peerNodeId, peerNodeId: primary.nodeId };
const stale: Hello = { ...secondary, epoch: 9n };

const p512 = pattern(512, 7);
const p1024 = pattern(1024, 11);
const p37 = pattern(37, 5);
const metaCrc37 = crc32cSoftware(Uint8Array.from(p37));
const oneGiB = { volumeSizeBytes: 1073741824, inlineThresholdBytes: 32768 };
const oneMiB = { volumeSizeBytes: 1048576, inlineThresholdBytes: 32768 };

const inlineFields = (tag: number, flags: number, lengthSectors: number, epochLow8: number, sectorAddress: number, bytes: number[], payload: number[]): Fields => ({
  type: 'WRITE_INLINE', tag, flags, lengthSectors, epochLow8, sectorAddress,
  crc32c: Number(BigInt('0x' + hex(bytes.slice(12, 16)))), payloadHex: hex(payload),
});

const vectors: Vector[] = [];
function valid(name: string, description: string, bytes: number[], fields: Fields[], limits?: Vector['limits']): void {
  vectors.push({ name, description, hex: hex(bytes), valid: true, fields, ...(limits ? { limits } : {}) });
}
function invalid(name: string, description: string, bytes: number[], reason: string, extra: Partial<Vector> = {}): void {
  vectors.push({ name, description, hex: hex(bytes), valid: false, reason, ...extra });
}

// ---------------- valid ----------------
valid('hello-primary', 'HELLO from the primary: 1 GiB volume, 4 KiB blocks, epoch 7, TRIM+WRITE_ZEROES, 32 KiB inline threshold', hello(1, primary),
  [{ type: 'HELLO', tag: 1, ...helloJson(primary) }]);
valid('hello-reply-accepted', 'HELLO_REPLY accepting the connection with the secondary\'s own state', helloReply(1, 0, secondary),
  [{ type: 'HELLO_REPLY', tag: 1, reason: 0, ...helloJson(secondary) }]);
valid('hello-reply-refused-stale-epoch', 'HELLO_REPLY refusing: the secondary knows epoch 9 > 7 (reason 5 STALE_EPOCH)', helloReply(1, 5, stale),
  [{ type: 'HELLO_REPLY', tag: 1, reason: 5, ...helloJson(stale) }]);
{
  const b = inline(0x0102, 0, 7, 2048, p512);
  valid('write-inline-1-sector', 'WRITE_INLINE of 1 sector at sector 2048 (byte 1 MiB), epoch low byte 7, then its 512-byte payload', b,
    [inlineFields(0x0102, 0, 1, 7, 2048, b, p512)], oneGiB);
}
{
  const b = inline(0xffff, 3, 0xff, 0xffffffffffff - 1, p1024);
  valid('write-inline-fua-resync-2-sectors', 'WRITE_INLINE, flags FUA|RESYNC, tag 0xffff, 2 sectors at the highest 48-bit address that fits', b,
    [inlineFields(0xffff, 3, 2, 0xff, 0xffffffffffff - 1, b, p1024)]);
}
{
  const b = [...notify(9, 1, 3), ...meta(9, 1000, p37, EPOCH), ...p37];
  valid('write-large-sequence', 'Unaligned write of 37 bytes at byte 1000: WRITE_NOTIFY (FUA, seq 3), WRITE_META, payload', b, [
    { type: 'WRITE_NOTIFY', tag: 9, flags: 1, seq: 3 },
    { type: 'WRITE_META', tag: 9, offsetBytes: 1000, lengthBytes: 37, payloadCrc32c: metaCrc37, epoch: id(EPOCH), payloadHex: hex(p37) },
  ], oneGiB);
}
valid('ack-ok', 'ACK of tag 0x0102, status OK', ack(0x0102, 0), [{ type: 'ACK', tag: 0x0102, status: 0 }]);
valid('ack-epoch-refused', 'ACK of tag 9, status 3 EPOCH_REFUSED', ack(9, 3), [{ type: 'ACK', tag: 9, status: 3 }]);
valid('ack-eio', 'ACK of tag 10, status 1 IO_ERROR', ack(10, 1), [{ type: 'ACK', tag: 10, status: 1 }]);
valid('write-complete', 'WRITE_COMPLETE: every write with seq <= 12345 is complete on both nodes', complete(12345),
  [{ type: 'WRITE_COMPLETE', tag: 0, completeThroughSeq: 12345 }]);
valid('flush', 'FLUSH tag 5', head(V1 | T.FLUSH, 0, 5, [0, 0, 0, 0, 0, 0, 0, 0]), [{ type: 'FLUSH', tag: 5 }]);
valid('trim', 'TRIM of 64 KiB at 1 MiB', extent(T.TRIM, 6, 0, extentBody(1048576, 65536, 0, EPOCH)),
  [{ type: 'TRIM', tag: 6, flags: 0, offsetBytes: 1048576, lengthBytes: 65536, epoch: id(EPOCH) }], oneGiB);
valid('write-zeroes-fua', 'WRITE_ZEROES of 4 KiB at 0 with FUA', extent(T.WRITE_ZEROES, 7, 1, extentBody(0, 4096, 0, EPOCH)),
  [{ type: 'WRITE_ZEROES', tag: 7, flags: 1, offsetBytes: 0, lengthBytes: 4096, epoch: id(EPOCH) }], oneGiB);
valid('ping', 'PING with a millisecond timestamp as nonce', head(V1 | T.PING, 0, 0x10, be(0x0000018c2f1e3a40n, 8)),
  [{ type: 'PING', tag: 0x10, nonce: id(0x0000018c2f1e3a40n) }]);
valid('pong', 'PONG echoing the PING', head(V1 | T.PONG, 0, 0x10, be(0x0000018c2f1e3a40n, 8)),
  [{ type: 'PONG', tag: 0x10, nonce: id(0x0000018c2f1e3a40n) }]);
{
  const b = inline(1, 0, 7, 8, p512);
  valid('secondary-receives-small-write', 'What the secondary receives for the first (seq 1) small write: head, data, completion', [...b, ...complete(1)], [
    inlineFields(1, 0, 1, 7, 8, b, p512),
    { type: 'WRITE_COMPLETE', tag: 0, completeThroughSeq: 1 },
  ], oneGiB);
}
{
  const payload = pattern(33280, 3);
  const b = [...notify(2, 0, 2), ...meta(2, 65536, payload, EPOCH), ...payload, ...complete(2)];
  valid('secondary-receives-large-write', 'What the secondary receives for a 32.5 KiB write (above the 32 KiB threshold) (seq 2): head, meta, data, completion', b, [
    { type: 'WRITE_NOTIFY', tag: 2, flags: 0, seq: 2 },
    { type: 'WRITE_META', tag: 2, offsetBytes: 65536, lengthBytes: 33280, payloadCrc32c: crc32cSoftware(Uint8Array.from(payload)), epoch: id(EPOCH), payloadHex: hex(payload) },
    { type: 'WRITE_COMPLETE', tag: 0, completeThroughSeq: 2 },
  ], oneGiB);
}

// ---------------- valid: resync, verify (Feature.Resync) ----------------
const MiB64 = 64 * 1024 * 1024;
const MiB4 = 4 * 1024 * 1024;
/** 1 GiB + 4 KiB at 64 MiB per region: 17 regions, the last one partial; regions 0, 2 and 16 out of sync. */
const odd: Chunk = { tag: 0, firstRegion: 0, regionCount: 17, regionBytes: MiB64, flags: LAST, totalRegions: 17, bits: [0x05, 0x00, 0x01] };
const oddLimits = { volumeSizeBytes: 1073741824 + 4096, inlineThresholdBytes: 32768 };
valid('bitmap-single-chunk', 'BITMAP, the whole bitmap in one LAST chunk: 17 regions of 64 MiB (1 GiB + 4 KiB volume), regions 0, 2 and 16 out of sync',
  bitmap(odd), [bitmapJson(odd)], oddLimits);
{
  const first: Chunk = { tag: 0, firstRegion: 0, regionCount: 128, regionBytes: MiB4, flags: 0, totalRegions: 256, bits: [0xff, ...new Array<number>(15).fill(0)] };
  const second: Chunk = { tag: 1, firstRegion: 128, regionCount: 128, regionBytes: MiB4, flags: LAST, totalRegions: 256, bits: [...new Array<number>(15).fill(0), 0x80] };
  valid('bitmap-two-chunks', 'BITMAP in two chunks of 128 regions (tags 0 and 1): 1 GiB at 4 MiB per region, regions 0..7 and 255 out of sync',
    [...bitmap(first), ...bitmap(second)], [bitmapJson(first), bitmapJson(second)], oneGiB);
}
{
  const empty: Chunk = { tag: 0, firstRegion: 0, regionCount: 0, regionBytes: 4096, flags: LAST, totalRegions: 0, bits: [] };
  valid('bitmap-empty-volume', 'BITMAP of a 0-byte volume: one empty LAST chunk', bitmap(empty), [bitmapJson(empty)], { volumeSizeBytes: 0, inlineThresholdBytes: 32768 });
}
valid('hash-request', 'HASH_REQUEST tag 0x20: CRC32C of the 1 MiB at 1 MiB after every earlier write', hashRequest(0x20, 1048576, 1048576, EPOCH),
  [{ type: 'HASH_REQUEST', tag: 0x20, offsetBytes: 1048576, lengthBytes: 1048576, epoch: id(EPOCH) }], oneGiB);
{
  const zeros = digest56(new Uint8Array(1048576));
  valid('hash-reply-ok', 'HASH_REPLY tag 0x20, status OK: the range is 1 MiB of zeros (the first 7 bytes of its SHA-256: ' + hex56(zeros) + ')', hashReply(0x20, 0, zeros),
    [{ type: 'HASH_REPLY', tag: 0x20, status: 0, rangeDigest: hex56(zeros) }]);
}
valid('hash-reply-io-error', 'HASH_REPLY tag 0x21, status 1 IO_ERROR, range digest 0', hashReply(0x21, 1, 0n), [{ type: 'HASH_REPLY', tag: 0x21, status: 1, rangeDigest: hex56(0n) }]);
valid('read-request', 'READ_REQUEST tag 0x40: the 1000 bytes at byte 4100, as they are after every earlier write', readRequest(0x40, 4100, 1000, EPOCH),
  [{ type: 'READ_REQUEST', tag: 0x40, offsetBytes: 4100, lengthBytes: 1000, epoch: id(EPOCH) }], oneGiB);
{
  const data = pattern(1000, 9);
  const b = readReply(0x40, 0, data);
  valid('read-reply-ok', 'READ_REPLY tag 0x40, status OK, 1000 payload bytes (the head CRC continues over them)', b, [readReplyFields(0x40, 0, b, data)]);
  const e = readReply(0x41, 1, []);
  valid('read-reply-io-error', 'READ_REPLY tag 0x41, status 1 IO_ERROR, no payload', e, [readReplyFields(0x41, 1, e, [])]);
}
valid('resync-channel-announce', 'RESYNC_CHANNEL tag 0x31 on the mirror connection: the primary announces channel token 0x0123456789abcdef (the secondary ACKs tag 0x31)',
  head(V1 | T.RESYNC_CHANNEL, 0, 0x31, be(0x0123456789abcdefn, 8)), [{ type: 'RESYNC_CHANNEL', tag: 0x31, token: id(0x0123456789abcdefn) }]);
{
  // What the secondary receives on a resync channel (section 8.2): the claim, then resync writes
  // in the large-write form only, seq from 1 and tag = seq mod 2^16.
  const payload = pattern(65536, 5);
  const b = [...head(V1 | T.RESYNC_CHANNEL, 0, 0, be(0x0123456789abcdefn, 8)), ...notify(1, 2, 1), ...meta(1, 1048576, payload, EPOCH), ...payload];
  valid('resync-channel-first-write', 'A resync channel: the claim (RESYNC_CHANNEL tag 0, the announced token), then its first write: 64 KiB at 1 MiB as WRITE_NOTIFY|RESYNC seq 1 tag 1 + WRITE_META + payload', b, [
    { type: 'RESYNC_CHANNEL', tag: 0, token: id(0x0123456789abcdefn) },
    { type: 'WRITE_NOTIFY', tag: 1, flags: 2, seq: 1 },
    { type: 'WRITE_META', tag: 1, offsetBytes: 1048576, lengthBytes: 65536, payloadCrc32c: crc32cSoftware(Uint8Array.from(payload)), epoch: id(EPOCH), payloadHex: hex(payload) },
  ], oneGiB);
}
valid('resync-done', 'RESYNC_DONE tag 0x30: the target now holds generation 0x1111111111111111', resyncDone(0x30, 0x1111111111111111n),
  [{ type: 'RESYNC_DONE', tag: 0x30, generation: id(0x1111111111111111n) }]);
{
  const resyncPrimary: Hello = { ...primary, features: 7n };
  const own: Chunk = { tag: 0, firstRegion: 0, regionCount: 16, regionBytes: MiB64, flags: LAST, totalRegions: 16, bits: [0x02, 0x00] };
  const client = inline(0x0101, 0, 7, 2048, p512);
  const b = [
    ...hello(1, resyncPrimary), ...bitmap(own), ...complete(0), ...client,
    ...extent(T.WRITE_ZEROES, 0x0102, 2, extentBody(MiB64, MiB64, 0, EPOCH)),
    ...hashRequest(0x0103, 0, MiB64, EPOCH), ...resyncDone(0x0104, primary.currentGeneration),
  ];
  valid('secondary-receives-resync', 'What the secondary receives from a Resync primary: HELLO, the primary\'s bitmap, the go (WRITE_COMPLETE 0), a client write (seq 1), region 1 resynced as WRITE_ZEROES|RESYNC (seq 2), a HASH_REQUEST for region 0, RESYNC_DONE', b, [
    { type: 'HELLO', tag: 1, ...helloJson(resyncPrimary) },
    bitmapJson(own),
    { type: 'WRITE_COMPLETE', tag: 0, completeThroughSeq: 0 },
    inlineFields(0x0101, 0, 1, 7, 2048, client, p512),
    { type: 'WRITE_ZEROES', tag: 0x0102, flags: 2, offsetBytes: MiB64, lengthBytes: MiB64, epoch: id(EPOCH) },
    { type: 'HASH_REQUEST', tag: 0x0103, offsetBytes: 0, lengthBytes: MiB64, epoch: id(EPOCH) },
    { type: 'RESYNC_DONE', tag: 0x0104, generation: id(primary.currentGeneration) },
  ], oneGiB);
}

// ---------------- invalid: decoding ----------------
invalid('bad-version-0', 'ACK with version 0 (byte 0 = 0x06)', head(T.ACK, 0, 1, [0, 0, 0, 0, 0, 0, 0, 0]), 'unsupported version 0');
invalid('bad-version-2', 'ACK with version 2 (byte 0 = 0x86)', head(0x80 | T.ACK, 0, 1, [0, 0, 0, 0, 0, 0, 0, 0]), 'unsupported version 2');
invalid('all-zero-head', '16 zero bytes (version 0, type 0)', new Array<number>(16).fill(0), 'unsupported version 0');
invalid('unknown-type-0', 'version 1, type 0 (never assigned)', head(V1 | 0, 0, 1, [0, 0, 0, 0, 0, 0, 0, 0]), 'unknown message type 0');
invalid('unknown-type-63', 'version 1, type 63', head(V1 | 63, 0, 1, [0, 0, 0, 0, 0, 0, 0, 0]), 'unknown message type 63');
invalid('reserved-flag-inline', 'WRITE_INLINE with flag bit 0x80 set (CRC is correct)', inline(1, 0x80, 7, 8, p512), 'reserved flag bits set: 0x80');
invalid('reserved-flag-ack', 'ACK with flag bit 0x01 set', ack(1, 0, 1), 'reserved flag bits set: 0x01');
invalid('reserved-bytes-ack', 'ACK with reserved byte 7 = 1', ack(1, 0, 0, [0, 0, 1, 0, 0, 0, 0]), 'reserved head bytes 5..11');
invalid('reserved-bytes-flush', 'FLUSH with reserved byte 11 = 0x80', head(V1 | T.FLUSH, 0, 5, [0, 0, 0, 0, 0, 0, 0, 0x80]), 'reserved head bytes 4..11');
invalid('reserved-body-trim', 'TRIM with the reserved body CRC field not zero', extent(T.TRIM, 6, 0, extentBody(0, 512, 1, EPOCH)), 'reserved body bytes 12..15');
invalid('unknown-ack-status', 'ACK with status 200', ack(1, 200), 'unknown status 200');
invalid('complete-nonzero-tag', 'WRITE_COMPLETE with tag 1 (reserved)', complete(1, 1), 'tag is reserved');
{
  const b = inline(0x0102, 0, 7, 2048, p512);
  b[16 + 100]! ^= 0x04;
  invalid('bad-crc-inline-payload', 'write-inline-1-sector with one payload bit flipped', b, 'bad CRC32C');
  const c = inline(0x0102, 0, 7, 2048, p512);
  c[11]! ^= 0x01;
  invalid('bad-crc-inline-address', 'write-inline-1-sector with one address bit flipped (CRC not recomputed)', c, 'bad CRC32C');
}
{
  const b = ack(0x0102, 0);
  b[13]! ^= 0x10;
  invalid('bad-crc-ack', 'ack-ok with one CRC bit flipped', b, 'bad CRC32C');
  const h = hello(1, primary);
  h[16 + 72 + 7]! ^= 0x01;
  invalid('bad-crc-hello-body', 'hello-primary with the epoch changed from 7 to 6 in the body', h, 'bad CRC32C');
}
{
  const payload = [...p37];
  const b = [...notify(9, 1, 3), ...meta(9, 1000, p37, EPOCH)];
  payload[0]! ^= 0x80;
  invalid('bad-payload-crc-meta', 'write-large-sequence with one payload bit flipped', [...b, ...payload], 'bad payload CRC32C');
}
invalid('truncated-head', 'first 10 bytes of ack-ok', ack(0x0102, 0).slice(0, 10), 'truncated head: 10 of 16');
invalid('truncated-inline-payload', 'write-inline-1-sector cut after 100 payload bytes', inline(0x0102, 0, 7, 2048, p512).slice(0, 116), 'truncated WRITE_INLINE payload: 100 of 512');
invalid('truncated-hello-body', 'hello-primary cut after 40 body bytes', hello(1, primary).slice(0, 56), 'truncated HELLO body: 40 of 88');
invalid('truncated-large-payload', 'write-large-sequence without its last payload byte',
  [...notify(9, 1, 3), ...meta(9, 1000, p37, EPOCH), ...p37].slice(0, -1), 'truncated WRITE_META payload: 36 of 37');
invalid('oversized-hello-body-length', 'HELLO announcing a 1 MiB body', hello(1, primary, 1048576).slice(0, 16), 'exceeds BODY_BYTES_MAX');
invalid('short-hello-body-length', 'HELLO announcing an 80-byte body', hello(1, primary, 80).slice(0, 96), 'is below 88');
invalid('wrong-meta-body-length', 'WRITE_META announcing a 32-byte body', [...notify(9, 0, 3), ...extent(T.WRITE_META, 9, 0, [...extentBody(0, 37, metaCrc37, EPOCH), 0, 0, 0, 0, 0, 0, 0, 0], 32), ...p37],
  'body length 32 is not 24');
invalid('oversized-meta-length', 'WRITE_META with lengthBytes 32 MiB + 1', [...notify(9, 0, 3), ...meta(9, 0, p37, EPOCH, 33554433)], 'WRITE_PAYLOAD_BYTES_MAX');
invalid('meta-without-notify', 'WRITE_META that no WRITE_NOTIFY announced', [...meta(9, 1000, p37, EPOCH), ...p37], 'WRITE_META without a preceding WRITE_NOTIFY');
invalid('notify-then-ack', 'WRITE_NOTIFY followed by an ACK instead of its WRITE_META', [...notify(9, 0, 3), ...ack(9, 0)], 'must be followed by WRITE_META');
invalid('notify-without-meta', 'a WRITE_NOTIFY at the end of the stream', notify(9, 0, 3), 'without its WRITE_META');
invalid('meta-tag-mismatch', 'WRITE_META tag 8 after WRITE_NOTIFY tag 9', [...notify(9, 0, 3), ...meta(8, 1000, p37, EPOCH), ...p37], 'differs from its WRITE_NOTIFY tag');
invalid('notify-seq-zero', 'WRITE_NOTIFY with seq 0', [...notify(9, 0, 0), ...meta(9, 1000, p37, EPOCH), ...p37], 'seq 0');
invalid('notify-seq-above-2^53', 'WRITE_NOTIFY with seq 2^53 (above the implementation limit)', [...notify(9, 0, 2n ** 53n), ...meta(9, 1000, p37, EPOCH), ...p37], 'exceeds 2^53-1');
invalid('trim-unaligned', 'TRIM at byte offset 100', extent(T.TRIM, 6, 0, extentBody(100, 512, 0, EPOCH)), 'not whole 512-byte sectors');
invalid('hello-bad-block-size', 'HELLO with block size 1000', hello(1, { ...primary, blockSizeBytes: 1000 }), 'block size 1000');
invalid('hello-bad-inline-threshold', 'HELLO with inline threshold 256 KiB', hello(1, { ...primary, inlineThresholdBytes: 262144 }), 'inline threshold 262144');
invalid('hello-reply-unknown-reason', 'HELLO_REPLY with reason 200', helloReply(1, 200, secondary), 'unknown reason 200');

invalid('bitmap-reserved-flag', 'bitmap-single-chunk with chunk flag bit 1 (reserved) set', bitmap({ ...odd, flags: LAST | 2 }), 'BITMAP reserved flag bits set: 0x00000002');
invalid('bitmap-reserved-head-flag', 'bitmap-single-chunk with head flag bit 0x01 set', bitmap(odd, 1), 'BITMAP reserved flag bits set: 0x01');
invalid('bitmap-past-total', 'BITMAP chunk of 16 regions at region 8 of 17', bitmap({ ...odd, firstRegion: 8, regionCount: 16, bits: [0, 0] }), 'goes past totalRegions');
invalid('bitmap-unused-high-bits', 'bitmap-single-chunk with bit 1 of the last byte (region 17, past regionCount) set', bitmap({ ...odd, bits: [0x05, 0x00, 0x03] }), 'unused high bits');
invalid('bitmap-first-unaligned', 'BITMAP chunk starting at region 4', bitmap({ ...odd, firstRegion: 4, regionCount: 13, bits: [0, 0] }), 'not a multiple of 8');
invalid('bitmap-last-missing', 'bitmap-single-chunk without the LAST flag', bitmap({ ...odd, flags: 0 }), 'without the LAST flag');
invalid('bitmap-last-early', 'first chunk of bitmap-two-chunks flagged LAST',
  bitmap({ tag: 0, firstRegion: 0, regionCount: 128, regionBytes: MiB4, flags: LAST, totalRegions: 256, bits: new Array<number>(16).fill(0) }), 'flagged LAST ends at 128');
invalid('bitmap-body-length-mismatch', 'BITMAP of 17 regions carrying 4 bitmap bytes', bitmap({ ...odd, bits: [0x05, 0, 0x01, 0] }), 'is not 27 for 17 regions');
invalid('bitmap-region-size', 'BITMAP with a 2 KiB region size', bitmap({ ...odd, regionBytes: 2048 }), 'region size 2048');
invalid('bitmap-short-body-length', 'BITMAP announcing a 20-byte body', bitmap(odd, 0, 20).slice(0, 36), 'is below 24');
{
  const b = bitmap(odd);
  b[b.length - 3]! ^= 0x08;
  invalid('bitmap-bad-crc', 'bitmap-single-chunk with region 3 flipped in the bitmap bytes', b, 'bad CRC32C');
}
invalid('hash-request-unaligned', 'HASH_REQUEST at byte offset 100', hashRequest(0x20, 100, 4096, EPOCH), 'not whole 512-byte sectors');
invalid('hash-request-too-long', 'HASH_REQUEST of 64 MiB + 512 bytes', hashRequest(0x20, 0, MiB64 + 512, EPOCH), 'HASH_LENGTH_BYTES_MAX');
invalid('hash-request-flag', 'HASH_REQUEST with head flag 0x02 (RESYNC is a write flag only)', hashRequest(0x20, 0, 4096, EPOCH, 2), 'reserved flag bits set: 0x02');
invalid('hash-request-reserved-body', 'HASH_REQUEST with the reserved body CRC field not zero', hashRequest(0x20, 0, 4096, EPOCH, 0, 0xdeadbeef), 'reserved body bytes 12..15');
invalid('hash-reply-unknown-status', 'HASH_REPLY with status 9', hashReply(0x20, 9, 0n), 'unknown status 9');
invalid('hash-reply-error-with-digest', 'HASH_REPLY IO_ERROR carrying a range digest (byte 8 = 1)', hashReply(0x20, 1, 0x0001000000n), 'has a range digest');
invalid('read-request-zero-length', 'READ_REQUEST of 0 bytes', readRequest(0x40, 0, 0, EPOCH), 'not in 1..');
invalid('read-request-too-long', 'READ_REQUEST of 32 MiB + 1 byte', readRequest(0x40, 0, 32 * 1048576 + 1, EPOCH), 'READ_LENGTH_BYTES_MAX');
invalid('read-request-reserved-body', 'READ_REQUEST with the reserved body CRC field not zero', readRequest(0x40, 0, 4096, EPOCH, 1), 'reserved body bytes 12..15');
invalid('read-reply-unknown-status', 'READ_REPLY with status 9 and no payload', readReply(0x40, 9, []), 'unknown status 9');
invalid('read-reply-reserved-bytes', 'READ_REPLY IO_ERROR with reserved byte 6 = 1', readReply(0x40, 1, [], undefined, [0, 1, 0]), 'reserved head bytes 5..7');
invalid('read-reply-ok-without-data', 'READ_REPLY with status OK and length 0', readReply(0x40, 0, []), 'carries no data');
invalid('read-reply-error-with-data', 'READ_REPLY IO_ERROR announcing (and carrying) 512 payload bytes', readReply(0x40, 1, p512), 'announces 512 payload bytes');
invalid('read-reply-too-long', 'READ_REPLY head announcing 32 MiB + 1 payload bytes', readReply(0x40, 0, [], 32 * 1048576 + 1), 'READ_LENGTH_BYTES_MAX');
{
  const b = readReply(0x40, 0, pattern(1000, 9));
  b[16 + 500]! ^= 0x10;
  invalid('read-reply-bad-crc', 'read-reply-ok with one payload bit flipped', b, 'bad CRC32C');
  invalid('truncated-read-reply-payload', 'read-reply-ok without its last payload byte', readReply(0x40, 0, pattern(1000, 9)).slice(0, -1), 'truncated READ_REPLY payload');
}
{
  const b = resyncDone(0x30, 0x1111111111111111n);
  b[11]! ^= 0x01;
  invalid('resync-done-bad-crc', 'resync-done with the generation\'s low bit flipped', b, 'bad CRC32C');
}

// ---------------- invalid: per-connection validation (decodes, then validateMessage refuses) ----------------
{
  const b = inline(0x0102, 0, 7, 2048, p512);
  invalid('inline-beyond-volume', 'write-inline-1-sector on a 1 MiB volume: sector 2048 starts at the end', b, 'ends beyond the volume size',
    { limits: oneMiB, fields: [inlineFields(0x0102, 0, 1, 7, 2048, b, p512)] });
  const c = inline(0xffff, 3, 0xff, 0xffffffffffff - 1, p1024);
  invalid('inline-above-threshold', 'write-inline-fua-resync-2-sectors with a negotiated threshold of 512 bytes', c, 'exceeds the inline threshold',
    { limits: { volumeSizeBytes: 2 ** 53 - 1, inlineThresholdBytes: 512 }, fields: [inlineFields(0xffff, 3, 2, 0xff, 0xffffffffffff - 1, c, p1024)] });
}
invalid('trim-beyond-volume', 'TRIM of 64 KiB at 1 MiB on a 1 MiB volume', extent(T.TRIM, 6, 0, extentBody(1048576, 65536, 0, EPOCH)), 'ends beyond the volume size',
  { limits: oneMiB, fields: [{ type: 'TRIM', tag: 6, flags: 0, offsetBytes: 1048576, lengthBytes: 65536, epoch: id(EPOCH) }] });
invalid('meta-beyond-volume', 'Large write of 37 bytes at 1 MiB - 36 on a 1 MiB volume', [...notify(9, 0, 3), ...meta(9, 1048540, p37, EPOCH), ...p37], 'ends beyond the volume size', {
  limits: oneMiB,
  fields: [
    { type: 'WRITE_NOTIFY', tag: 9, flags: 0, seq: 3 },
    { type: 'WRITE_META', tag: 9, offsetBytes: 1048540, lengthBytes: 37, payloadCrc32c: metaCrc37, epoch: id(EPOCH), payloadHex: hex(p37) },
  ],
});

invalid('bitmap-total-mismatch', 'bitmap-single-chunk (17 regions) on a 1 GiB volume, which has 16 regions of 64 MiB', bitmap(odd), 'is not ceil(',
  { limits: oneGiB, fields: [bitmapJson(odd)] });
invalid('read-request-beyond-volume', 'READ_REQUEST of 1 byte at 1 MiB on a 1 MiB volume', readRequest(0x40, 1048576, 1, EPOCH), 'ends beyond the volume size',
  { limits: oneMiB, fields: [{ type: 'READ_REQUEST', tag: 0x40, offsetBytes: 1048576, lengthBytes: 1, epoch: id(EPOCH) }] });
invalid('hash-request-beyond-volume', 'HASH_REQUEST of 512 bytes at 1 MiB on a 1 MiB volume', hashRequest(0x20, 1048576, 512, EPOCH), 'ends beyond the volume size',
  { limits: oneMiB, fields: [{ type: 'HASH_REQUEST', tag: 0x20, offsetBytes: 1048576, lengthBytes: 512, epoch: id(EPOCH) }] });

process.stdout.write(
  JSON.stringify(
    {
      format: 'blockmirror peer wire format, version 1 (docs/wire-format.md)',
      generator: 'test/vectors/generate-wire-vectors.ts',
      vectors,
    },
    null,
    1,
  ) + '\n',
);
