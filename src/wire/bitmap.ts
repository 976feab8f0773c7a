/**
 * The out-of-sync bitmap on the wire (BITMAP, type 13): splitting a node's bitmap into chunk
 * messages, and reassembling the peer's chunks with the checks that span chunks (order, tags,
 * contiguity, one granularity). Bitmap layout in memory and on the wire: bit i of byte j is
 * region 8j + i (least significant bit first); bits past totalRegions are 0.
 */
import { bitmapChunkBytes, encodeBitmap, type BitmapMessage, type Check } from './codec';
import { BITMAP_CHUNK_REGIONS_MAX, BitmapFlag, TAG_COUNT } from './constants';

/** A whole bitmap as received from the peer. */
export interface ReceivedBitmap {
  regionBytes: number;
  totalRegions: number;
  /** ceil(totalRegions / 8) bytes, same layout as on the wire. */
  bitmap: Uint8Array;
}

/**
 * Encodes `bitmap` (ceil(totalRegions/8) bytes) as BITMAP chunks of at most `chunkRegionsMax`
 * regions (a multiple of 8), tags 0, 1, 2, ... (mod 65536), the last one flagged LAST. An empty
 * bitmap (totalRegions 0) is one empty LAST chunk. Throws RangeError for arguments the format
 * cannot express (a local bug).
 */
export function encodeBitmapChunks(bitmap: Uint8Array, totalRegions: number, regionBytes: number, chunkRegionsMax = BITMAP_CHUNK_REGIONS_MAX): Buffer[] {
  if (!Number.isInteger(chunkRegionsMax) || chunkRegionsMax < 8 || chunkRegionsMax > BITMAP_CHUNK_REGIONS_MAX || chunkRegionsMax % 8 !== 0) {
    throw new RangeError(`wire encode: chunkRegionsMax ${chunkRegionsMax} is not a multiple of 8 in 8..${BITMAP_CHUNK_REGIONS_MAX}`);
  }
  if (bitmap.length !== bitmapChunkBytes(totalRegions)) {
    throw new RangeError(`wire encode: a bitmap of ${totalRegions} regions has ${bitmapChunkBytes(totalRegions)} bytes, got ${bitmap.length}`);
  }
  const chunks: Buffer[] = [];
  let firstRegion = 0;
  do {
    const regionCount = Math.min(chunkRegionsMax, totalRegions - firstRegion);
    const end = firstRegion + regionCount;
    const bits = bitmap.subarray(firstRegion / 8, firstRegion / 8 + bitmapChunkBytes(regionCount));
    const bitmapFlags = end === totalRegions ? BitmapFlag.Last : 0;
    chunks.push(encodeBitmap(chunks.length % TAG_COUNT, { firstRegion, regionCount, regionBytes, bitmapFlags, totalRegions }, bits));
    firstRegion = end;
  } while (firstRegion < totalRegions);
  return chunks;
}

/**
 * Collects the peer's BITMAP chunks (each already decoded and checked by decodeMessage) into one
 * bitmap. add() refuses a chunk that does not continue the previous ones: wrong tag, a gap or
 * overlap, another granularity or total, or any chunk after LAST. The receiver drops the
 * connection on a refusal, like on any invalid message.
 */
export class BitmapAssembler {
  private chunksReceived = 0;
  private nextRegion = 0;
  private regionBytes = 0;
  private totalRegions = 0;
  private bitmap: Uint8Array | null = null;
  private done = false;

  /** True once the LAST chunk has been added. */
  get complete(): boolean {
    return this.done;
  }

  /** Adds the next chunk; copies its bits (the message may be a view of a socket chunk). */
  add(m: BitmapMessage): Check {
    if (this.done) return { ok: false, reason: `BITMAP chunk ${m.tag} after the LAST chunk` };
    const expectedTag = this.chunksReceived % TAG_COUNT;
    if (m.tag !== expectedTag) return { ok: false, reason: `BITMAP chunk tag ${m.tag}, expected chunk index ${expectedTag}` };
    if (this.bitmap === null) {
      this.regionBytes = m.regionBytes;
      this.totalRegions = m.totalRegions;
      this.bitmap = new Uint8Array(bitmapChunkBytes(m.totalRegions));
    } else if (m.regionBytes !== this.regionBytes || m.totalRegions !== this.totalRegions) {
      return {
        ok: false,
        reason: `BITMAP chunk ${m.tag} has region size ${m.regionBytes} and ${m.totalRegions} regions, earlier chunks ${this.regionBytes} and ${this.totalRegions}`,
      };
    }
    if (m.firstRegion !== this.nextRegion) return { ok: false, reason: `BITMAP chunk ${m.tag} starts at region ${m.firstRegion}, expected ${this.nextRegion}` };
    this.bitmap.set(m.bits, m.firstRegion / 8);
    this.chunksReceived += 1;
    this.nextRegion = m.firstRegion + m.regionCount;
    this.done = (m.bitmapFlags & BitmapFlag.Last) !== 0;
    return { ok: true };
  }

  /** The whole bitmap once complete, else null. */
  result(): ReceivedBitmap | null {
    if (!this.done || this.bitmap === null) return null;
    return { regionBytes: this.regionBytes, totalRegions: this.totalRegions, bitmap: this.bitmap };
  }
}
