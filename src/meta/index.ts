/** The node's crash-safe metadata file (spec: docs/metadata.md). */
export { ActivityLog } from './activity-log';
export { MetadataError, type MetadataErrorCode } from './errors';
export { decodeImage, encodeFreshImage, SLOT_NAMES, type ChosenSlot, type SlotName } from './image';
export {
  ACTIVITY_LOG_CAPACITY,
  ACTIVITY_LOG_EXTENT_BYTES_DEFAULT,
  ACTIVITY_LOG_EXTENT_BYTES_MAX,
  ACTIVITY_LOG_EXTENT_BYTES_MIN,
  BITMAP_BYTES_MAX,
  FORMAT_VERSION,
  HEADER_BYTES,
  MAGIC,
  REGION_BYTES_DEFAULT,
  REGION_BYTES_MAX,
  REGION_BYTES_MIN,
  SLOT_ALIGN_BYTES,
  activityLogExtentCount,
  decodeSlot,
  encodeSlot,
  slotBytesFor,
  type DiskState,
  type Generations,
  type MetadataState,
  type NodeRole,
  type StoreKind,
} from './layout';
export { METADATA_SUFFIX, MetadataFile, type CreateMetadataOptions, type OpenMetadataOptions } from './metadata-file';
