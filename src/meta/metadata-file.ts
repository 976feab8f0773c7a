/**
 * A node's crash-safe metadata file, STORE.meta beside the backing store (layout and recovery:
 * docs/metadata.md). Two slots; every update rewrites the slot that does not hold the latest valid
 * copy and fdatasyncs it, so a torn write leaves the previous copy in the other slot. Anything
 * unexpected about the file makes open() throw a MetadataError: it never recreates or resets a file
 * behind the user's back, because that would mean a silent full sync or silent data loss.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { DirtyRegions } from '../mirror/dirty-regions';
import { randomId64 } from '../mirror/hello';
import { GENERATION_EMPTY, GENERATION_NONE } from '../mirror/sync-decision';
import { assert } from '../util/assert';
import { ActivityLog } from './activity-log';
import { MetadataError } from './errors';
import { SLOT_COUNT, SLOT_NAMES, decodeImage, encodeFreshImage, type ChosenSlot, type SlotName } from './image';
import {
  ACTIVITY_LOG_EXTENT_BYTES_DEFAULT,
  BITMAP_BYTES_MAX,
  BITMAP_OFFSET,
  HEADER_BYTES,
  MAGIC,
  REGION_BYTES_DEFAULT,
  SLOT_ALIGN_BYTES,
  U64_MAX,
  activityLogExtentCount,
  bitmapBytesFor,
  encodeSlot,
  geometryProblem,
  slotBytesFor,
  type DiskState,
  type Generations,
  type MetadataState,
  type NodeRole,
  type StoreKind,
} from './layout';

/** Suffix appended to the store path to name its metadata file. */
export const METADATA_SUFFIX = '.meta';
/** Suffix of the temporary file a new metadata file is written to before it is renamed into place. */
const CREATE_TEMP_SUFFIX = '.tmp';
/** No valid metadata file is larger than two slots holding the largest bitmap. */
const METADATA_FILE_BYTES_MAX = SLOT_COUNT * Math.ceil((BITMAP_OFFSET + BITMAP_BYTES_MAX) / SLOT_ALIGN_BYTES) * SLOT_ALIGN_BYTES;
const FILE_MODE = 0o600;
const NODE_ROLES: readonly NodeRole[] = ['primary', 'secondary'];
const DISK_STATES: readonly DiskState[] = ['upToDate', 'outdated', 'inconsistent'];

export interface OpenMetadataOptions {
  /** Size of the store this node serves; must equal the size recorded in the file. */
  volumeSizeBytes: number;
  /** The caller created the store just now (it holds only zeroes): a missing file is created fresh. */
  storeCreated: boolean;
  /** Bitmap granularity for a new file (default 64 KiB); if given for an existing file it must match. */
  regionBytes?: number;
  /** Activity-log extent size for a new file (default 4 MiB); if given for an existing file it must match. */
  activityLogExtentBytes?: number;
  /** Disk state of a freshly created file (default 'inconsistent'). */
  initialDiskState?: DiskState;
  /** Role of a freshly created file (default 'secondary'). */
  initialRole?: NodeRole;
}

export interface CreateMetadataOptions {
  volumeSizeBytes: number;
  /** Bitmap granularity (default 64 KiB). */
  regionBytes?: number;
  /** Activity-log extent size (default 4 MiB). */
  activityLogExtentBytes?: number;
  diskState: DiskState;
  /** Default 'secondary'. */
  role?: NodeRole;
}

/** What a store is, as recorded in its metadata file to notice a store that was swapped underneath. */
interface StoreIdentity {
  kind: StoreKind;
  /** Inode of a regular file; 0 for block devices (their device numbers are not stable across boots). */
  inode: bigint;
  /** A regular file without a single allocated block holds no data. */
  holdsNoData: boolean;
}

/** One caller of persist() waiting for the next write. */
interface PersistWaiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

export class MetadataFile {
  /** The metadata file's path. */
  readonly path: string;
  readonly storePath: string;
  readonly volumeSizeBytes: number;
  readonly regionBytes: number;
  /** Bytes of the volume one activity-log entry stands for. */
  readonly activityLogExtentBytes: number;
  /** Regions the peer misses; persisted with every write. */
  readonly dirty: DirtyRegions;
  /** Extents that may have writes in flight; persisted with every write. */
  readonly activityLog: ActivityLog;
  /** This open() or create() wrote a new file (rather than loading an existing one). */
  readonly created: boolean;

  private fd: number;
  private stateNodeId: bigint;
  private stateRole: NodeRole;
  private stateDiskState: DiskState;
  private stateGenerations: Generations;
  private stateEpoch: bigint;
  private stateCleanShutdown: boolean;
  private readonly storeKind: StoreKind;
  private readonly storeInode: bigint;
  private readonly slotBytes: number;
  /** Reused for every slot write (writes are serialized, so one buffer suffices). */
  private readonly slotBuffer: Buffer;
  private latestSlotIndex: number;
  private latestSequence: bigint;
  private slotWrites = 0;
  private writing = false;
  private waiters: PersistWaiter[] = [];
  /** Set by the first failed write; every later persist fails with it (see META_WRITE_FAILED). */
  private failure: MetadataError | undefined;
  private closed = false;

  /** Path of the metadata file that belongs to a store. */
  static pathFor(storePath: string): string {
    return storePath + METADATA_SUFFIX;
  }

  /**
   * Load the metadata of an existing store, or create it for a store the caller just created (or
   * a regular file that has no allocated block yet). Throws MetadataError for anything else.
   */
  static open(storePath: string, options: OpenMetadataOptions): MetadataFile {
    const path = MetadataFile.pathFor(storePath);
    const store = identifyStore(storePath, path);
    const regionBytes = options.regionBytes ?? REGION_BYTES_DEFAULT;
    const bytes = readMetadataBytes(path);
    if (bytes === undefined) {
      if (!options.storeCreated && !store.holdsNoData) {
        throw new MetadataError(
          'META_MISSING',
          path,
          `the file does not exist but store ${storePath} already exists and may hold data; restore the metadata file from a backup, ` +
            `or create new metadata explicitly (which forces a full sync from the peer)`,
        );
      }
      const state = freshState(path, {
        volumeSizeBytes: options.volumeSizeBytes,
        regionBytes,
        activityLogExtentBytes: options.activityLogExtentBytes ?? ACTIVITY_LOG_EXTENT_BYTES_DEFAULT,
        role: options.initialRole ?? 'secondary',
        diskState: options.initialDiskState ?? 'inconsistent',
        store,
        // The store holds only zeroes: its content is known.
        currentGeneration: GENERATION_EMPTY,
      });
      return MetadataFile.fromFreshFile(path, storePath, state);
    }
    if (options.storeCreated) {
      throw new MetadataError(
        'META_STORE_MISMATCH',
        path,
        `store ${storePath} was just created (empty), but this metadata file exists and describes an earlier store; ` +
          `move the metadata file away if the store was recreated on purpose`,
      );
    }
    const chosen = decodeImage(bytes, path);
    checkMatchesStore(chosen.state, path, storePath, store, options);
    return new MetadataFile(path, storePath, openForUpdate(path), chosen, false);
  }

  /**
   * Write new metadata for a store, replacing any existing file (atomically, by rename): the
   * explicit "--force-new-metadata". The new file has a new node id and current generation
   * GENERATION_NONE (0, "content unknown"): the peer never takes this node's data as a source,
   * and a full sync into it follows.
   */
  static create(storePath: string, options: CreateMetadataOptions): MetadataFile {
    const path = MetadataFile.pathFor(storePath);
    const store = identifyStore(storePath, path);
    const state = freshState(path, {
      volumeSizeBytes: options.volumeSizeBytes,
      regionBytes: options.regionBytes ?? REGION_BYTES_DEFAULT,
      activityLogExtentBytes: options.activityLogExtentBytes ?? ACTIVITY_LOG_EXTENT_BYTES_DEFAULT,
      role: options.role ?? 'secondary',
      diskState: options.diskState,
      store,
      // Whatever the store holds is unknown: it must be replaced entirely by a full sync.
      currentGeneration: GENERATION_NONE,
    });
    return MetadataFile.fromFreshFile(path, storePath, state);
  }

  /** Write a fresh file for `state` and open it; slot B (sequence + 1) is the latest copy. */
  private static fromFreshFile(path: string, storePath: string, state: MetadataState): MetadataFile {
    writeFreshFile(path, state);
    const slotBytes = slotBytesFor(state.volumeSizeBytes, state.regionBytes);
    return new MetadataFile(path, storePath, openForUpdate(path), { state: { ...state, sequence: state.sequence + 1n }, slotIndex: 1, slotBytes }, true);
  }

  private constructor(path: string, storePath: string, fd: number, chosen: ChosenSlot, created: boolean) {
    const state = chosen.state;
    this.path = path;
    this.storePath = storePath;
    this.fd = fd;
    this.created = created;
    this.volumeSizeBytes = state.volumeSizeBytes;
    this.regionBytes = state.regionBytes;
    this.activityLogExtentBytes = state.activityLogExtentBytes;
    this.dirty = DirtyRegions.fromBytes(state.volumeSizeBytes, state.regionBytes, state.bitmap);
    this.activityLog = new ActivityLog(activityLogExtentCount(state.volumeSizeBytes, state.activityLogExtentBytes), undefined, state.activityLog);
    this.stateNodeId = state.nodeId;
    this.stateRole = state.role;
    this.stateDiskState = state.diskState;
    this.stateGenerations = { ...state.generations };
    this.stateEpoch = state.epoch;
    this.stateCleanShutdown = state.cleanShutdown;
    this.storeKind = state.storeKind;
    this.storeInode = state.storeInode;
    this.slotBytes = chosen.slotBytes;
    this.slotBuffer = Buffer.alloc(chosen.slotBytes);
    this.latestSlotIndex = chosen.slotIndex;
    this.latestSequence = state.sequence;
  }

  get nodeId(): bigint {
    return this.stateNodeId;
  }
  set nodeId(value: bigint) {
    checkU64('nodeId', value);
    assert(value !== 0n, 'nodeId 0 is reserved');
    this.stateNodeId = value;
  }

  get role(): NodeRole {
    return this.stateRole;
  }
  set role(value: NodeRole) {
    assert(NODE_ROLES.includes(value), `unknown role ${String(value)}`);
    this.stateRole = value;
  }

  get diskState(): DiskState {
    return this.stateDiskState;
  }
  set diskState(value: DiskState) {
    assert(DISK_STATES.includes(value), `unknown disk state ${String(value)}`);
    this.stateDiskState = value;
  }

  /** A copy: change generations by assigning a whole new object. */
  get generations(): Generations {
    return { ...this.stateGenerations };
  }
  set generations(value: Generations) {
    checkU64('generations.current', value.current);
    checkU64('generations.bitmap', value.bitmap);
    checkU64('generations.history0', value.history0);
    checkU64('generations.history1', value.history1);
    this.stateGenerations = { current: value.current, bitmap: value.bitmap, history0: value.history0, history1: value.history1 };
  }

  get epoch(): bigint {
    return this.stateEpoch;
  }
  set epoch(value: bigint) {
    checkU64('epoch', value);
    this.stateEpoch = value;
  }

  get cleanShutdown(): boolean {
    return this.stateCleanShutdown;
  }
  set cleanShutdown(value: boolean) {
    assert(typeof value === 'boolean', 'cleanShutdown must be a boolean');
    this.stateCleanShutdown = value;
  }

  /** Sequence number of the latest durable copy. */
  get sequence(): bigint {
    return this.latestSequence;
  }

  /** The slot holding the latest durable copy (the next write goes to the other one). */
  get latestSlot(): SlotName {
    return SLOT_NAMES[this.latestSlotIndex]!;
  }

  /** Slot writes this object completed (group commit makes this smaller than the number of persist calls). */
  get writeCount(): number {
    return this.slotWrites;
  }

  /**
   * Make the current state durable. Callers that arrive while a write is in progress share the next
   * write (group commit); each promise resolves only after an fdatasync that covers the state as it
   * was when persist() was called.
   */
  persist(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error(`metadata file ${this.path} is closed`));
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.writing) {
      this.writing = true;
      // Start on the next microtask so callers of the same tick share the first write too.
      queueMicrotask(() => void this.drainWaiters());
    }
    return done;
  }

  /** Make the current state durable now, blocking the thread (for startup and shutdown paths). */
  persistSync(): void {
    if (this.failure !== undefined) throw this.failure;
    assert(!this.closed, `metadata file ${this.path} is closed`);
    assert(!this.writing, 'persistSync called while an async persist is in progress; await persist() instead');
    const { slotIndex, sequence } = this.encodeNextSlot();
    try {
      writeAllSync(this.fd, this.slotBuffer, slotIndex * this.slotBytes);
      fs.fdatasyncSync(this.fd);
    } catch (error) {
      throw this.fail(error);
    }
    this.commitSlot(slotIndex, sequence);
  }

  /** Close the file. Await every persist() first: closing under a write in flight is a bug. */
  close(): void {
    if (this.closed) return;
    assert(!this.writing && this.waiters.length === 0, 'close called while a persist is in progress');
    this.closed = true;
    fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** The state as one slot would hold it. */
  snapshot(): MetadataState {
    return {
      sequence: this.latestSequence,
      volumeSizeBytes: this.volumeSizeBytes,
      regionBytes: this.regionBytes,
      activityLogExtentBytes: this.activityLogExtentBytes,
      nodeId: this.stateNodeId,
      role: this.stateRole,
      diskState: this.stateDiskState,
      generations: { ...this.stateGenerations },
      epoch: this.stateEpoch,
      cleanShutdown: this.stateCleanShutdown,
      storeKind: this.storeKind,
      storeInode: this.storeInode,
      activityLog: this.activityLog.list(),
      bitmap: this.dirty.toBytes(),
    };
  }

  /** Serve waiting persist() callers, one write per batch, until nobody waits. */
  private async drainWaiters(): Promise<void> {
    while (this.waiters.length > 0) {
      const batch = this.waiters;
      this.waiters = [];
      try {
        const { slotIndex, sequence } = this.encodeNextSlot();
        await writeAll(this.fd, this.slotBuffer, slotIndex * this.slotBytes);
        await fdatasync(this.fd);
        this.commitSlot(slotIndex, sequence);
        for (const waiter of batch) waiter.resolve();
      } catch (error) {
        const failure = this.fail(error);
        for (const waiter of [...batch, ...this.waiters]) waiter.reject(failure);
        this.waiters = [];
      }
    }
    this.writing = false;
  }

  /** Encode the current state into slotBuffer for the slot not holding the latest copy. */
  private encodeNextSlot(): { slotIndex: number; sequence: bigint } {
    const slotIndex = 1 - this.latestSlotIndex;
    const sequence = this.latestSequence + 1n;
    encodeSlot({ ...this.snapshot(), sequence }, this.slotBuffer, 0);
    return { slotIndex, sequence };
  }

  /** The write is durable: its slot now holds the latest copy. */
  private commitSlot(slotIndex: number, sequence: bigint): void {
    this.latestSlotIndex = slotIndex;
    this.latestSequence = sequence;
    this.slotWrites += 1;
  }

  /**
   * After a failed write or fdatasync the kernel may have dropped the dirty pages and a later
   * fdatasync could wrongly succeed, so this object refuses every later write.
   */
  private fail(error: unknown): MetadataError {
    if (this.failure === undefined) {
      const message = error instanceof Error ? error.message : String(error);
      this.failure = new MetadataError(
        'META_WRITE_FAILED',
        this.path,
        `writing slot ${SLOT_NAMES[1 - this.latestSlotIndex]} failed (${message}); the node must stop. Slot ${this.latestSlot} still holds the last durable copy`,
      );
    }
    return this.failure;
  }
}

/** Throws unless value is an unsigned 64-bit integer (setters reject what the file cannot hold). */
function checkU64(name: string, value: bigint): void {
  assert(typeof value === 'bigint' && value >= 0n && value <= U64_MAX, `${name} ${String(value)} is not an unsigned 64-bit integer`);
}

/** Stat the store: what it is and whether it can hold data. */
function identifyStore(storePath: string, metadataPath: string): StoreIdentity {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(storePath, { bigint: true });
  } catch (error) {
    throw new MetadataError('META_STORE_MISMATCH', metadataPath, `store ${storePath} cannot be examined: ${(error as Error).message}`);
  }
  if (st.isFile()) return { kind: 'file', inode: st.ino, holdsNoData: st.blocks === 0n };
  if (st.isBlockDevice()) return { kind: 'blockDevice', inode: 0n, holdsNoData: false };
  throw new MetadataError('META_STORE_MISMATCH', metadataPath, `store ${storePath} is neither a regular file nor a block device`);
}

/** The file's bytes, or undefined if it does not exist. */
function readMetadataBytes(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new MetadataError('META_FOREIGN', path, 'it is not a regular file');
    if (st.size > METADATA_FILE_BYTES_MAX) {
      const head = readExactly(fd, Math.min(HEADER_BYTES, st.size));
      if (!head.subarray(0, MAGIC.length).equals(MAGIC)) throw new MetadataError('META_FOREIGN', path, `the file (${st.size} bytes) is not a blockmirror metadata file`);
      throw new MetadataError('META_CORRUPT', path, `the file has ${st.size} bytes, more than any metadata file (${METADATA_FILE_BYTES_MAX})`);
    }
    return readExactly(fd, st.size);
  } finally {
    fs.closeSync(fd);
  }
}

/** Read `length` bytes from offset 0 (a shorter file yields fewer bytes). */
function readExactly(fd: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

function openForUpdate(path: string): number {
  return fs.openSync(path, 'r+');
}

interface FreshMetadata {
  volumeSizeBytes: number;
  regionBytes: number;
  activityLogExtentBytes: number;
  role: NodeRole;
  diskState: DiskState;
  store: StoreIdentity;
  currentGeneration: bigint;
}

/** The state of brand-new metadata: random node id, the given current generation, epoch 1, nothing dirty. */
function freshState(path: string, fresh: FreshMetadata): MetadataState {
  const problem = geometryProblem(fresh.volumeSizeBytes, fresh.regionBytes, fresh.activityLogExtentBytes);
  if (problem !== undefined) throw new MetadataError('META_GEOMETRY', path, problem);
  assert(NODE_ROLES.includes(fresh.role), `unknown role ${String(fresh.role)}`);
  assert(DISK_STATES.includes(fresh.diskState), `unknown disk state ${String(fresh.diskState)}`);
  return {
    sequence: 1n,
    volumeSizeBytes: fresh.volumeSizeBytes,
    regionBytes: fresh.regionBytes,
    activityLogExtentBytes: fresh.activityLogExtentBytes,
    nodeId: randomId64(),
    role: fresh.role,
    diskState: fresh.diskState,
    generations: { current: fresh.currentGeneration, bitmap: GENERATION_NONE, history0: GENERATION_NONE, history1: GENERATION_NONE },
    epoch: 1n,
    // Nothing was ever written through this metadata, so nothing can be in flight.
    cleanShutdown: true,
    storeKind: fresh.store.kind,
    storeInode: fresh.store.inode,
    activityLog: [],
    bitmap: new Uint8Array(bitmapBytesFor(fresh.volumeSizeBytes, fresh.regionBytes)),
  };
}

/** Write a complete new file beside the target, make it durable, then rename it into place. */
function writeFreshFile(path: string, state: MetadataState): void {
  const temp = path + CREATE_TEMP_SUFFIX;
  const fd = fs.openSync(temp, 'w', FILE_MODE);
  try {
    writeAllSync(fd, encodeFreshImage(state), 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, path);
  const dirFd = fs.openSync(nodePath.dirname(path), 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

/** Refuse a file that describes another volume or another store. */
function checkMatchesStore(state: MetadataState, path: string, storePath: string, store: StoreIdentity, options: OpenMetadataOptions): void {
  if (state.volumeSizeBytes !== options.volumeSizeBytes) {
    throw new MetadataError(
      'META_SIZE_MISMATCH',
      path,
      `it records a volume of ${state.volumeSizeBytes} bytes but store ${storePath} has ${options.volumeSizeBytes} bytes`,
    );
  }
  if (options.regionBytes !== undefined && options.regionBytes !== state.regionBytes) {
    throw new MetadataError('META_REGION_MISMATCH', path, `it uses ${state.regionBytes}-byte regions, not the ${options.regionBytes} asked for`);
  }
  if (options.activityLogExtentBytes !== undefined && options.activityLogExtentBytes !== state.activityLogExtentBytes) {
    throw new MetadataError(
      'META_REGION_MISMATCH',
      path,
      `it uses ${state.activityLogExtentBytes}-byte activity log extents, not the ${options.activityLogExtentBytes} asked for`,
    );
  }
  if (state.storeKind !== store.kind) {
    throw new MetadataError('META_STORE_MISMATCH', path, `it was made for a ${state.storeKind} store but ${storePath} is a ${store.kind}`);
  }
  if (store.kind === 'file' && state.storeInode !== store.inode) {
    throw new MetadataError(
      'META_STORE_MISMATCH',
      path,
      `store ${storePath} is not the file this metadata was made for (inode ${store.inode}, recorded ${state.storeInode}): ` +
        `the store was replaced, copied or restored`,
    );
  }
}

/** pwrite the whole buffer at `position`, looping over short writes. */
function writeAllSync(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, position + done);
}

/** Async pwrite of the whole buffer at `position` (libuv thread pool), looping over short writes. */
async function writeAll(fd: number, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const offset = done;
    done += await new Promise<number>((resolve, reject) =>
      fs.write(fd, buf, offset, buf.length - offset, position + offset, (error, written) => (error ? reject(error) : resolve(written))),
    );
  }
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve())));
}
