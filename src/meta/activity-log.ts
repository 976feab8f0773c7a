/**
 * The persistent activity log: the extents of the volume that may have writes in flight (DRBD's
 * "hot extents"). After a crash of a primary, exactly these extents may differ from the peer, so a
 * resync must copy them even if the dirty bitmap does not name them. Extent e covers bytes
 * [e × extentBytes, (e+1) × extentBytes) of the volume. Bounded by ACTIVITY_LOG_CAPACITY: the
 * caller evicts a cold extent (and persists) before adding one to a full log.
 */
import { ACTIVITY_LOG_CAPACITY } from './layout';

export class ActivityLog {
  /** Insertion order is kept so the on-disk list is stable across rewrites. */
  private readonly extents = new Set<number>();

  constructor(
    /** Extents of the volume; valid extent numbers are 0 .. extentCount-1. */
    readonly extentCount: number,
    readonly capacity: number = ACTIVITY_LOG_CAPACITY,
    initial: readonly number[] = [],
  ) {
    for (const extent of initial) this.add(extent);
  }

  /** Adds an extent (no change if present). Throws RangeError when full: silently dropping it would lose a hot extent. */
  add(extent: number): void {
    this.checkExtent(extent);
    if (this.extents.has(extent)) return;
    if (this.extents.size >= this.capacity) {
      throw new RangeError(`activity log is full (${this.capacity} extents): remove a cold extent before adding ${extent}`);
    }
    this.extents.add(extent);
  }

  /** Removes an extent; false if it was not in the log. */
  remove(extent: number): boolean {
    this.checkExtent(extent);
    return this.extents.delete(extent);
  }

  has(extent: number): boolean {
    return this.extents.has(extent);
  }

  /** The extents in the order they were added. */
  list(): number[] {
    return [...this.extents];
  }

  clear(): void {
    this.extents.clear();
  }

  get size(): number {
    return this.extents.size;
  }

  get isFull(): boolean {
    return this.extents.size >= this.capacity;
  }

  /** Extent numbers come from our own offset arithmetic: a bad one is a bug. */
  private checkExtent(extent: number): void {
    if (!Number.isInteger(extent) || extent < 0 || extent >= this.extentCount) {
      throw new RangeError(`activity log extent ${extent} is not between 0 and ${this.extentCount - 1}`);
    }
  }
}
