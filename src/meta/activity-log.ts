/**
 * The activity log: the regions that may have writes in flight (DRBD's "hot extents"). After a
 * crash of a primary, exactly these regions may differ from the peer, so they are the ones a
 * resync must copy even if the dirty bitmap does not name them. Bounded by ACTIVITY_LOG_CAPACITY.
 */
import { ACTIVITY_LOG_CAPACITY } from './layout';

export class ActivityLog {
  /** Insertion order is kept so the on-disk list is stable across rewrites. */
  private readonly regions = new Set<number>();

  constructor(
    /** Regions of the volume; valid region numbers are 0 .. regionCount-1. */
    readonly regionCount: number,
    readonly capacity: number = ACTIVITY_LOG_CAPACITY,
    initial: readonly number[] = [],
  ) {
    for (const region of initial) {
      if (!this.add(region)) throw new RangeError(`activity log holds at most ${capacity} regions`);
    }
  }

  /** Adds a region; false (and no change) when the log is full and the region is not in it yet. */
  add(region: number): boolean {
    this.checkRegion(region);
    if (this.regions.has(region)) return true;
    if (this.regions.size >= this.capacity) return false;
    this.regions.add(region);
    return true;
  }

  /** Removes a region; false if it was not in the log. */
  remove(region: number): boolean {
    this.checkRegion(region);
    return this.regions.delete(region);
  }

  has(region: number): boolean {
    return this.regions.has(region);
  }

  /** The regions in the order they were added. */
  list(): number[] {
    return [...this.regions];
  }

  clear(): void {
    this.regions.clear();
  }

  get size(): number {
    return this.regions.size;
  }

  get isFull(): boolean {
    return this.regions.size >= this.capacity;
  }

  /** Region numbers come from our own offset arithmetic: a bad one is a bug. */
  private checkRegion(region: number): void {
    if (!Number.isInteger(region) || region < 0 || region >= this.regionCount) {
      throw new RangeError(`region ${region} is not between 0 and ${this.regionCount - 1}`);
    }
  }
}
