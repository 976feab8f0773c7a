/**
 * The digest both nodes compute to decide whether a region is the same on each (online verify,
 * checksum resync): the first 32 bits of SHA-256. Not CRC32C: a CRC is linear, and data that
 * embeds its own CRC32C (fio verify headers, ext4 metadata blocks) gives different regions the
 * same CRC, which would hide real differences.
 */
import * as crypto from 'node:crypto';

export function regionDigest(data: Uint8Array): number {
  return crypto.createHash('sha256').update(data).digest().readUInt32BE(0);
}
