/**
 * Plain-JSON form of messages for test vectors, logs and tools: `type` is the name, 64-bit
 * identifiers (bigint) are "0x" + 16 hex digits, byte strings (BITMAP `bits`) are plain hex
 * without "0x", everything else stays a number.
 */
import type { WireMessage } from './codec';
import { typeFromName, typeName } from './names';

export type JsonFields = Record<string, string | number>;

/** Message → JSON-safe object with the same keys. */
export function messageToJson(m: WireMessage): JsonFields {
  const out: JsonFields = {};
  for (const [key, value] of Object.entries(m)) {
    if (key === 'type') out[key] = typeName(value as number);
    else if (typeof value === 'bigint') out[key] = `0x${value.toString(16).padStart(16, '0')}`;
    else if (value instanceof Uint8Array) out[key] = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
    else out[key] = value as number;
  }
  return out;
}

/** Keys whose JSON string is a byte string rather than a 64-bit identifier. */
const BYTE_STRING_KEYS = new Set(['bits']);

/** Inverse of messageToJson; bigint fields are the "0x" strings, byte strings the BYTE_STRING_KEYS. */
export function messageFromJson(fields: JsonFields): WireMessage {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (key === 'type') {
      const type = typeFromName(String(value));
      if (type === undefined) throw new Error(`unknown message type name ${String(value)}`);
      out[key] = type;
    } else if (typeof value === 'string' && BYTE_STRING_KEYS.has(key)) {
      out[key] = Buffer.from(value, 'hex');
    } else if (typeof value === 'string') {
      out[key] = BigInt(value);
    } else {
      out[key] = value;
    }
  }
  return out as unknown as WireMessage;
}
