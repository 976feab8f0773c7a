/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF).
 *
 * The software version is a slicing-by-8 table implementation. The codec never calls it directly
 * for payloads: it calls `crc32c`, which forwards to the active implementation, so the native
 * hardware CRC (same signature, see src/native.ts) can be swapped in with one call to
 * `useCrc32cImplementation`.
 */

/** Signature shared by the software and the native implementation. `seed` continues a previous result. */
export type Crc32cFunction = (buf: Uint8Array, seed?: number) => number;

const CASTAGNOLI_REFLECTED = 0x82f63b78;
const SLICES = 8;
const TABLE_ENTRIES = 256;

/** Builds the 8 slicing tables once at module load (8 × 256 uint32). */
function buildTables(): Uint32Array {
  const tables = new Uint32Array(SLICES * TABLE_ENTRIES);
  for (let n = 0; n < TABLE_ENTRIES; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CASTAGNOLI_REFLECTED : c >>> 1;
    tables[n] = c >>> 0;
  }
  for (let n = 0; n < TABLE_ENTRIES; n++) {
    let c = tables[n]!;
    for (let s = 1; s < SLICES; s++) {
      c = tables[c & 0xff]! ^ (c >>> 8);
      tables[s * TABLE_ENTRIES + n] = c >>> 0;
    }
  }
  return tables;
}

const T = buildTables();

/** Software CRC32C over buf[start, end) continuing from `seed`; used for the 12 head bytes without a subarray. */
export function crc32cRange(buf: Uint8Array, start: number, end: number, seed = 0): number {
  let crc = ~seed >>> 0;
  let i = start;
  const fastEnd = end - ((end - start) & 7);
  while (i < fastEnd) {
    const lo = (crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24))) >>> 0;
    crc =
      T[7 * 256 + (lo & 0xff)]! ^
      T[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      T[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      T[4 * 256 + (lo >>> 24)]! ^
      T[3 * 256 + buf[i + 4]!]! ^
      T[2 * 256 + buf[i + 5]!]! ^
      T[1 * 256 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) {
    crc = T[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
    i++;
  }
  return ~crc >>> 0;
}

/** Pure-TypeScript CRC32C of the whole buffer; the default implementation. */
export function crc32cSoftware(buf: Uint8Array, seed = 0): number {
  return crc32cRange(buf, 0, buf.length, seed);
}

let active: Crc32cFunction = crc32cSoftware;

/** CRC32C through the active implementation (software until a hardware one is installed). */
export function crc32c(buf: Uint8Array, seed = 0): number {
  return active(buf, seed) >>> 0;
}

/** Installs another implementation with the same results (e.g. the native hardware CRC); returns the previous one. */
export function useCrc32cImplementation(impl: Crc32cFunction): Crc32cFunction {
  const previous = active;
  active = impl;
  return previous;
}
