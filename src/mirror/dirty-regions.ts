/** Number of set bits of every byte value (popcount table for fromBytes). */
const BITS_SET_PER_BYTE: Uint8Array = (() => {
  const table = new Uint8Array(256);
  for (let b = 1; b < 256; b++) table[b] = (b & 1) + table[b >>> 1]!;
  return table;
})();

/**
 * Which regions of the volume the peer is missing: a bitmap with one bit per region of
 * `regionBytes` (a power of two). The crash-safe on-disk copy is the metadata file's job
 * (src/meta, via toBytes/fromBytes).
 */
export class DirtyRegions {
  private readonly bits: Uint8Array;
  readonly regionCount: number;
  private dirtyCount = 0;

  constructor(
    readonly volumeSizeBytes: number,
    readonly regionBytes: number,
  ) {
    if (regionBytes <= 0 || (regionBytes & (regionBytes - 1)) !== 0) throw new Error(`region size ${regionBytes} is not a power of two`);
    this.regionCount = Math.ceil(volumeSizeBytes / regionBytes);
    this.bits = new Uint8Array(Math.ceil(this.regionCount / 8));
  }

  /** Mark every region that [offset, offset+length) touches. */
  mark(offsetBytes: number, lengthBytes: number): void {
    for (let r = this.regionOf(offsetBytes), last = this.lastRegion(offsetBytes, lengthBytes); r <= last; r++) this.set(r);
  }

  /** Whether any region that [offset, offset+length) touches is dirty. */
  touchesDirty(offsetBytes: number, lengthBytes: number): boolean {
    for (let r = this.regionOf(offsetBytes), last = this.lastRegion(offsetBytes, lengthBytes); r <= last; r++) if (this.isDirty(r)) return true;
    return false;
  }

  /** The region that holds byte `offsetBytes`. */
  regionOf(offsetBytes: number): number {
    return Math.floor(offsetBytes / this.regionBytes);
  }

  /** The last region [offset, offset+length) touches; below regionOf(offset) when the range is empty. */
  lastRegion(offsetBytes: number, lengthBytes: number): number {
    if (lengthBytes <= 0) return -1;
    return Math.min(this.regionCount - 1, Math.floor((offsetBytes + lengthBytes - 1) / this.regionBytes));
  }

  markAll(): void {
    for (let r = 0; r < this.regionCount; r++) this.set(r);
  }

  isDirty(region: number): boolean {
    return (this.bits[region >>> 3]! & (1 << (region & 7))) !== 0;
  }

  clear(region: number): void {
    if (!this.isDirty(region)) return;
    this.bits[region >>> 3]! &= ~(1 << (region & 7));
    this.dirtyCount -= 1;
  }

  clearAll(): void {
    this.bits.fill(0);
    this.dirtyCount = 0;
  }

  get count(): number {
    return this.dirtyCount;
  }

  /** Bytes covered by dirty regions (the last region may be short). */
  get dirtyBytes(): number {
    let bytes = this.dirtyCount * this.regionBytes;
    const lastRegion = this.regionCount - 1;
    if (this.isDirty(lastRegion)) bytes -= this.regionCount * this.regionBytes - this.volumeSizeBytes;
    return bytes;
  }

  /** Next dirty region at or after `from`, or -1. */
  nextDirty(from: number): number {
    for (let r = from; r < this.regionCount; r++) {
      if (this.bits[r >>> 3] === 0) {
        r |= 7; // skip the rest of an empty byte
        continue;
      }
      if (this.isDirty(r)) return r;
    }
    return -1;
  }

  /**
   * The bitmap itself, not a copy (region r at bit r&7 of byte r>>3), for a native scan that reads it
   * within one call (collectDataRuns); nothing may change it but this class.
   */
  get bitmapView(): Uint8Array {
    return this.bits;
  }

  /** Size of the bitmap in bytes (one bit per region, region r at bit r&7 of byte r>>3). */
  get byteLength(): number {
    return this.bits.length;
  }

  /** A copy of the bitmap bytes, for the metadata file (layout: docs/metadata.md). */
  toBytes(): Uint8Array {
    return this.bits.slice();
  }

  /**
   * Rebuild from bytes made by toBytes; throws RangeError if the length is wrong or a bit past the
   * last region is set (the caller treats both as a corrupt copy).
   */
  static fromBytes(volumeSizeBytes: number, regionBytes: number, bytes: Uint8Array): DirtyRegions {
    const regions = new DirtyRegions(volumeSizeBytes, regionBytes);
    if (bytes.length !== regions.bits.length) {
      throw new RangeError(`bitmap has ${bytes.length} bytes; ${regions.regionCount} regions need ${regions.bits.length}`);
    }
    const tailBits = regions.regionCount & 7;
    if (tailBits !== 0 && (bytes[bytes.length - 1]! >>> tailBits) !== 0) {
      throw new RangeError(`bitmap has bits set past the last region ${regions.regionCount - 1}`);
    }
    regions.bits.set(bytes);
    let count = 0;
    for (let i = 0; i < bytes.length; i++) count += BITS_SET_PER_BYTE[bytes[i]!]!;
    regions.dirtyCount = count;
    return regions;
  }

  /** Add the peer's marked regions (its bitmap bytes at its granularity) to ours. */
  orBytes(bits: Uint8Array, bitsRegionBytes: number): void {
    for (let byte = 0; byte < bits.length; byte++) {
      const v = bits[byte]!;
      if (v === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        if ((v & (1 << bit)) === 0) continue;
        const offsetBytes = (byte * 8 + bit) * bitsRegionBytes;
        if (offsetBytes < this.volumeSizeBytes) this.mark(offsetBytes, Math.min(bitsRegionBytes, this.volumeSizeBytes - offsetBytes));
      }
    }
  }

  /** Byte range of one region, clipped to the volume. */
  regionRange(region: number): { offsetBytes: number; lengthBytes: number } {
    const offsetBytes = region * this.regionBytes;
    return { offsetBytes, lengthBytes: Math.min(this.regionBytes, this.volumeSizeBytes - offsetBytes) };
  }

  private set(region: number): void {
    if (this.isDirty(region)) return;
    this.bits[region >>> 3]! |= 1 << (region & 7);
    this.dirtyCount += 1;
  }
}
