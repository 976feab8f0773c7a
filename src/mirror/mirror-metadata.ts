/**
 * What the mirror needs from a node's persistent metadata (the metadata file implements it): the
 * generation identifiers, the epoch, the disk state, the out-of-sync bitmap and the activity log,
 * and a group-committed durable write of all of them.
 */
import type { DirtyRegions } from './dirty-regions';
import type { Generations } from './sync-decision';

export type DiskState = 'upToDate' | 'outdated' | 'inconsistent';

export interface MirrorMetadata {
  readonly nodeId: bigint;
  generations: Generations;
  epoch: bigint;
  diskState: DiskState;
  /** Regions where this node's data may differ from its peer's. */
  readonly dirty: DirtyRegions;
  /** Activity log: extents that may have writes in flight; marked dirty after a crash. */
  readonly activityLog: ActivityLogStore;
  /** Durable write of everything above; concurrent callers share one write. */
  persist(): Promise<void>;
}

export interface ActivityLogStore {
  readonly capacity: number;
  has(extent: number): boolean;
  add(extent: number): void;
  remove(extent: number): void;
  list(): number[];
}
