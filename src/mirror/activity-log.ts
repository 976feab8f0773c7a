/**
 * The primary's activity log, as DRBD keeps one: before a write touches an extent that is not
 * "hot", the extent is added to the persistent log (one metadata write covers every extent added
 * meanwhile); after a crash every logged extent is resynced, because writes to it may have reached
 * one node and not the other. Cold extents with no write in flight are evicted, least recently
 * used first, when the log is full.
 */
import type { ActivityLogStore } from './mirror-metadata';

/** Bytes one activity-log extent covers (DRBD uses 4 MiB as well). */
export const AL_EXTENT_BYTES = 4 * 1024 * 1024;

export class ActivityLog {
  private readonly inFlight = new Map<number, number>();
  /** Extents in least-recently-used order (Map keeps insertion order; re-insert on use). */
  private readonly lru = new Map<number, true>();
  updates = 0;

  constructor(private readonly store: ActivityLogStore) {
    for (const e of store.list()) this.lru.set(e, true);
  }

  /**
   * Account a write to [offset, offset+length). Returns true if the persistent log changed (the
   * caller must persist before the write proceeds).
   */
  begin(offsetBytes: number, lengthBytes: number): boolean {
    let changed = false;
    const first = Math.floor(offsetBytes / AL_EXTENT_BYTES);
    const last = Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / AL_EXTENT_BYTES);
    for (let e = first; e <= last; e++) {
      this.inFlight.set(e, (this.inFlight.get(e) ?? 0) + 1);
      if (this.lru.has(e)) {
        this.lru.delete(e);
        this.lru.set(e, true);
        continue;
      }
      this.evictIfFull();
      this.lru.set(e, true);
      this.store.add(e);
      changed = true;
    }
    if (changed) this.updates += 1;
    return changed;
  }

  /** The write finished on both nodes (or was recorded as out of sync). */
  end(offsetBytes: number, lengthBytes: number): void {
    const first = Math.floor(offsetBytes / AL_EXTENT_BYTES);
    const last = Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / AL_EXTENT_BYTES);
    for (let e = first; e <= last; e++) {
      const n = (this.inFlight.get(e) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(e);
      else this.inFlight.set(e, n);
    }
  }

  get size(): number {
    return this.lru.size;
  }

  private evictIfFull(): void {
    if (this.lru.size < this.store.capacity) return;
    for (const e of this.lru.keys()) {
      if (this.inFlight.has(e)) continue;
      this.lru.delete(e);
      this.store.remove(e);
      return;
    }
    // Every logged extent has a write in flight: the log grows past its soft capacity for now.
  }
}
