/**
 * Wire format: codec and frame reader against test/vectors/wire.json (made by an independent
 * assembler of the spec's byte tables), CRC32C known answers, and the spec's hex examples.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  AckStatus,
  FrameReader,
  HEAD_BYTES,
  MessageType,
  RETIRED_MESSAGE_TYPES,
  crc32c,
  crc32cSoftware,
  decodeMessage,
  decodeStream,
  encodeAck,
  encodeMessage,
  encodeWriteInline,
  encodeWriteMeta,
  encodeWriteNotify,
  epochLow8,
  messageFromJson,
  messageToJson,
  opName,
  typeName,
  useCrc32cImplementation,
  validateMessage,
  verifyInlineWrite,
  verifyMetaPayload,
  type WriteMetaMessage,
} from '../../src/wire';

interface Vector {
  name: string;
  description: string;
  hex: string;
  valid: boolean;
  fields?: Record<string, string | number>[];
  reason?: string;
  limits?: { volumeSizeBytes: number; inlineThresholdBytes: number };
}

const REPO_ROOT = path.join(__dirname, '..', '..', '..');
const VECTORS: Vector[] = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'test', 'vectors', 'wire.json'), 'utf8')).vectors;

/** Decoded stream as the vectors' JSON fields (payloadHex on messages followed by a payload). */
function decodedFields(bytes: Buffer): { ok: true; fields: Record<string, string | number>[] } | { ok: false; reason: string } {
  const result = decodeStream(bytes);
  if (!result.ok) return result;
  return {
    ok: true,
    fields: result.value.map((d) => ({ ...messageToJson(d.message), ...(d.payload ? { payloadHex: d.payload.toString('hex') } : {}) })),
  };
}

describe('wire: CRC32C', () => {
  it('matches the Castagnoli check value and the RFC 3720 vectors', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
    assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
    assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
    assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
    assert.equal(crc32c(new Uint8Array(0)), 0);
  });

  it('continues from a seed: crc(b, crc(a)) == crc(a+b) for every split', () => {
    const data = Buffer.from('The quick brown fox jumps over the lazy dog, twice over.');
    const whole = crc32c(data);
    for (let split = 0; split <= data.length; split++) {
      assert.equal(crc32c(data.subarray(split), crc32c(data.subarray(0, split))), whole, `split ${split}`);
    }
  });

  it('routes payload CRCs through an installed implementation', () => {
    let calls = 0;
    const previous = useCrc32cImplementation((buf, seed) => {
      calls++;
      return crc32cSoftware(buf, seed);
    });
    try {
      const payload = Buffer.alloc(512, 9);
      const head = encodeWriteInline(1, 0, 0, 0, payload);
      assert.ok(calls > 0, 'encoder used the installed CRC');
      assert.ok(verifyInlineWrite(head, payload).ok);
    } finally {
      useCrc32cImplementation(previous);
    }
  });
});

describe('wire: constants and names', () => {
  it('has a 128-bit head and distinct, never-retired type numbers with names', () => {
    assert.equal(HEAD_BYTES * 8, 128);
    const numbers = Object.values(MessageType);
    assert.equal(new Set(numbers).size, numbers.length);
    for (const t of numbers) {
      assert.ok(!RETIRED_MESSAGE_TYPES.includes(t));
      assert.doesNotMatch(typeName(t), /UNKNOWN/);
      assert.equal(opName(t), typeName(t));
    }
    assert.equal(typeName(0), 'UNKNOWN(0)');
    assert.equal(typeName(MessageType.WriteInline), 'WRITE_INLINE');
  });
});

describe('wire: test vectors', () => {
  it('covers every message type and every kind of invalid input', () => {
    const seen = new Set<string>();
    for (const v of VECTORS) if (v.valid) for (const f of v.fields ?? []) seen.add(String(f.type));
    for (const t of Object.values(MessageType)) assert.ok(seen.has(typeName(t)), `a valid vector has ${typeName(t)}`);
    const reasons = VECTORS.filter((v) => !v.valid).map((v) => v.reason ?? '');
    for (const kind of ['version', 'unknown message type', 'reserved', 'bad CRC32C', 'truncated', 'BODY_BYTES_MAX', 'beyond the volume']) {
      assert.ok(reasons.some((r) => r.includes(kind)), `an invalid vector covers "${kind}"`);
    }
  });

  for (const v of VECTORS) {
    it(`decodes ${v.valid ? 'valid' : 'invalid'} vector ${v.name}`, () => {
      const decoded = decodedFields(Buffer.from(v.hex, 'hex'));
      if (v.fields) {
        assert.ok(decoded.ok, `decodes: ${decoded.ok ? '' : decoded.reason}`);
        assert.deepEqual(decoded.fields, v.fields);
      }
      let reason: string | null = decoded.ok ? null : decoded.reason;
      const stream = decodeStream(Buffer.from(v.hex, 'hex'));
      if (stream.ok && v.limits) {
        for (const item of stream.value) {
          const check = validateMessage(item.message, v.limits);
          if (!check.ok && reason === null) reason = check.reason;
        }
      }
      if (v.valid) assert.equal(reason, null);
      else {
        assert.notEqual(reason, null, 'rejected');
        assert.ok(reason!.includes(v.reason!), `reason "${reason}" includes "${v.reason}"`);
      }
    });

    if (v.fields) {
      it(`encodes vector ${v.name} byte for byte`, () => {
        const parts: Buffer[] = [];
        for (const f of v.fields!) {
          const { payloadHex, ...fields } = f;
          const payload = payloadHex === undefined ? undefined : Buffer.from(String(payloadHex), 'hex');
          parts.push(encodeMessage(messageFromJson(fields), payload));
          if (payload) parts.push(payload);
        }
        assert.equal(Buffer.concat(parts).toString('hex'), v.hex);
      });
    }
  }
});

describe('wire: codec details', () => {
  it('encodes into a caller buffer at an offset and touches nothing else', () => {
    const out = Buffer.alloc(40, 0xee);
    const returned = encodeAck(0x0102, AckStatus.Ok, out, 7);
    assert.equal(returned, out);
    assert.equal(out.subarray(7, 23).toString('hex'), VECTORS.find((v) => v.name === 'ack-ok')!.hex);
    assert.ok(out.subarray(0, 7).every((b) => b === 0xee));
    assert.ok(out.subarray(23).every((b) => b === 0xee));
    assert.throws(() => encodeAck(1, 0, Buffer.alloc(20), 5), RangeError);
  });

  it('refuses encoder arguments outside the format (a local bug, so it throws)', () => {
    assert.throws(() => encodeWriteInline(1, 0, 0, 0, Buffer.alloc(100)), RangeError);
    assert.throws(() => encodeWriteInline(1, 0, 0, 0, Buffer.alloc(512 * 257)), RangeError);
    assert.throws(() => encodeWriteInline(70000, 0, 0, 0, Buffer.alloc(512)), RangeError);
    assert.throws(() => encodeWriteNotify(1, 0x80, 1), RangeError);
    assert.throws(() => encodeWriteMeta(1, 0, 0, 0, 1n), RangeError);
  });

  it('rejects a body on a bodiless type and a body shorter or longer than announced', () => {
    const ack = encodeAck(1, 0);
    assert.match((decodeMessage(ack, Buffer.alloc(4)) as { reason: string }).reason, /carries no body/);
    assert.match((decodeMessage(ack.subarray(0, 15)) as { reason: string }).reason, /truncated head/);
    const meta = encodeWriteMeta(1, 0, 10, 0, 1n);
    assert.ok(decodeMessage(meta.subarray(0, 16), meta.subarray(16)).ok);
    assert.match((decodeMessage(meta.subarray(0, 16), meta.subarray(16, 30)) as { reason: string }).reason, /truncated WRITE_META body/);
    assert.match((decodeMessage(meta.subarray(0, 16), Buffer.concat([meta.subarray(16), Buffer.alloc(1)])) as { reason: string }).reason, /announces 24/);
  });

  it('verifies payload lengths and CRCs of both write paths', () => {
    const payload = Buffer.alloc(1024, 3);
    const head = encodeWriteInline(5, 1, 7, 100, payload);
    assert.ok(verifyInlineWrite(head, payload).ok);
    assert.match((verifyInlineWrite(head, payload.subarray(0, 512)) as { reason: string }).reason, /announces 1024/);
    const data = Buffer.from('unaligned large write');
    const meta = decodeMessage(...splitMeta(encodeWriteMeta(5, 3, data.length, crc32c(data), 7n)));
    assert.ok(meta.ok);
    assert.ok(verifyMetaPayload(meta.value as WriteMetaMessage, data).ok);
    assert.match((verifyMetaPayload(meta.value as WriteMetaMessage, Buffer.from('unaligned large writ!')) as { reason: string }).reason, /bad payload CRC32C/);
  });

  it('takes the epoch low byte from the full epoch', () => {
    assert.equal(epochLow8(0x1234n), 0x34);
    assert.equal(epochLow8(256n), 0);
  });
});

function splitMeta(bytes: Buffer): [Buffer, Buffer] {
  return [bytes.subarray(0, HEAD_BYTES), bytes.subarray(HEAD_BYTES)];
}

describe('wire: frame reader', () => {
  const small = Buffer.from(VECTORS.find((v) => v.name === 'secondary-receives-small-write')!.hex, 'hex');

  it('hands out a payload inside one chunk as a view of that chunk (no copy)', () => {
    const reader = new FrameReader();
    reader.push(small);
    const head = reader.next();
    const payload = reader.next();
    assert.equal(head?.kind, 'message');
    assert.equal(payload?.kind, 'payload');
    if (payload?.kind !== 'payload') return;
    assert.equal(payload.payload.buffer, small.buffer);
    assert.equal(payload.payload.byteOffset, small.byteOffset + HEAD_BYTES);
    assert.equal(reader.next()?.kind, 'message');
    assert.equal(reader.next(), null);
    assert.equal(reader.copiedPayloadBytes, 0);
    assert.equal(reader.copiedControlBytes, 0);
    assert.ok(reader.end().ok);
  });

  it('copies a payload that spans separate chunks once and counts it', () => {
    const reader = new FrameReader();
    // Each chunk in memory of its own, like separate socket reads into fresh buffers.
    const separate = (bytes: Buffer): Buffer => {
      const own = Buffer.allocUnsafeSlow(bytes.length);
      bytes.copy(own);
      return own;
    };
    reader.push(separate(small.subarray(0, 100)));
    assert.equal(reader.next()?.kind, 'message');
    assert.equal(reader.next(), null);
    reader.push(separate(small.subarray(100, 530)));
    assert.equal(reader.next()?.kind, 'payload');
    assert.equal(reader.copiedPayloadBytes, 512);
    reader.push(separate(small.subarray(530)));
    assert.equal(reader.next()?.kind, 'message');
    assert.equal(reader.copiedControlBytes, 16);
  });

  it('merges a chunk that continues the previous one in memory: frames across them are views, not copies', () => {
    const reader = new FrameReader();
    reader.push(small.subarray(0, 100));
    assert.equal(reader.next()?.kind, 'message');
    reader.push(small.subarray(100, 530));
    const payload = reader.next();
    assert.equal(payload?.kind, 'payload');
    assert.equal(payload?.kind === 'payload' && payload.payload.buffer, small.buffer, 'the payload is a view of the pushed memory');
    reader.push(small.subarray(530));
    assert.equal(reader.next()?.kind, 'message');
    assert.equal(reader.copiedPayloadBytes, 0);
    assert.equal(reader.copiedControlBytes, 0);
  });

  it('relocates unframed bytes (and a head waiting for its body) so their old memory may be reused', () => {
    const reader = new FrameReader();
    const first = Buffer.allocUnsafeSlow(100); // the head, and 84 bytes of the 512-byte payload
    small.copy(first, 0, 0, 100);
    reader.push(first);
    assert.equal(reader.next()?.kind, 'message');
    assert.equal(reader.payloadBytesDue, 512 - 84);
    const target = Buffer.alloc(4096);
    assert.equal(reader.relocateBuffered(target), 84);
    first.fill(0xee); // the old memory is reused for something else
    target.set(small.subarray(100, 530), 84); // the next read lands right after the moved bytes
    reader.push(target.subarray(84, 84 + 430));
    const payload = reader.next();
    assert.ok(payload?.kind === 'payload' && payload.payload.equals(small.subarray(16, 528)));
    assert.equal(reader.copiedPayloadBytes, 84, 'only the moved prefix counts as copied');
  });

  it('reports a framing error once, then stays silent and ignores more input', () => {
    const reader = new FrameReader();
    reader.push(Buffer.alloc(16));
    const frame = reader.next();
    assert.equal(frame?.kind, 'error');
    assert.equal(reader.next(), null);
    reader.push(small);
    assert.equal(reader.next(), null);
    assert.match(reader.failure ?? '', /version 0/);
    assert.equal(reader.end().ok, false);
  });

  it('accepts plain Uint8Array chunks', () => {
    const reader = new FrameReader();
    reader.push(new Uint8Array(small));
    const frames = [reader.next(), reader.next(), reader.next()];
    assert.deepEqual(frames.map((f) => f?.kind), ['message', 'payload', 'message']);
  });
});

describe('wire: spec examples', () => {
  it('every "vector: NAME" hex block in docs/wire-format.md equals (or, ending in "...", starts) that vector', () => {
    const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'wire-format.md'), 'utf8');
    const blocks = [...doc.matchAll(/```text\nvector: (\S+)\n([\s\S]*?)```/g)];
    assert.ok(blocks.length >= 10, `found ${blocks.length} example blocks`);
    for (const [, name, text] of blocks) {
      const vector = VECTORS.find((v) => v.name === name);
      assert.ok(vector, `vector ${name} exists`);
      const hexLines = text!.split('\n').map((line) => line.replace(/\s*(#|\|).*$/, '').trim()).filter((line) => line.length);
      const elided = hexLines[hexLines.length - 1] === '...';
      const hex = hexLines.filter((line) => line !== '...').join('').replace(/\s/g, '').toLowerCase();
      if (elided) assert.ok(vector!.hex.startsWith(hex), `${name}: doc hex is a prefix of the vector`);
      else assert.equal(hex, vector!.hex, `${name}: doc hex equals the vector`);
    }
  });

  it('the spec lists every message type in section 4 and every invalid vector with its reason', () => {
    const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'wire-format.md'), 'utf8');
    for (const t of Object.values(MessageType)) assert.match(doc, new RegExp(`\\n\\| ${t} \\| ${typeName(t)} \\|`), `section 4 row for ${typeName(t)}`);
    for (const v of VECTORS.filter((x) => !x.valid)) {
      const row = doc.split('\n').find((line) => line.startsWith(`| ${v.name} |`));
      assert.ok(row, `invalid vector ${v.name} is in the spec table`);
      assert.ok(row.trimEnd().endsWith(`| ${v.reason} |`), `${v.name}: spec reason matches "${v.reason}"`);
    }
  });
});
