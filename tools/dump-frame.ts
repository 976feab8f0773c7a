/**
 * Prints the frames in a hex string of peer wire bytes with named fields (like DRBD's packet
 * name function), for reading captures and test vectors.
 *
 * Usage: node dist/tools/dump-frame.js HEX [--volume-size BYTES] [--inline-threshold BYTES]
 *        node dist/tools/dump-frame.js - < file.hex
 * HEX may contain spaces, newlines and colons. Exit status: 0 all frames valid, 1 invalid bytes, 2 usage.
 */
import * as fs from 'node:fs';
import {
  FrameReader,
  HEAD_BYTES,
  INLINE_THRESHOLD_DEFAULT_BYTES,
  MessageType,
  SECTOR_BYTES,
  ackStatusName,
  bitmapFlagsName,
  decodeMessage,
  hashStatusName,
  helloReasonName,
  roleName,
  typeName,
  validateMessage,
  verifyInlineWrite,
  verifyMetaPayload,
  writeFlagsName,
  type ConnectionLimits,
  type WireMessage,
  type WriteMetaMessage,
} from '../src/wire';

/** Bytes of payload shown in a dump line before it is elided. */
const PAYLOAD_PREVIEW_BYTES = 16;

export interface DumpResult {
  lines: string[];
  ok: boolean;
}

function hex32(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

/** The first bitmap bytes as hex, elided like payloads. */
function bitsPreview(bits: Uint8Array): string {
  const hex = Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength).subarray(0, PAYLOAD_PREVIEW_BYTES).toString('hex');
  return bits.length > PAYLOAD_PREVIEW_BYTES ? `${hex}...` : hex || '-';
}

/** Out-of-sync regions in a chunk: the number an operator wants to see. */
function countSetBits(bits: Uint8Array): number {
  let count = 0;
  for (const byte of bits) for (let v = byte; v; v &= v - 1) count++;
  return count;
}

/** One field as text, with the name of coded values. */
function fieldText(m: WireMessage, key: string, value: unknown): string {
  if (typeof value === 'bigint') return `${key}=0x${value.toString(16).padStart(16, '0')}`;
  if (key === 'flags') return `flags=${writeFlagsName(value as number)}`;
  if (key === 'status' && m.type === MessageType.HashReply) return `status=${hashStatusName(value as number)}(${value as number})`;
  if (key === 'status') return `status=${ackStatusName(value as number)}(${value as number})`;
  if (key === 'bitmapFlags') return `bitmapFlags=${bitmapFlagsName(value as number)}`;
  if (key === 'bits' && value instanceof Uint8Array) return `bits=${bitsPreview(value)} (${countSetBits(value)} set)`;
  if (key === 'reason') return `reason=${helloReasonName(value as number)}(${value as number})`;
  if (key === 'role') return `role=${roleName(value as number)}(${value as number})`;
  if (key === 'crc32c' || key === 'payloadCrc32c') return `${key}=${hex32(value as number)}`;
  if (key === 'rangeDigest') return `rangeDigest=0x${(value as bigint).toString(16).padStart(14, '0')}`;
  if (key === 'epochLow8') return `epochLow8=0x${(value as number).toString(16).padStart(2, '0')}`;
  if (key === 'sectorAddress' && m.type === MessageType.WriteInline) {
    return `sectorAddress=${value as number} (byte ${(value as number) * SECTOR_BYTES})`;
  }
  return `${key}=${String(value)}`;
}

/** "WRITE_INLINE tag=258 flags=FUA ..." for one decoded message. */
export function describeMessage(m: WireMessage): string {
  const parts = [typeName(m.type)];
  for (const [key, value] of Object.entries(m)) if (key !== 'type') parts.push(fieldText(m, key, value));
  return parts.join(' ');
}

/** Decodes every frame of `bytes` and describes it; stops at the first invalid one with its reason. */
export function dumpFrames(bytes: Buffer, limits: ConnectionLimits | null): DumpResult {
  const lines: string[] = [];
  const reader = new FrameReader();
  reader.push(bytes);
  let position = 0;
  let lastHead: Buffer | null = null;
  let lastMessage: WireMessage | null = null;
  const stop = (reason: string): DumpResult => {
    lines.push(`INVALID @${position}: ${reason}`);
    return { lines, ok: false };
  };
  for (let frame = reader.next(); frame; frame = reader.next()) {
    if (frame.kind === 'error') return stop(frame.reason);
    if (frame.kind === 'message') {
      const size = HEAD_BYTES + (frame.body ? frame.body.length : 0);
      const decoded = decodeMessage(frame.head, frame.body);
      if (!decoded.ok) return stop(`${typeName(frame.type)}: ${decoded.reason}`);
      lines.push(`@${position} ${describeMessage(decoded.value)}`);
      if (limits) {
        const valid = validateMessage(decoded.value, limits);
        if (!valid.ok) return stop(valid.reason);
      }
      position += size;
      lastHead = frame.head;
      lastMessage = decoded.value;
      continue;
    }
    const check =
      frame.type === MessageType.WriteInline
        ? verifyInlineWrite(lastHead!, frame.payload)
        : verifyMetaPayload(lastMessage as WriteMetaMessage, frame.payload);
    const preview = frame.payload.subarray(0, PAYLOAD_PREVIEW_BYTES).toString('hex');
    const more = frame.payload.length > PAYLOAD_PREVIEW_BYTES ? '...' : '';
    lines.push(`@${position} payload of ${typeName(frame.type)}: ${frame.payload.length} bytes ${preview}${more}`);
    if (!check.ok) return stop(check.reason);
    lines.push(`@${position} payload CRC32C ok`);
    position += frame.payload.length;
  }
  const end = reader.end();
  if (!end.ok) return stop(end.reason);
  return { lines, ok: true };
}

/** Hex text → bytes, ignoring whitespace, colons and an optional 0x prefix; null when not hex. */
export function parseHex(text: string): Buffer | null {
  const clean = text.replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) return null;
  return Buffer.from(clean, 'hex');
}

function main(argv: string[]): number {
  let hexText: string | null = null;
  let volumeSizeBytes: number | null = null;
  let inlineThresholdBytes = INLINE_THRESHOLD_DEFAULT_BYTES;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--volume-size') volumeSizeBytes = Number(argv[++i]);
    else if (arg === '--inline-threshold') inlineThresholdBytes = Number(argv[++i]);
    else if (arg === '-') hexText = fs.readFileSync(0, 'utf8');
    else hexText = arg;
  }
  if (hexText === null) {
    process.stderr.write('usage: dump-frame HEX|- [--volume-size BYTES] [--inline-threshold BYTES]\n');
    return 2;
  }
  const bytes = parseHex(hexText);
  if (!bytes) {
    process.stderr.write('dump-frame: input is not an even number of hex digits\n');
    return 2;
  }
  const limits = volumeSizeBytes === null ? null : { volumeSizeBytes, inlineThresholdBytes };
  const result = dumpFrames(bytes, limits);
  process.stdout.write(result.lines.join('\n') + '\n');
  return result.ok ? 0 : 1;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
