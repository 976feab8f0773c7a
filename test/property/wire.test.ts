/**
 * Wire format properties (fast-check). The seed is printed when a property fails; rerun with
 * FC_SEED=<seed> to reproduce.
 */
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BITMAP_CHUNK_REGIONS_MAX,
  BitmapAssembler,
  BitmapFlag,
  EXTENT_LENGTH_BYTES_MAX,
  HASH_LENGTH_BYTES_MAX,
  READ_LENGTH_BYTES_MAX,
  RANGE_DIGEST_MAX,
  FrameReader,
  HEAD_BYTES,
  INLINE_SECTORS_MAX,
  MessageType,
  SECTOR_BYTES,
  TAG_MAX,
  crc32c,
  decodeMessage,
  encodeBitmapChunks,
  decodeStream,
  encodeMessage,
  encodeReadReply,
  messageToJson,
  validateMessage,
  verifyInlineWrite,
  type BitmapMessage,
  type Frame,
  type HelloFields,
  type WireMessage,
} from '../../src/wire';

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() % 2 ** 31;
/** Largest generated payload: big enough to span many chunks, small enough to keep runs fast. */
const PAYLOAD_BYTES_MAX_GENERATED = 3000;

/** fc.assert with the run's seed, printed on failure. */
function check<T>(property: fc.IAsyncProperty<T> | fc.IProperty<T>, numRuns = 200): void {
  try {
    fc.assert(property as fc.IProperty<T>, { seed: SEED, numRuns });
  } catch (error) {
    console.error(`fast-check failed with seed ${SEED}: rerun with FC_SEED=${SEED}`);
    throw error;
  }
}

/** One or more messages that must travel together, each with its payload (or null). */
type Unit = { message: WireMessage; payload: Buffer | null }[];

const tag = fc.integer({ min: 0, max: TAG_MAX });
const writeFlags = fc.integer({ min: 0, max: 3 });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const safe = fc.maxSafeNat();

const helloFields: fc.Arbitrary<HelloFields> = fc
  .record({
    protocolVersionMax: fc.integer({ min: 1, max: 255 }),
    role: fc.constantFrom(1, 2),
    blockShift: fc.integer({ min: 9, max: 16 }),
    blocks: fc.integer({ min: 0, max: 2 ** 36 }),
    nodeId: u64,
    peerNodeId: u64,
    currentGeneration: u64,
    bitmapGeneration: u64,
    historyGeneration0: u64,
    historyGeneration1: u64,
    features: u64,
    epoch: u64,
    inlineSectors: fc.integer({ min: 1, max: INLINE_SECTORS_MAX }),
  })
  .map(({ blockShift, blocks, inlineSectors, ...rest }) => ({
    ...rest,
    blockSizeBytes: 2 ** blockShift,
    volumeSizeBytes: blocks * 2 ** blockShift,
    inlineThresholdBytes: inlineSectors * SECTOR_BYTES,
  }));

const extent = fc.record({
  tag,
  flags: writeFlags,
  offsetBytes: fc.integer({ min: 0, max: Math.floor(Number.MAX_SAFE_INTEGER / SECTOR_BYTES) }).map((s) => s * SECTOR_BYTES),
  lengthBytes: fc.integer({ min: 1, max: EXTENT_LENGTH_BYTES_MAX / SECTOR_BYTES }).map((s) => s * SECTOR_BYTES),
  epoch: u64,
});

const single = (m: fc.Arbitrary<WireMessage>): fc.Arbitrary<Unit> => m.map((message) => [{ message, payload: null }]);

const inlineUnit: fc.Arbitrary<Unit> = fc
  .record({
    tag,
    flags: writeFlags,
    epochLow8: fc.integer({ min: 0, max: 255 }),
    sectorAddress: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
    sectors: fc.integer({ min: 1, max: 4 }),
  })
  .chain((r) => fc.uint8Array({ minLength: r.sectors * SECTOR_BYTES, maxLength: r.sectors * SECTOR_BYTES }).map((bytes) => ({ r, bytes })))
  .map(({ r, bytes }) => {
    const payload = Buffer.from(bytes);
    const message: WireMessage = { type: MessageType.WriteInline, tag: r.tag, flags: r.flags, lengthSectors: r.sectors, epochLow8: r.epochLow8, sectorAddress: r.sectorAddress, crc32c: 0 };
    const head = encodeMessage(message, payload);
    return [{ message: { ...message, crc32c: head.readUInt32BE(12) }, payload }];
  });

const largeUnit: fc.Arbitrary<Unit> = fc
  .record({ tag, flags: writeFlags, seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), offsetBytes: safe, epoch: u64, bytes: fc.uint8Array({ minLength: 1, maxLength: PAYLOAD_BYTES_MAX_GENERATED }) })
  .map((r) => {
    const payload = Buffer.from(r.bytes);
    return [
      { message: { type: MessageType.WriteNotify, tag: r.tag, flags: r.flags, seq: r.seq }, payload: null },
      { message: { type: MessageType.WriteMeta, tag: r.tag, offsetBytes: r.offsetBytes, lengthBytes: payload.length, payloadCrc32c: crc32c(payload), epoch: r.epoch }, payload },
    ];
  });

/** A bitmap of totalRegions bits, random, with the bits past totalRegions clear. */
function randomBitmap(totalRegions: number): fc.Arbitrary<Uint8Array> {
  const bytes = Math.ceil(totalRegions / 8);
  return fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => {
    if (totalRegions % 8) b[bytes - 1]! &= (1 << (totalRegions % 8)) - 1;
    return b;
  });
}

/** One valid BITMAP chunk anywhere in a bitmap of up to 2^32 regions. */
const bitmapChunk: fc.Arbitrary<WireMessage> = fc
  .record({
    tag,
    regionShift: fc.integer({ min: 12, max: 26 }),
    firstByte: fc.integer({ min: 0, max: 2 ** 29 - BITMAP_CHUNK_REGIONS_MAX / 8 }),
    regionCount: fc.integer({ min: 1, max: BITMAP_CHUNK_REGIONS_MAX }),
    spare: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 20 })),
  })
  .chain((r) => randomBitmap(r.regionCount).map((bits) => ({ r, bits })))
  .map(({ r, bits }) => {
    const firstRegion = r.firstByte * 8;
    const totalRegions = Math.min(2 ** 32, firstRegion + r.regionCount + r.spare);
    const regionCount = totalRegions - firstRegion < r.regionCount ? totalRegions - firstRegion : r.regionCount;
    const trimmed = Buffer.from(bits.subarray(0, Math.ceil(regionCount / 8)));
    if (regionCount % 8) trimmed[trimmed.length - 1]! &= (1 << (regionCount % 8)) - 1;
    const bitmapFlags = firstRegion + regionCount === totalRegions ? BitmapFlag.Last : 0;
    return { type: MessageType.Bitmap, tag: r.tag, firstRegion, regionCount, regionBytes: 2 ** r.regionShift, bitmapFlags, totalRegions, bits: trimmed };
  });

const hashRequest = fc.record({
  tag,
  offsetBytes: fc.integer({ min: 0, max: Math.floor(Number.MAX_SAFE_INTEGER / SECTOR_BYTES) }).map((s) => s * SECTOR_BYTES),
  lengthBytes: fc.integer({ min: 1, max: HASH_LENGTH_BYTES_MAX / SECTOR_BYTES }).map((s) => s * SECTOR_BYTES),
  epoch: u64,
});

const hashReply = fc.oneof(
  fc.record({ tag, rangeDigest: fc.bigInt({ min: 0n, max: RANGE_DIGEST_MAX }) }).map((r) => ({ type: MessageType.HashReply, status: 0, ...r })),
  fc.record({ tag, status: fc.integer({ min: 1, max: 2 }) }).map((r) => ({ type: MessageType.HashReply, rangeDigest: 0n, ...r })),
);

const readRequest = fc.record({ tag, offsetBytes: safe, lengthBytes: fc.integer({ min: 1, max: READ_LENGTH_BYTES_MAX }), epoch: u64 });

/** A READ_REPLY: status OK with its payload (the head's CRC covers it), or an error status without one. */
const readReplyUnit: fc.Arbitrary<Unit> = fc.oneof(
  fc.record({ tag, bytes: fc.uint8Array({ minLength: 1, maxLength: PAYLOAD_BYTES_MAX_GENERATED }) }).map((r) => {
    const payload = Buffer.from(r.bytes);
    const head = encodeReadReply(r.tag, 0, payload);
    const message: WireMessage = { type: MessageType.ReadReply, tag: r.tag, status: 0, lengthBytes: payload.length, crc32c: head.readUInt32BE(12) };
    return [{ message, payload }];
  }),
  fc.record({ tag, status: fc.integer({ min: 1, max: 2 }) }).map((r) => {
    const head = encodeReadReply(r.tag, r.status, null);
    const message: WireMessage = { type: MessageType.ReadReply, tag: r.tag, status: r.status, lengthBytes: 0, crc32c: head.readUInt32BE(12) };
    return [{ message, payload: null }];
  }),
);

/** Every message type, each unit in the order it must travel. */
const unit: fc.Arbitrary<Unit> = fc.oneof(
  single(fc.record({ tag, h: helloFields }).map(({ tag: t, h }) => ({ type: MessageType.Hello, tag: t, ...h }))),
  single(fc.record({ tag, reason: fc.integer({ min: 0, max: 10 }), h: helloFields }).map(({ tag: t, reason, h }) => ({ type: MessageType.HelloReply, tag: t, reason, ...h }))),
  inlineUnit,
  largeUnit,
  single(fc.record({ tag, status: fc.integer({ min: 0, max: 4 }) }).map((r) => ({ type: MessageType.Ack, ...r }))),
  single(safe.map((completeThroughSeq) => ({ type: MessageType.WriteComplete, tag: 0, completeThroughSeq }))),
  single(tag.map((t) => ({ type: MessageType.Flush, tag: t }))),
  single(extent.map((e) => ({ type: MessageType.Trim, ...e }))),
  single(extent.map((e) => ({ type: MessageType.WriteZeroes, ...e }))),
  single(fc.record({ tag, nonce: u64 }).map((r) => ({ type: MessageType.Ping, ...r }))),
  single(fc.record({ tag, nonce: u64 }).map((r) => ({ type: MessageType.Pong, ...r }))),
  single(bitmapChunk),
  single(hashRequest.map((r) => ({ type: MessageType.HashRequest, ...r }))),
  single(hashReply),
  single(fc.record({ tag, generation: u64 }).map((r) => ({ type: MessageType.ResyncDone, ...r }))),
  single(fc.record({ tag, token: u64 }).map((r) => ({ type: MessageType.ResyncChannel, ...r }))),
  single(readRequest.map((r) => ({ type: MessageType.ReadRequest, ...r }))),
  readReplyUnit,
);

function encodeUnits(units: Unit[]): Buffer {
  const parts: Buffer[] = [];
  for (const u of units) {
    for (const { message, payload } of u) {
      parts.push(encodeMessage(message, payload ?? undefined));
      if (payload) parts.push(payload);
    }
  }
  return Buffer.concat(parts);
}

function sameFrames(a: Frame[], b: Frame[]): boolean {
  const text = (f: Frame): string =>
    f.kind === 'error' ? `error:${f.reason}` : f.kind === 'payload' ? `payload:${f.type}:${f.payload.toString('hex')}` : `message:${f.type}:${f.head.toString('hex')}:${f.body?.toString('hex') ?? ''}`;
  return a.length === b.length && a.every((f, i) => text(f) === text(b[i]!));
}

function readAll(reader: FrameReader): Frame[] {
  const frames: Frame[] = [];
  for (let f = reader.next(); f; f = reader.next()) frames.push(f);
  return frames;
}

describe(`wire properties (fast-check seed ${SEED})`, () => {
  it('round-trips every message type through encode and decode', () => {
    check(
      fc.property(fc.array(unit, { minLength: 1, maxLength: 6 }), (units) => {
        const decoded = decodeStream(encodeUnits(units));
        assert.ok(decoded.ok, decoded.ok ? '' : decoded.reason);
        const expected = units.flat();
        assert.equal(decoded.value.length, expected.length);
        decoded.value.forEach((d, i) => {
          assert.deepEqual(messageToJson(d.message), messageToJson(expected[i]!.message));
          assert.equal(d.payload?.toString('hex') ?? null, expected[i]!.payload?.toString('hex') ?? null);
        });
      }),
      300,
    );
  });

  it('rejects, or decodes to different fields, every single-bit flip of an inline write head + payload', () => {
    check(
      fc.property(inlineUnit, fc.nat(), (u, bitSeed) => {
        const bytes = encodeUnits([u]);
        const bit = bitSeed % (bytes.length * 8);
        const mutated = Buffer.from(bytes);
        mutated[bit >>> 3]! ^= 1 << (bit & 7);
        const decoded = decodeStream(mutated);
        if (!decoded.ok) return;
        const original = JSON.stringify({ ...messageToJson(u[0]!.message), payload: u[0]!.payload!.toString('hex') });
        const again = decoded.value.map((d) => JSON.stringify({ ...messageToJson(d.message), payload: d.payload?.toString('hex') }));
        assert.ok(again.length !== 1 || again[0] !== original, `bit ${bit} flipped but decoded the same`);
      }),
      1000,
    );
  });

  it('the CRC alone catches every single-bit flip of head bytes 0..15 and the payload', () => {
    check(
      fc.property(inlineUnit, fc.nat(), (u, bitSeed) => {
        const head = Buffer.from(encodeMessage(u[0]!.message, u[0]!.payload!));
        const payload = Buffer.from(u[0]!.payload!);
        const bits = (HEAD_BYTES + payload.length) * 8;
        const bit = bitSeed % bits;
        const target = bit < HEAD_BYTES * 8 ? head : payload;
        const index = bit < HEAD_BYTES * 8 ? bit >>> 3 : (bit >>> 3) - HEAD_BYTES;
        if (target === head && index === 4) return; // the length byte changes the payload size: framing catches it
        target[index]! ^= 1 << (bit & 7);
        const decoded = decodeMessage(head);
        if (!decoded.ok) return; // version, type or flag bits
        assert.equal(verifyInlineWrite(head, payload).ok, false, `bit ${bit}`);
      }),
      1000,
    );
  });

  it('frames a stream the same whatever the chunking, copying exactly the frames that span chunks', () => {
    check(
      fc.property(
        fc.array(unit, { minLength: 1, maxLength: 8 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }),
        (units, cutFractions) => {
          const stream = encodeUnits(units);
          const whole = new FrameReader();
          whole.push(stream);
          const reference = readAll(whole);
          assert.ok(whole.end().ok);
          assert.equal(whole.copiedPayloadBytes + whole.copiedControlBytes, 0);

          const cuts = [...new Set(cutFractions.map((f) => Math.floor(f * stream.length)))].filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b);
          const chunked = new FrameReader();
          const frames: Frame[] = [];
          let start = 0;
          for (const end of [...cuts, stream.length]) {
            const chunk = Buffer.allocUnsafeSlow(end - start); // memory of its own, like a fresh socket chunk
            stream.copy(chunk, 0, start, end);
            chunked.push(chunk);
            frames.push(...readAll(chunked));
            start = end;
          }
          assert.ok(chunked.end().ok);
          assert.ok(sameFrames(frames, reference));

          const spans = (from: number, length: number): boolean => cuts.some((c) => c > from && c < from + length);
          let payloadCopies = 0;
          let controlCopies = 0;
          for (const f of reference) {
            if (f.kind === 'payload') {
              const at = f.payload.byteOffset - stream.byteOffset;
              if (spans(at, f.payload.length)) payloadCopies += f.payload.length;
            } else if (f.kind === 'message') {
              if (spans(f.head.byteOffset - stream.byteOffset, HEAD_BYTES)) controlCopies += HEAD_BYTES;
              if (f.body && spans(f.body.byteOffset - stream.byteOffset, f.body.length)) controlCopies += f.body.length;
            }
          }
          assert.equal(chunked.copiedPayloadBytes, payloadCopies);
          assert.equal(chunked.copiedControlBytes, controlCopies);
        },
      ),
      300,
    );
  });

  it('splits any bitmap into chunks that frame, decode and reassemble to the same bitmap', () => {
    const bitmapCase = fc
      .record({ totalRegions: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 3 * BITMAP_CHUNK_REGIONS_MAX })), chunkBytes: fc.integer({ min: 1, max: BITMAP_CHUNK_REGIONS_MAX / 8 }) })
      .chain((r) => randomBitmap(r.totalRegions).map((bitmap) => ({ ...r, bitmap })));
    check(
      fc.property(bitmapCase, fc.integer({ min: 12, max: 26 }), ({ totalRegions, chunkBytes, bitmap }, regionShift) => {
        const chunks = encodeBitmapChunks(bitmap, totalRegions, 2 ** regionShift, chunkBytes * 8);
        const decoded = decodeStream(Buffer.concat(chunks));
        assert.ok(decoded.ok, decoded.ok ? '' : decoded.reason);
        const assembler = new BitmapAssembler();
        for (const d of decoded.value) {
          assert.ok(!assembler.complete);
          const added = assembler.add(d.message as BitmapMessage);
          assert.ok(added.ok, added.ok ? '' : added.reason);
          const valid = validateMessage(d.message, { volumeSizeBytes: totalRegions * 2 ** regionShift, inlineThresholdBytes: 32768 });
          assert.ok(valid.ok, valid.ok ? '' : valid.reason);
        }
        const received = assembler.result();
        assert.ok(received);
        assert.equal(received.totalRegions, totalRegions);
        assert.equal(Buffer.from(received.bitmap).toString('hex'), Buffer.from(bitmap).toString('hex'));
      }),
      200,
    );
  });

  it('rejects, or decodes to different fields, every single-bit flip of a BITMAP, HASH_REPLY or RESYNC_DONE', () => {
    const message = fc.oneof(bitmapChunk, hashReply, fc.record({ tag, generation: u64 }).map((r): WireMessage => ({ type: MessageType.ResyncDone, ...r })));
    check(
      fc.property(message, fc.nat(), (m, bitSeed) => {
        const bytes = Buffer.from(encodeMessage(m));
        const bit = bitSeed % (bytes.length * 8);
        bytes[bit >>> 3]! ^= 1 << (bit & 7);
        const decoded = decodeStream(bytes);
        if (!decoded.ok) return;
        const again = decoded.value.map((d) => JSON.stringify(messageToJson(d.message)));
        assert.ok(again.length !== 1 || again[0] !== JSON.stringify(messageToJson(m)), `bit ${bit} flipped but decoded the same`);
      }),
      1000,
    );
  });

  it('never throws on random bytes, including ones shaped like real heads', () => {
    const shaped = fc
      .record({ type: fc.oneof(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 13, max: 16 })), bodyLength: fc.constantFrom(24, 25, 27, 88, 89, 0, 4096, 4097), rest: fc.uint8Array({ minLength: 16, maxLength: 400 }) })
      .map(({ type, bodyLength, rest }) => {
        const b = Buffer.from(rest);
        b[0] = 0x40 | type;
        b.writeUInt32BE(bodyLength, 4);
        return b;
      });
    check(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)), shaped), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cutSeeds) => {
        const decoded = decodeStream(bytes);
        if (decoded.ok) for (const d of decoded.value) validateMessage(d.message, { volumeSizeBytes: 1 << 20, inlineThresholdBytes: 32768 });
        decodeMessage(bytes.subarray(0, HEAD_BYTES), bytes.subarray(HEAD_BYTES));
        decodeMessage(bytes);
        verifyInlineWrite(bytes.subarray(0, HEAD_BYTES), bytes.subarray(HEAD_BYTES));
        const reader = new FrameReader();
        let start = 0;
        for (const c of [...cutSeeds.map((s) => (bytes.length ? s % bytes.length : 0)).sort((a, b) => a - b), bytes.length]) {
          reader.push(bytes.subarray(start, Math.max(start, c)));
          start = Math.max(start, c);
          for (let f = reader.next(); f; f = reader.next()) if (f.kind === 'message') decodeMessage(f.head, f.body);
        }
        reader.end();
      }),
      2000,
    );
  });
});
