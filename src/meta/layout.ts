/**
 * Byte layout of one slot of the metadata file (spec: docs/metadata.md) and its codec. A slot is a
 * 512-byte header, the activity log area, the dirty-region bitmap and zero padding to a 4 KiB
 * multiple. All integers are big-endian. Decoding never throws: it says whether a slot is valid and,
 * if not, why.
 */
import { VOLUME_BYTES_MAX } from '../limits';
import type { Generations } from '../mirror/sync-decision';
import { crc32c } from '../wire/crc32c';

/** "BMIRMETA": the first 8 bytes of every slot. */
export const MAGIC = Buffer.from('BMIRMETA', 'ascii');
export const FORMAT_VERSION = 1;
/** Slots are padded to this size so a slot never shares a page with the other one. */
export const SLOT_ALIGN_BYTES = 4096;
export const HEADER_BYTES = 512;
/** Most region numbers the activity log holds (DRBD's activity log is of the same order). */
export const ACTIVITY_LOG_CAPACITY = 1024;
export const ACTIVITY_LOG_ENTRY_BYTES = 4;
export const ACTIVITY_LOG_OFFSET = HEADER_BYTES;
export const ACTIVITY_LOG_AREA_BYTES = ACTIVITY_LOG_CAPACITY * ACTIVITY_LOG_ENTRY_BYTES;
export const BITMAP_OFFSET = ACTIVITY_LOG_OFFSET + ACTIVITY_LOG_AREA_BYTES;
/** Bitmap granularity bounds and default (a power of two in between). */
export const REGION_BYTES_MIN = 4 * 1024;
export const REGION_BYTES_MAX = 64 * 1024 * 1024;
export const REGION_BYTES_DEFAULT = 64 * 1024;
/** Activity log granularity bounds and default (DRBD's activity-log extent is 4 MiB too). */
export const ACTIVITY_LOG_EXTENT_BYTES_MIN = 4 * 1024;
export const ACTIVITY_LOG_EXTENT_BYTES_MAX = 1024 * 1024 * 1024;
export const ACTIVITY_LOG_EXTENT_BYTES_DEFAULT = 4 * 1024 * 1024;
/** Activity-log entries are u32 extent numbers. */
const ACTIVITY_LOG_EXTENT_COUNT_MAX = 2 ** 32;
/** Largest bitmap per slot (64 MiB = 2^29 regions: 32 TiB at the default 64 KiB regions). */
export const BITMAP_BYTES_MAX = 64 * 1024 * 1024;

/** Header field offsets (bytes from the start of the slot). Offsets 0..24 are the same in every format version. */
export const Offset = {
  Magic: 0,
  FormatVersion: 8,
  HeaderBytes: 12,
  HeaderCrc: 16,
  BodyCrc: 20,
  Sequence: 24,
  SlotBytes: 32,
  RegionBytes: 36,
  VolumeSizeBytes: 40,
  NodeId: 48,
  Epoch: 56,
  CurrentGeneration: 64,
  BitmapGeneration: 72,
  HistoryGeneration0: 80,
  HistoryGeneration1: 88,
  StoreInode: 96,
  Role: 104,
  DiskState: 105,
  StoreKind: 106,
  Flags: 107,
  ActivityLogCapacity: 108,
  ActivityLogCount: 112,
  ActivityLogOffset: 116,
  BitmapOffset: 120,
  BitmapBytes: 124,
  ActivityLogExtentBytes: 128,
  /** First reserved byte; bytes up to HEADER_BYTES are written as zero and ignored on read. */
  Reserved: 132,
} as const;

/** Flags byte bits. */
export const FLAG_CLEAN_SHUTDOWN = 0x01;
const FLAGS_KNOWN = FLAG_CLEAN_SHUTDOWN;

export type NodeRole = 'primary' | 'secondary';
export type DiskState = 'upToDate' | 'outdated' | 'inconsistent';
export type StoreKind = 'file' | 'blockDevice';

/** On-disk codes (role codes are the wire's HELLO role values). */
const ROLE_CODES: Record<NodeRole, number> = { primary: 1, secondary: 2 };
const DISK_STATE_CODES: Record<DiskState, number> = { upToDate: 1, outdated: 2, inconsistent: 3 };
const STORE_KIND_CODES: Record<StoreKind, number> = { file: 1, blockDevice: 2 };

export type { Generations };

/** Everything one slot holds. */
export interface MetadataState {
  sequence: bigint;
  volumeSizeBytes: number;
  regionBytes: number;
  /** Bytes of the volume one activity-log entry stands for. */
  activityLogExtentBytes: number;
  nodeId: bigint;
  role: NodeRole;
  diskState: DiskState;
  generations: Generations;
  epoch: bigint;
  cleanShutdown: boolean;
  storeKind: StoreKind;
  /** Inode number of a regular-file store; 0 for a block device. */
  storeInode: bigint;
  /** Extent numbers (extent e covers bytes [e, e+1) × activityLogExtentBytes). */
  activityLog: readonly number[];
  bitmap: Uint8Array;
}

export const U64_MAX = 2n ** 64n - 1n;

/** Whether n is a safe-integer power of two within [min, max]. */
function isPowerOfTwoWithin(n: number, min: number, max: number): boolean {
  return Number.isSafeInteger(n) && n >= min && n <= max && (n & (n - 1)) === 0;
}

/** Number of activity-log extents of a volume (the last one may be short). */
export function activityLogExtentCount(volumeSizeBytes: number, activityLogExtentBytes: number): number {
  return Math.ceil(volumeSizeBytes / activityLogExtentBytes);
}

/** Why a geometry is unusable, or undefined when it is fine (shared by create and decode). */
export function geometryProblem(volumeSizeBytes: number, regionBytes: number, activityLogExtentBytes: number): string | undefined {
  if (!Number.isSafeInteger(volumeSizeBytes) || volumeSizeBytes <= 0 || volumeSizeBytes > VOLUME_BYTES_MAX) {
    return `volume size ${volumeSizeBytes} is not between 1 and ${VOLUME_BYTES_MAX} bytes`;
  }
  if (!isPowerOfTwoWithin(regionBytes, REGION_BYTES_MIN, REGION_BYTES_MAX)) {
    return `region size ${regionBytes} is not a power of two from ${REGION_BYTES_MIN} to ${REGION_BYTES_MAX} bytes`;
  }
  if (bitmapBytesFor(volumeSizeBytes, regionBytes) > BITMAP_BYTES_MAX) {
    return `a ${volumeSizeBytes}-byte volume at ${regionBytes}-byte regions needs a bitmap larger than ${BITMAP_BYTES_MAX} bytes; choose larger regions`;
  }
  if (!isPowerOfTwoWithin(activityLogExtentBytes, ACTIVITY_LOG_EXTENT_BYTES_MIN, ACTIVITY_LOG_EXTENT_BYTES_MAX)) {
    return `activity log extent size ${activityLogExtentBytes} is not a power of two from ${ACTIVITY_LOG_EXTENT_BYTES_MIN} to ${ACTIVITY_LOG_EXTENT_BYTES_MAX} bytes`;
  }
  if (activityLogExtentCount(volumeSizeBytes, activityLogExtentBytes) > ACTIVITY_LOG_EXTENT_COUNT_MAX) {
    return `a ${volumeSizeBytes}-byte volume has more than 2^32 activity log extents of ${activityLogExtentBytes} bytes; choose larger extents`;
  }
  return undefined;
}

/** Bitmap bytes for a volume: one bit per region, rounded up to whole bytes. */
export function bitmapBytesFor(volumeSizeBytes: number, regionBytes: number): number {
  return Math.ceil(Math.ceil(volumeSizeBytes / regionBytes) / 8);
}

/** Slot size: header + activity log + bitmap, padded to SLOT_ALIGN_BYTES. */
export function slotBytesFor(volumeSizeBytes: number, regionBytes: number): number {
  const used = BITMAP_OFFSET + bitmapBytesFor(volumeSizeBytes, regionBytes);
  return Math.ceil(used / SLOT_ALIGN_BYTES) * SLOT_ALIGN_BYTES;
}

/** CRC32C of a header with its own CRC field skipped: [0, HeaderCrc) then [HeaderCrc+4, headerBytes). */
function headerCrc(buf: Uint8Array, slotOffset: number, headerBytes: number): number {
  const first = crc32c(buf.subarray(slotOffset, slotOffset + Offset.HeaderCrc));
  return crc32c(buf.subarray(slotOffset + Offset.HeaderCrc + 4, slotOffset + headerBytes), first);
}

/** Writes one slot for `state` into target[offset, offset + slotBytes) (the whole range, padding included). */
export function encodeSlot(state: MetadataState, target: Buffer, offset: number): void {
  const slotBytes = slotBytesFor(state.volumeSizeBytes, state.regionBytes);
  const bitmapBytes = bitmapBytesFor(state.volumeSizeBytes, state.regionBytes);
  if (state.bitmap.length !== bitmapBytes) throw new RangeError(`bitmap has ${state.bitmap.length} bytes, expected ${bitmapBytes}`);
  if (state.activityLog.length > ACTIVITY_LOG_CAPACITY) throw new RangeError(`activity log has ${state.activityLog.length} entries`);
  const slot = target.subarray(offset, offset + slotBytes);
  if (slot.length !== slotBytes) throw new RangeError(`target has no room for a ${slotBytes}-byte slot at ${offset}`);
  slot.fill(0);
  MAGIC.copy(slot, Offset.Magic);
  slot.writeUInt32BE(FORMAT_VERSION, Offset.FormatVersion);
  slot.writeUInt32BE(HEADER_BYTES, Offset.HeaderBytes);
  slot.writeBigUInt64BE(state.sequence, Offset.Sequence);
  slot.writeUInt32BE(slotBytes, Offset.SlotBytes);
  slot.writeUInt32BE(state.regionBytes, Offset.RegionBytes);
  slot.writeBigUInt64BE(BigInt(state.volumeSizeBytes), Offset.VolumeSizeBytes);
  slot.writeBigUInt64BE(state.nodeId, Offset.NodeId);
  slot.writeBigUInt64BE(state.epoch, Offset.Epoch);
  slot.writeBigUInt64BE(state.generations.current, Offset.CurrentGeneration);
  slot.writeBigUInt64BE(state.generations.bitmap, Offset.BitmapGeneration);
  slot.writeBigUInt64BE(state.generations.history0, Offset.HistoryGeneration0);
  slot.writeBigUInt64BE(state.generations.history1, Offset.HistoryGeneration1);
  slot.writeBigUInt64BE(state.storeInode, Offset.StoreInode);
  slot[Offset.Role] = ROLE_CODES[state.role];
  slot[Offset.DiskState] = DISK_STATE_CODES[state.diskState];
  slot[Offset.StoreKind] = STORE_KIND_CODES[state.storeKind];
  slot[Offset.Flags] = state.cleanShutdown ? FLAG_CLEAN_SHUTDOWN : 0;
  slot.writeUInt32BE(ACTIVITY_LOG_CAPACITY, Offset.ActivityLogCapacity);
  slot.writeUInt32BE(state.activityLog.length, Offset.ActivityLogCount);
  slot.writeUInt32BE(ACTIVITY_LOG_OFFSET, Offset.ActivityLogOffset);
  slot.writeUInt32BE(BITMAP_OFFSET, Offset.BitmapOffset);
  slot.writeUInt32BE(bitmapBytes, Offset.BitmapBytes);
  slot.writeUInt32BE(state.activityLogExtentBytes, Offset.ActivityLogExtentBytes);
  state.activityLog.forEach((extent, i) => slot.writeUInt32BE(extent, ACTIVITY_LOG_OFFSET + i * ACTIVITY_LOG_ENTRY_BYTES));
  slot.set(state.bitmap, BITMAP_OFFSET);
  slot.writeUInt32BE(crc32c(slot.subarray(HEADER_BYTES)), Offset.BodyCrc);
  slot.writeUInt32BE(headerCrc(slot, 0, HEADER_BYTES), Offset.HeaderCrc);
}

/** What the version-independent first 24 bytes of a slot say. */
export type HeaderCheck =
  | { kind: 'ok'; slotBytes: number }
  /** Magic and header checksum are valid, but the version is not ours (another program wrote it). */
  | { kind: 'unknownVersion'; version: number }
  | { kind: 'invalid'; magicOk: boolean; reason: string };

/** Checks magic, header checksum and version of the slot at `slotOffset`, and reads its size. */
export function checkHeader(buf: Uint8Array, slotOffset: number): HeaderCheck {
  if (slotOffset + Offset.Sequence > buf.length) return { kind: 'invalid', magicOk: false, reason: 'header lies past the end of the file' };
  const view = Buffer.from(buf.buffer, buf.byteOffset + slotOffset, buf.length - slotOffset);
  const magicOk = view.subarray(0, MAGIC.length).equals(MAGIC);
  if (!magicOk) return { kind: 'invalid', magicOk, reason: 'magic is not BMIRMETA' };
  const headerBytes = view.readUInt32BE(Offset.HeaderBytes);
  // Any version's header covers the fixed 24-byte prefix and lies inside the file.
  if (headerBytes < Offset.Sequence || headerBytes > view.length) return { kind: 'invalid', magicOk, reason: `header length ${headerBytes} is impossible here` };
  if (headerCrc(buf, slotOffset, headerBytes) !== view.readUInt32BE(Offset.HeaderCrc)) return { kind: 'invalid', magicOk, reason: 'header checksum mismatch' };
  const version = view.readUInt32BE(Offset.FormatVersion);
  if (version !== FORMAT_VERSION) return { kind: 'unknownVersion', version };
  if (headerBytes !== HEADER_BYTES) return { kind: 'invalid', magicOk, reason: `header length ${headerBytes} is not ${HEADER_BYTES}` };
  return { kind: 'ok', slotBytes: view.readUInt32BE(Offset.SlotBytes) };
}

export type SlotDecode = { kind: 'valid'; state: MetadataState } | { kind: 'invalid'; reason: string };

/** Reverse lookup of an on-disk code, or undefined for an unknown code. */
function nameOf<T extends string>(codes: Record<T, number>, code: number): T | undefined {
  return (Object.keys(codes) as T[]).find((name) => codes[name] === code);
}

/**
 * Decodes and fully validates the slot at buf[slotOffset, slotOffset + slotBytes). A valid checksum
 * over impossible values (unknown enum, bad geometry, duplicate activity-log entry) is still invalid.
 */
export function decodeSlot(buf: Uint8Array, slotOffset: number, slotBytes: number): SlotDecode {
  const fail = (reason: string): SlotDecode => ({ kind: 'invalid', reason });
  const header = checkHeader(buf, slotOffset);
  if (header.kind === 'invalid') return fail(header.reason);
  if (header.kind === 'unknownVersion') return fail(`format version ${header.version} is unknown`);
  if (header.slotBytes !== slotBytes) return fail(`slot size ${header.slotBytes} differs from the file's layout (${slotBytes})`);
  if (slotOffset + slotBytes > buf.length) return fail('slot lies past the end of the file');
  const slot = Buffer.from(buf.buffer, buf.byteOffset + slotOffset, slotBytes);
  if (crc32c(slot.subarray(HEADER_BYTES)) !== slot.readUInt32BE(Offset.BodyCrc)) return fail('body checksum mismatch');

  const volumeSize = slot.readBigUInt64BE(Offset.VolumeSizeBytes);
  if (volumeSize > BigInt(VOLUME_BYTES_MAX)) return fail(`volume size ${volumeSize} is too large`);
  const volumeSizeBytes = Number(volumeSize);
  const regionBytes = slot.readUInt32BE(Offset.RegionBytes);
  const activityLogExtentBytes = slot.readUInt32BE(Offset.ActivityLogExtentBytes);
  const geometry = geometryProblem(volumeSizeBytes, regionBytes, activityLogExtentBytes);
  if (geometry !== undefined) return fail(geometry);
  if (slotBytesFor(volumeSizeBytes, regionBytes) !== slotBytes) return fail('slot size does not match volume and region size');
  const bitmapBytes = bitmapBytesFor(volumeSizeBytes, regionBytes);
  if (slot.readUInt32BE(Offset.BitmapBytes) !== bitmapBytes) return fail('bitmap length does not match volume and region size');
  if (slot.readUInt32BE(Offset.BitmapOffset) !== BITMAP_OFFSET) return fail('bitmap offset is wrong');
  if (slot.readUInt32BE(Offset.ActivityLogOffset) !== ACTIVITY_LOG_OFFSET) return fail('activity log offset is wrong');
  if (slot.readUInt32BE(Offset.ActivityLogCapacity) !== ACTIVITY_LOG_CAPACITY) return fail('activity log capacity is wrong');

  const role = nameOf(ROLE_CODES, slot[Offset.Role]!);
  if (role === undefined) return fail(`role code ${slot[Offset.Role]} is unknown`);
  const diskState = nameOf(DISK_STATE_CODES, slot[Offset.DiskState]!);
  if (diskState === undefined) return fail(`disk state code ${slot[Offset.DiskState]} is unknown`);
  const storeKind = nameOf(STORE_KIND_CODES, slot[Offset.StoreKind]!);
  if (storeKind === undefined) return fail(`store kind code ${slot[Offset.StoreKind]} is unknown`);
  const flags = slot[Offset.Flags]!;
  if ((flags & ~FLAGS_KNOWN) !== 0) return fail(`flags 0x${flags.toString(16)} has unknown bits`);
  const nodeId = slot.readBigUInt64BE(Offset.NodeId);
  if (nodeId === 0n) return fail('node id is 0');

  const regionCount = Math.ceil(volumeSizeBytes / regionBytes);
  const extentCount = activityLogExtentCount(volumeSizeBytes, activityLogExtentBytes);
  const activityLogCount = slot.readUInt32BE(Offset.ActivityLogCount);
  if (activityLogCount > ACTIVITY_LOG_CAPACITY) return fail(`activity log count ${activityLogCount} exceeds ${ACTIVITY_LOG_CAPACITY}`);
  const activityLog: number[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < activityLogCount; i++) {
    const extent = slot.readUInt32BE(ACTIVITY_LOG_OFFSET + i * ACTIVITY_LOG_ENTRY_BYTES);
    if (extent >= extentCount) return fail(`activity log extent ${extent} is past the last extent ${extentCount - 1}`);
    if (seen.has(extent)) return fail(`activity log lists extent ${extent} twice`);
    seen.add(extent);
    activityLog.push(extent);
  }
  const bitmap = new Uint8Array(slot.subarray(BITMAP_OFFSET, BITMAP_OFFSET + bitmapBytes));
  const tailBits = regionCount & 7;
  if (tailBits !== 0 && bitmap[bitmapBytes - 1]! >>> tailBits !== 0) return fail('bitmap has bits set past the last region');

  return {
    kind: 'valid',
    state: {
      sequence: slot.readBigUInt64BE(Offset.Sequence),
      volumeSizeBytes,
      regionBytes,
      activityLogExtentBytes,
      nodeId,
      role,
      diskState,
      generations: {
        current: slot.readBigUInt64BE(Offset.CurrentGeneration),
        bitmap: slot.readBigUInt64BE(Offset.BitmapGeneration),
        history0: slot.readBigUInt64BE(Offset.HistoryGeneration0),
        history1: slot.readBigUInt64BE(Offset.HistoryGeneration1),
      },
      epoch: slot.readBigUInt64BE(Offset.Epoch),
      cleanShutdown: (flags & FLAG_CLEAN_SHUTDOWN) !== 0,
      storeKind,
      storeInode: slot.readBigUInt64BE(Offset.StoreInode),
      activityLog,
      bitmap,
    },
  };
}
