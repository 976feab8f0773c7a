/**
 * Wire format, resync and verify messages (Feature.Resync): bitmap chunking and reassembly,
 * encoder argument checks, names, and the dump tool. Byte-level conformance of every message is
 * in wire.test.ts against test/vectors/wire.json.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  RANGE_DIGEST_MAX,
  BITMAP_CHUNK_REGIONS_MAX,
  BODY_BYTES_MAX,
  BitmapAssembler,
  BitmapFlag,
  FEATURES_KNOWN,
  Feature,
  HASH_LENGTH_BYTES_MAX,
  HEAD_BYTES,
  HashStatus,
  HelloReason,
  MessageType,
  bitmapFlagsName,
  bitmapRegionCount,
  decodeMessage,
  decodeStream,
  encodeBitmap,
  encodeBitmapChunks,
  encodeHashReply,
  encodeHashRequest,
  encodeResyncDone,
  hashStatusName,
  helloReasonName,
  typeName,
  type BitmapMessage,
  type WireMessage,
} from '../../src/wire';
import { regionDigest } from '../../src/mirror/region-digest';
import { dumpFrames } from '../../tools/dump-frame';

const REPO_ROOT = path.join(__dirname, '..', '..', '..');
const VECTORS: { name: string; hex: string }[] = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'test', 'vectors', 'wire.json'), 'utf8')).vectors;
const vectorHex = (name: string): string => VECTORS.find((v) => v.name === name)!.hex;
const MiB = 1024 * 1024;

/** Decodes a byte string of BITMAP chunks, failing the test on any invalid one. */
function decodeChunks(bytes: Buffer): BitmapMessage[] {
  const decoded = decodeStream(bytes);
  assert.ok(decoded.ok, decoded.ok ? '' : decoded.reason);
  return decoded.value.map((d) => d.message as BitmapMessage);
}

/** A bitmap of `totalRegions` bits with every `stride`-th region set. */
function stripes(totalRegions: number, stride: number): Uint8Array {
  const bitmap = new Uint8Array(Math.ceil(totalRegions / 8));
  for (let r = 0; r < totalRegions; r += stride) bitmap[r >>> 3]! |= 1 << (r & 7);
  return bitmap;
}

describe('wire resync: constants and names', () => {
  it('negotiates resync with feature bit 2 and names the new numbers', () => {
    assert.equal(Feature.Resync, 4n);
    assert.equal(FEATURES_KNOWN & Feature.Resync, Feature.Resync);
    assert.deepEqual(
      [MessageType.Bitmap, MessageType.HashRequest, MessageType.HashReply, MessageType.ResyncDone].map(typeName),
      ['BITMAP', 'HASH_REQUEST', 'HASH_REPLY', 'RESYNC_DONE'],
    );
    assert.equal(hashStatusName(HashStatus.EpochRefused), 'EPOCH_REFUSED');
    assert.equal(hashStatusName(7), 'UNKNOWN(7)');
    assert.equal(bitmapFlagsName(BitmapFlag.Last), 'LAST');
    assert.equal(bitmapFlagsName(0), '-');
    assert.equal(bitmapFlagsName(3), 'LAST|0x00000002');
    assert.equal(helloReasonName(HelloReason.SplitBrain), 'SPLIT_BRAIN');
    assert.equal(helloReasonName(HelloReason.PrimaryOutdated), 'PRIMARY_OUTDATED');
    assert.equal(BITMAP_CHUNK_REGIONS_MAX, (BODY_BYTES_MAX - 24) * 8);
  });

  it('counts regions as ceil(volume size / region size)', () => {
    assert.equal(bitmapRegionCount(0, 4096), 0);
    assert.equal(bitmapRegionCount(1024 * MiB, 64 * MiB), 16);
    assert.equal(bitmapRegionCount(1024 * MiB + 4096, 64 * MiB), 17);
  });
});

describe('wire resync: bitmap chunks', () => {
  it('splits a bitmap into the chunks of the spec vectors', () => {
    const bitmap256 = new Uint8Array(32);
    bitmap256[0] = 0xff;
    bitmap256[31] = 0x80;
    assert.equal(Buffer.concat(encodeBitmapChunks(bitmap256, 256, 4 * MiB, 128)).toString('hex'), vectorHex('bitmap-two-chunks'));
    assert.equal(Buffer.concat(encodeBitmapChunks(Uint8Array.from([0x05, 0x00, 0x01]), 17, 64 * MiB)).toString('hex'), vectorHex('bitmap-single-chunk'));
    assert.equal(Buffer.concat(encodeBitmapChunks(new Uint8Array(0), 0, 4096)).toString('hex'), vectorHex('bitmap-empty-volume'));
  });

  it('keeps every chunk within BODY_BYTES_MAX and reassembles a multi-chunk bitmap', () => {
    const totalRegions = 3 * BITMAP_CHUNK_REGIONS_MAX + 13;
    const bitmap = stripes(totalRegions, 7);
    const chunks = encodeBitmapChunks(bitmap, totalRegions, 4096);
    assert.equal(chunks.length, 4);
    for (const c of chunks) assert.ok(c.length - HEAD_BYTES <= BODY_BYTES_MAX);
    const assembler = new BitmapAssembler();
    for (const m of decodeChunks(Buffer.concat(chunks))) {
      assert.equal(assembler.result(), null);
      assert.ok(assembler.add(m).ok);
    }
    assert.ok(assembler.complete);
    const received = assembler.result()!;
    assert.equal(received.totalRegions, totalRegions);
    assert.equal(received.regionBytes, 4096);
    assert.deepEqual(Buffer.from(received.bitmap), Buffer.from(bitmap));
  });

  it('refuses chunks that do not continue the bitmap: tag, gap, granularity, after LAST', () => {
    const chunks = decodeChunks(Buffer.concat(encodeBitmapChunks(stripes(64, 3), 64, 4096, 16)));
    assert.equal(chunks.length, 4);
    const wrongTag = new BitmapAssembler();
    assert.match((wrongTag.add({ ...chunks[0]!, tag: 1 }) as { reason: string }).reason, /tag 1, expected chunk index 0/);
    const gap = new BitmapAssembler();
    assert.ok(gap.add(chunks[0]!).ok);
    assert.match((gap.add({ ...chunks[2]!, tag: 1 }) as { reason: string }).reason, /starts at region 32, expected 16/);
    const granularity = new BitmapAssembler();
    assert.ok(granularity.add(chunks[0]!).ok);
    assert.match((granularity.add({ ...chunks[1]!, regionBytes: 8192 }) as { reason: string }).reason, /region size 8192/);
    const afterLast = new BitmapAssembler();
    for (const c of chunks) assert.ok(afterLast.add(c).ok);
    assert.match((afterLast.add({ ...chunks[0]!, tag: 4 }) as { reason: string }).reason, /after the LAST chunk/);
  });

  it('copies chunk bits, so the socket buffer may be reused after add()', () => {
    const bytes = Buffer.concat(encodeBitmapChunks(Uint8Array.from([0xaa]), 8, 4096));
    const [m] = decodeChunks(bytes);
    const assembler = new BitmapAssembler();
    assert.ok(assembler.add(m!).ok);
    bytes.fill(0);
    assert.deepEqual([...assembler.result()!.bitmap], [0xaa]);
  });

  it('throws for bitmap arguments the format cannot express', () => {
    const chunk = { firstRegion: 0, regionCount: 10, regionBytes: 4096, bitmapFlags: BitmapFlag.Last, totalRegions: 10 };
    assert.ok(encodeBitmap(0, chunk, Uint8Array.from([0xff, 0x03])));
    assert.throws(() => encodeBitmap(0, chunk, Uint8Array.from([0xff, 0x07])), /unused high bits/);
    assert.throws(() => encodeBitmap(0, chunk, Uint8Array.from([0xff])), /needs 2 bytes/);
    assert.throws(() => encodeBitmap(0, { ...chunk, bitmapFlags: 0 }, Uint8Array.from([0, 0])), /LAST/);
    assert.throws(() => encodeBitmap(0, { ...chunk, regionBytes: 3 * 4096 }, Uint8Array.from([0, 0])), /region size/);
    assert.throws(() => encodeBitmap(0, { ...chunk, firstRegion: 4, totalRegions: 14 }, Uint8Array.from([0, 0])), /multiple of 8/);
    assert.throws(() => encodeBitmapChunks(new Uint8Array(3), 17, 4096, 12), /chunkRegionsMax/);
    assert.throws(() => encodeBitmapChunks(new Uint8Array(2), 17, 4096), /has 3 bytes/);
    assert.throws(() => encodeBitmapChunks(Uint8Array.from([0, 0, 2]), 17, 4096), /unused high bits/);
  });
});

describe('wire resync: hash and resync-done messages', () => {
  it('round-trips HASH_REQUEST, HASH_REPLY and RESYNC_DONE and throws for impossible arguments', () => {
    const cases: [Buffer, WireMessage][] = [
      [encodeHashRequest(3, 4096, HASH_LENGTH_BYTES_MAX, 9n), { type: MessageType.HashRequest, tag: 3, offsetBytes: 4096, lengthBytes: HASH_LENGTH_BYTES_MAX, epoch: 9n }],
      [encodeHashReply(3, HashStatus.Ok, 0xfedcba98765432n), { type: MessageType.HashReply, tag: 3, status: 0, rangeDigest: 0xfedcba98765432n }],
      [encodeResyncDone(4, 0xffffffffffffffffn), { type: MessageType.ResyncDone, tag: 4, generation: 0xffffffffffffffffn }],
    ];
    for (const [bytes, message] of cases) {
      const decoded = decodeMessage(bytes.subarray(0, HEAD_BYTES), bytes.length > HEAD_BYTES ? bytes.subarray(HEAD_BYTES) : null);
      assert.ok(decoded.ok, decoded.ok ? '' : decoded.reason);
      assert.deepEqual(decoded.value, message);
    }
    assert.throws(() => encodeHashRequest(1, 100, 512, 1n), /sector aligned/);
    assert.throws(() => encodeHashRequest(1, 0, HASH_LENGTH_BYTES_MAX + 512, 1n), RangeError);
    assert.throws(() => encodeHashReply(1, HashStatus.IoError, 5n), /must be 0/);
    assert.throws(() => encodeHashReply(1, HashStatus.Ok, 1n << 56n), /56-bit/);
    assert.throws(() => encodeResyncDone(1, -1n), RangeError);
  });

  it('regionDigest is the first 56 bits of SHA-256, as the hash-reply-ok vector carries for 1 MiB of zeros', () => {
    const ok = decodeMessage(Buffer.from(vectorHex('hash-reply-ok'), 'hex'), null);
    assert.ok(ok.ok && ok.value.type === MessageType.HashReply);
    assert.equal(regionDigest(new Uint8Array(1024 * 1024)), ok.value.rangeDigest);
    assert.equal(regionDigest(new Uint8Array(1024 * 1024)), 0x30e14955ebf135n);
    assert.ok(regionDigest(Buffer.from('a')) <= RANGE_DIGEST_MAX);
  });
});

describe('wire resync: dump-frame', () => {
  it('prints the resync connect stream with named fields and validates it against the volume', () => {
    const dump = dumpFrames(Buffer.from(vectorHex('secondary-receives-resync'), 'hex'), { volumeSizeBytes: 1024 * MiB, inlineThresholdBytes: 32768 });
    assert.ok(dump.ok, dump.lines.join('\n'));
    const text = dump.lines.join('\n');
    assert.match(text, /BITMAP tag=0 firstRegion=0 regionCount=16 regionBytes=67108864 bitmapFlags=LAST totalRegions=16 bits=0200 \(1 set\)/);
    assert.match(text, /WRITE_ZEROES tag=258 flags=RESYNC/);
    assert.match(text, /HASH_REQUEST tag=259 offsetBytes=0 lengthBytes=67108864/);
    assert.match(text, /RESYNC_DONE tag=260 generation=0x1111111111111111/);
    const reply = dumpFrames(Buffer.from(vectorHex('hash-reply-io-error'), 'hex'), null);
    assert.match(reply.lines[0]!, /HASH_REPLY tag=33 status=IO_ERROR\(1\) rangeDigest=0x00000000000000/);
    const bad = dumpFrames(Buffer.from(vectorHex('bitmap-single-chunk'), 'hex'), { volumeSizeBytes: 1024 * MiB, inlineThresholdBytes: 32768 });
    assert.equal(bad.ok, false);
    assert.match(bad.lines[bad.lines.length - 1]!, /INVALID @0: BITMAP totalRegions 17/);
  });
});
