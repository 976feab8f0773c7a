/**
 * Which regions of the volume the peer is missing: a bitmap with one bit per region of
 * `regionBytes` (a power of two). In memory for now; the crash-safe on-disk copy is the
 * metadata file's job.
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
    if (lengthBytes <= 0) return;
    const first = Math.floor(offsetBytes / this.regionBytes);
    const last = Math.min(this.regionCount - 1, Math.floor((offsetBytes + lengthBytes - 1) / this.regionBytes));
    for (let r = first; r <= last; r++) this.set(r);
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
