/**
 * The digest both nodes compute to decide whether a region is the same on each (online verify,
 * checksum resync): the first 56 bits of SHA-256, as much as HASH_REPLY's head carries. Not
 * CRC32C: a CRC is linear, and data that embeds its own CRC32C (fio verify headers, ext4 metadata
 * blocks) gives different regions the same CRC, which would hide real differences. 56 bits leave
 * a 2^-56 chance per differing region of calling it equal (32 bits, as before, left 2^-32: a
 * checksum resync of 10 million differing regions would then skip one with about 0.2% chance).
 */
import * as crypto from 'node:crypto';

export function regionDigest(data: Uint8Array): bigint {
  return crypto.createHash('sha256').update(data).digest().readBigUInt64BE(0) >> 8n;
}
