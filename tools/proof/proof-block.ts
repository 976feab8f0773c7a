/**
 * The self-describing block the writer puts on the volume and the checker verifies.
 *
 * Layout (little-endian), 64-byte header then payload up to the block size:
 *   0  8  magic "BMPROOF1"
 *   8  8  byte offset of this block on the volume
 *  16  8  write sequence number (per writer run, starts at 1, strictly increasing per send)
 *  24  8  writer run id (random per run)
 *  32  4  block size in bytes
 *  36  4  reserved, zero
 *  40  4  CRC32C of bytes [0, 40): the header alone, so a torn block still tells whose it was
 *  44  4  CRC32C of the whole block with these 4 bytes left out ([0, 44) then [48, end))
 *  48 16  reserved, zero
 *  64  .. deterministic pseudo-random bytes derived from (run id, seq, offset)
 */
import { crc32c } from '../../src/wire/crc32c';

export const PROOF_BLOCK_MAGIC = Buffer.from('BMPROOF1', 'latin1');
export const PROOF_HEADER_BYTES = 64;
/** Smallest and largest block the tools accept; a power of two in between. */
export const MIN_PROOF_BLOCK_BYTES = 512;
export const MAX_PROOF_BLOCK_BYTES = 1024 * 1024;

const OFFSET_AT = 8;
const SEQ_AT = 16;
const RUN_ID_AT = 24;
const BLOCK_BYTES_AT = 32;
const HEADER_CRC_AT = 40;
const BLOCK_CRC_AT = 44;

/** True if n is an acceptable proof block size. */
export function isValidProofBlockBytes(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_PROOF_BLOCK_BYTES && n <= MAX_PROOF_BLOCK_BYTES && (n & (n - 1)) === 0;
}

/** Mixes (run id, seq, offset) into a 32-bit PRNG seed (splitmix-style avalanche). */
function payloadSeed(runId: bigint, seq: bigint, offset: number): number {
  const mask = (1n << 64n) - 1n;
  let z = (runId ^ (seq * 0x9e3779b97f4a7c15n) ^ (BigInt(offset) * 0xbf58476d1ce4e5b9n)) & mask;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
  z ^= z >> 31n;
  return Number(z & 0xffffffffn) | 1; // never 0: xorshift would stay 0 forever
}

/** Fills target[start, end) with xorshift32 bytes from the seed; deterministic for writer and checker alike. */
function fillPseudoRandom(target: Buffer, start: number, end: number, seed: number): void {
  let x = seed >>> 0;
  for (let i = start; i < end; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    target.writeUInt32LE(x, i);
  }
}

/** CRC32C of the block skipping the 4 block-CRC bytes. */
function blockCrc(block: Buffer): number {
  const head = crc32c(block.subarray(0, BLOCK_CRC_AT));
  return crc32c(block.subarray(BLOCK_CRC_AT + 4), head);
}

/** Builds the full block for one write. */
export function buildProofBlock(runId: bigint, seq: bigint, offset: number, blockBytes: number): Buffer {
  const block = Buffer.alloc(blockBytes);
  PROOF_BLOCK_MAGIC.copy(block, 0);
  block.writeBigUInt64LE(BigInt(offset), OFFSET_AT);
  block.writeBigUInt64LE(seq, SEQ_AT);
  block.writeBigUInt64LE(runId, RUN_ID_AT);
  block.writeUInt32LE(blockBytes, BLOCK_BYTES_AT);
  block.writeUInt32LE(crc32c(block.subarray(0, HEADER_CRC_AT)), HEADER_CRC_AT);
  fillPseudoRandom(block, PROOF_HEADER_BYTES, blockBytes, payloadSeed(runId, seq, offset));
  block.writeUInt32LE(blockCrc(block), BLOCK_CRC_AT);
  return block;
}

/** What a block read back from the replica turned out to be. */
export type DecodedProofBlock =
  | { kind: 'zero' } // all zero bytes: never written (or trimmed)
  | { kind: 'foreign' } // no valid proof header: somebody else's data, or a corrupted header
  | { kind: 'short' } // fewer bytes than a block (past the end of the image)
  | {
      kind: 'header'; // valid header; bodyValid says whether CRC and payload are right too
      offset: number;
      seq: bigint;
      runId: bigint;
      blockBytes: number;
      bodyValid: boolean;
    };

/** Decodes and verifies a block read from the replica (header CRC, block CRC and payload bytes). */
export function decodeProofBlock(block: Buffer, expectedBlockBytes: number): DecodedProofBlock {
  if (block.length < expectedBlockBytes) return { kind: 'short' };
  if (!block.subarray(0, PROOF_BLOCK_MAGIC.length).equals(PROOF_BLOCK_MAGIC)) {
    return block.subarray(0, expectedBlockBytes).every((b) => b === 0) ? { kind: 'zero' } : { kind: 'foreign' };
  }
  if (crc32c(block.subarray(0, HEADER_CRC_AT)) !== block.readUInt32LE(HEADER_CRC_AT)) return { kind: 'foreign' };
  const offset = Number(block.readBigUInt64LE(OFFSET_AT));
  const seq = block.readBigUInt64LE(SEQ_AT);
  const runId = block.readBigUInt64LE(RUN_ID_AT);
  const blockBytes = block.readUInt32LE(BLOCK_BYTES_AT);
  let bodyValid = blockBytes === expectedBlockBytes && blockCrc(block) === block.readUInt32LE(BLOCK_CRC_AT);
  if (bodyValid) bodyValid = block.equals(buildProofBlock(runId, seq, offset, blockBytes));
  return { kind: 'header', offset, seq, runId, blockBytes, bodyValid };
}
