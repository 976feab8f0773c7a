/**
 * The node's metadata file seen through the interface the mirror needs (MirrorMetadata), plus the
 * crash-recovery and clean-shutdown steps of the activity log.
 */
import { MetadataFile } from '../meta';
import type { ActivityLogStore, MirrorMetadata, DiskState } from '../mirror/mirror-metadata';
import type { Generations } from '../mirror/sync-decision';
import { AL_EXTENT_BYTES } from '../mirror/activity-log';
import type { DirtyRegions } from '../mirror/dirty-regions';

export class NodeMetadata implements MirrorMetadata {
  readonly activityLog: ActivityLogStore;

  constructor(readonly file: MetadataFile) {
    if (file.activityLogExtentBytes !== AL_EXTENT_BYTES) {
      throw new Error(`${file.path}: activity-log extents of ${file.activityLogExtentBytes} bytes; this version uses ${AL_EXTENT_BYTES}`);
    }
    const al = file.activityLog;
    this.activityLog = {
      capacity: al.capacity,
      has: (extent) => al.has(extent),
      add: (extent) => void al.add(extent),
      remove: (extent) => void al.remove(extent),
      list: () => al.list(),
    };
  }

  get nodeId(): bigint {
    return this.file.nodeId;
  }
  get generations(): Generations {
    return this.file.generations;
  }
  set generations(value: Generations) {
    this.file.generations = value;
  }
  get epoch(): bigint {
    return this.file.epoch;
  }
  set epoch(value: bigint) {
    this.file.epoch = value;
  }
  get diskState(): DiskState {
    return this.file.diskState;
  }
  set diskState(value: DiskState) {
    this.file.diskState = value;
  }
  get dirty(): DirtyRegions {
    return this.file.dirty;
  }

  persist(): Promise<void> {
    return this.file.persist();
  }

  /** After an unclean stop: every extent that may have had writes in flight is out of sync. Returns how many. */
  recoverActivityLog(): number {
    const extents = this.activityLog.list();
    for (const extent of extents) {
      const offset = extent * AL_EXTENT_BYTES;
      if (offset < this.file.volumeSizeBytes) this.dirty.mark(offset, Math.min(AL_EXTENT_BYTES, this.file.volumeSizeBytes - offset));
      this.activityLog.remove(extent);
    }
    return extents.length;
  }

  /** Empty the activity log (clean shutdown: nothing is in flight). */
  clearActivityLog(): void {
    for (const extent of this.activityLog.list()) this.activityLog.remove(extent);
  }
}
