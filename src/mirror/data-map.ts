/**
 * Where the store may hold data, for one pass of the resync engine over the dirty regions: answers
 * "first offset at or after X that may hold data" (what lseek SEEK_DATA answers) from extent maps
 * read a window at a time (one FIEMAP each), instead of one SEEK_DATA per dirty region. On a file
 * just written, whose pages are still dirty, SEEK_DATA cost about 7 µs a call here, half of the
 * engine's own time in a resync of scattered regions (docs/bench.md).
 *
 * The answers are hints and may be stale: an application write can fill a hole after the map was
 * read. The engine decides nothing irreversible from them: a hole run is checked again with
 * SEEK_DATA once its write gate is held, and a "data" region that reads as zeroes is sent as zeroes.
 * The store maps a window with one FIEMAP, with SEEK_DATA / SEEK_HOLE where the filesystem has no
 * FIEMAP (tmpfs), and a block device as data throughout. A store that cannot map its extents at all
 * is asked with SEEK_DATA every time.
 */
import type { LocalStore } from '../store/local-store';

/** Bytes of the volume one FIEMAP covers at most. */
export const DATA_MAP_WINDOW_BYTES = 64 * 1024 * 1024;
/** Extents one FIEMAP returns at most; a window with more is covered up to the last one returned. */
export const DATA_MAP_EXTENTS_MAX = 1024;

export class DataMap {
  private readonly extents = new Float64Array(2 * DATA_MAP_EXTENTS_MAX);
  private count = 0;
  /** The map holds every extent of [from, to). */
  private from = 0;
  private to = 0;
  /** Index of the first extent that may end after the last query (queries mostly move forward). */
  private cursor = 0;
  private unsupported = false;
  /** FIEMAP calls made (tests). */
  fills = 0;

  constructor(private readonly store: LocalStore) {}

  /** The first offset in [offsetBytes, endBytes) that may hold data, or endBytes if none. */
  nextData(offsetBytes: number, endBytes: number): number {
    if (this.unsupported) return this.store.nextDataOffset(offsetBytes, endBytes);
    let at = offsetBytes;
    while (at < endBytes) {
      if (at >= this.store.sizeBytes) return endBytes; // past the end of the store: nothing but zeroes
      if (at < this.from || at >= this.to) {
        if (!this.fill(at)) return this.store.nextDataOffset(at, endBytes);
      }
      if (at < this.extentEnd(this.cursor - 1)) this.cursor = 0; // moved backwards
      while (this.cursor < this.count && this.extentEnd(this.cursor) <= at) this.cursor++;
      if (this.cursor < this.count) {
        const start = this.extents[2 * this.cursor]!;
        return Math.min(Math.max(start, at), endBytes);
      }
      at = this.to; // nothing more in this window: a hole up to its end
    }
    return endBytes;
  }

  /**
   * Make the map cover `offsetBytes` (one FIEMAP when it does not yet) and describe it for a native
   * scan: the extents array holds `count` [start, end) pairs, all the data of [from, to). A store
   * that cannot map its extents is described as data everywhere (the hint errs towards reading).
   */
  windowAt(offsetBytes: number): { extents: Float64Array; count: number; from: number; to: number } {
    if (!this.unsupported && (offsetBytes < this.from || offsetBytes >= this.to) && offsetBytes < this.store.sizeBytes) this.fill(offsetBytes);
    if (this.unsupported) {
      this.extents[0] = 0;
      this.extents[1] = this.store.sizeBytes;
      return { extents: this.extents, count: 1, from: 0, to: this.store.sizeBytes };
    }
    return { extents: this.extents, count: this.count, from: this.from, to: this.to };
  }

  private extentEnd(i: number): number {
    return i >= 0 && i < this.count ? this.extents[2 * i + 1]! : -1;
  }

  /** Map the window that starts at `offsetBytes`; false when the store cannot tell. */
  private fill(offsetBytes: number): boolean {
    const end = Math.min(offsetBytes + DATA_MAP_WINDOW_BYTES, this.store.sizeBytes);
    const count = this.store.dataExtents(offsetBytes, end, this.extents);
    this.fills += 1;
    if (count < 0) {
      this.unsupported = true;
      return false;
    }
    this.count = count;
    this.cursor = 0;
    this.from = offsetBytes;
    // A full answer may have left extents out: the map is complete only up to the last one.
    this.to = count === DATA_MAP_EXTENTS_MAX ? this.extents[2 * count - 1]! : end;
    if (this.to <= offsetBytes) this.to = end; // cannot happen (extents end after their start); never loop
    return true;
  }
}
