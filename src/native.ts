/**
 * The only loader of the native addon, and the one typed interface between TypeScript and C++.
 *
 * Ownership (see native/README.md):
 * - Native owns syscalls, threads, the buffer pool and the NBD transmission phase of a socket.
 * - TypeScript owns policy: validation of requests against the export, ordering, mirroring, replies.
 * - A pool slot delivered with a request belongs to TypeScript until `complete(tag, ...)` for that
 *   request; native does not reuse it before then.
 */
import * as path from 'node:path';

/** NBD command types as they appear in a request row (same numbers as the NBD protocol). */
export const enum NbdCommand {
  Read = 0,
  Write = 1,
  Disc = 2,
  Flush = 3,
  Trim = 4,
  Cache = 5,
  WriteZeroes = 6,
  BlockStatus = 7,
}

/** Number of float64 fields in one request row of a RequestBatch. */
export const REQUEST_ROW_FIELDS = 6;
/** Field positions within a row. */
export const enum RequestField {
  Tag = 0, // uint32, native request id; echoed in complete()
  Command = 1, // NbdCommand
  Flags = 2, // NBD command flags (FUA = 1, NO_HOLE = 2, ...)
  OffsetBytes = 3, // uint64 (< 2^53 enforced by native; larger offsets are refused with EINVAL)
  LengthBytes = 4, // uint32
  Slot = 5, // pool slot index holding the payload (write) or the destination (read); -1 if none
}

/**
 * One wake-up of the JS thread: every request the reader thread parsed since the previous batch.
 * `rows` has `count * REQUEST_ROW_FIELDS` meaningful entries.
 * `largeBuffers`, when present, has `count` entries: entry i is a dedicated native buffer for row i
 * when that request is longer than the pool slot size (its Slot field is -1), else null. Native
 * allocated it and read the payload straight into it: still not a copy.
 */
export interface RequestBatch {
  count: number;
  rows: Float64Array;
  largeBuffers: (Buffer | null)[] | null;
}

/** Why a connection ended, delivered once to onClose. */
export interface ConnectionEnd {
  /** 'disconnect' (client sent NBD_CMD_DISC), 'eof', 'protocol' (bad magic, oversized, ...), 'error', 'closed' (close() called). */
  reason: 'disconnect' | 'eof' | 'protocol' | 'error' | 'closed';
  message: string;
}

export interface NbdConnectionStats {
  requests: number;
  batches: number;
  payloadBytesIn: number;
  payloadBytesOut: number;
  copiedPayloadBytes: number;
  inFlight: number;
}

export interface NbdConnectionOptions {
  /** Connected socket fd, already past negotiation. Native dup()s it; the caller may close its own. */
  fd: number;
  /** Writes and reads longer than this are refused (protocol error → disconnect for writes, EINVAL for reads). */
  payloadBytesMax: number;
  /** Bytes already read from the socket by the negotiation phase that belong to the transmission phase. */
  initialBytes?: Buffer;
  /** Label used in native log lines. */
  name: string;
}

/** Native side of one NBD transmission phase. */
export interface NativeNbdConnection {
  /**
   * Send the simple reply for request `tag` (error 0 = success; NBD error numbers otherwise) and release its slot.
   * For a successful READ the reply carries `length` bytes from the request's slot / large buffer.
   * Called inside onBatch or a store completion handler, the reply is sent together with the other
   * replies of that callback when it returns (one sendmsg per callback); elsewhere it is sent at once.
   */
  complete(tag: number, nbdError: number): void;
  /** Stop reading, shut the socket down, and call onClose once in-flight replies are written or dropped. */
  close(): void;
  stats(): NbdConnectionStats;
}

export interface StoreOpenOptions {
  path: string;
  /** O_DIRECT (block devices; buffers are page-aligned pool slots). */
  direct: boolean;
  readOnly: boolean;
  /** Create the file if missing (regular files only). */
  create: boolean;
}

/** Async store operation codes for Store.submit. */
export const enum StoreOp {
  Read = 0,
  Write = 1,
  Flush = 2, // fdatasync
  Trim = 3, // fallocate(PUNCH_HOLE|KEEP_SIZE); block devices: BLKDISCARD
  Zero = 4, // fallocate(ZERO_RANGE), fallback: punch hole or write zeroes
}

/** Completion callback for Store.submit: ids and results (0 or -errno), `count` entries. Runs on the JS thread. */
export type StoreCompletionHandler = (count: number, ids: Uint32Array, results: Int32Array) => void;

export interface NativeStore {
  readonly fd: number;
  /** Size in bytes: st_size for files, BLKGETSIZE64 for block devices. */
  sizeBytes(): number;
  isBlockDevice(): boolean;
  /** Extend or set a regular file's size (ftruncate). */
  truncate(sizeBytes: number): void;
  /** Synchronous I/O on the calling thread; return 0 or -errno (never throw on I/O errors). */
  readSync(buf: Buffer, offsetBytes: number): number;
  writeSync(buf: Buffer, offsetBytes: number, fua: boolean): number;
  trimSync(offsetBytes: number, lengthBytes: number): number;
  zeroSync(offsetBytes: number, lengthBytes: number): number;
  flushSync(): number;
  /** lseek(SEEK_DATA) clamped to endBytes: endBytes if only a hole follows offsetBytes; offsetBytes if unknown. */
  nextData(offsetBytes: number, endBytes: number): number;
  /**
   * The extents of [offsetBytes, endBytes) that may hold data, as (start, end) pairs written to
   * `out` in order (at most out.length / 2, at most 4096), from one FS_IOC_FIEMAP; delayed and
   * unwritten extents count as data. Returns the count, or -1 when the store cannot tell (block
   * devices, no FIEMAP). A hint that may be stale at once: decisions that matter re-check with nextData.
   */
  dataExtents(offsetBytes: number, endBytes: number, out: Float64Array): number;
  /**
   * Queue an operation to the store's worker threads. `buf` is required for Read/Write and must stay
   * referenced until completion (native holds a reference). Completions arrive in batches on the handler
   * given to openStore.
   */
  submit(op: StoreOp, id: number, buf: Buffer | null, offsetBytes: number, lengthBytes: number, fua: boolean): void;
  /** Wait for queued ops, stop worker threads, close the fd. */
  close(): void;
  /**
   * Resync channel, primary end (native/resync_sender.h): a native thread streams the runs pushed
   * to the returned sender, in push order, on the blocking socket `fd`, which the sender owns from
   * this call on (it closes it when the channel ends, also when this call throws). Each run
   * (offset, length up to what `buffer` holds from its first page boundary on) is read there; an all-zero run is not sent, any
   * other goes as WRITE_NOTIFY (seq from 1, tag = seq mod 2^16) + WRITE_META + payload. ACKs are
   * read as they arrive. `onSettled(outcomes)` gets the outcomes of the next runs in push order:
   * 1 = ACKed, 2 = all zeroes (not sent), negative = -errno the peer reported. `onEnd(problem)`
   * runs once, last, when the channel ended: problem null after close(), else why it failed (a
   * store read, the socket, an ACK that is malformed, out of order or not OK, or none within
   * `timeoutMs`); runs without an outcome by then were not all acknowledged.
   */
  openResyncSender(fd: number, buffer: Buffer, epoch: bigint, timeoutMs: number, onSettled: (outcomes: Int32Array) => void, onEnd: (problem: string | null) => void): NativeResyncSender;
  /**
   * Resync channel, secondary end: serve `fd` on a libuv pool thread until it ends, verifying
   * every write (payloads up to what `buffer` holds from its first page boundary on, where it is
   * read, so that an O_DIRECT store can write it) before writing it, then ACKing it; counters[0] +=
   * writes, counters[1] += bytes as they are applied. Closes `fd`, then `done(reason, clean, failedWrites)`; clean = the
   * primary closed the channel between writes.
   */
  resyncReceive(fd: number, buffer: Buffer, volumeBytes: number, epoch: bigint, counters: Float64Array, done: (reason: string, clean: boolean, failedWrites: number) => void): void;
}

/** Outcomes NativeResyncSender reports per run (negative: -errno the secondary reported). */
export const enum ResyncSendOutcome {
  Acked = 1,
  Zero = 2, // all zeroes: not sent
}

/** The primary end of a resync channel (NativeStore.openResyncSender). */
export interface NativeResyncSender {
  /** Queue runs: a Float64Array of offset, length pairs, sent after every run pushed before. */
  push(runs: Float64Array): void;
  /** End the channel now: the socket is shut down, a blocked send returns, onEnd follows. */
  close(): void;
}

export interface NbdDeviceOptions {
  /** e.g. /dev/nbd0 */
  devicePath: string;
  sizeBytes: number;
  blockSizeBytes: number;
  /** NBD transmission flags advertised to the kernel (NBD_FLAG_*). */
  flags: number;
  /** Seconds before the kernel fails a request that got no reply (and the dead-connection timeout). */
  timeoutSeconds: number;
}

/** A kernel /dev/nbdN attached to one end of a socketpair; NBD_DO_IT runs on a native thread. */
export interface NativeNbdDevice {
  /** Our end of the socketpair: pass it to NbdConnection (no negotiation happens on it). */
  readonly fd: number;
  /** NBD_DISCONNECT + NBD_CLEAR_SOCK; resolves onExit when the DO_IT thread returned. */
  detach(): void;
}

export interface PoolInfo {
  slotBytes: number;
  slotCount: number;
  /** One Buffer per slot, views of native memory (external ArrayBuffer), created once. */
  slots: Buffer[];
}

/** Positions in the request array of collectDataRuns (native/resync_runs.h, RunRequestField, is its twin). */
export const enum RunRequest {
  FromRegion = 0,
  RegionBytes = 1,
  VolumeBytes = 2,
  MaxRunBytes = 3,
  MaxRuns = 4,
  SpanBytesMax = 5,
  BudgetBytes = 6,
  MapFrom = 7,
  MapTo = 8,
  ExtentCount = 9,
  Fields = 10,
}

export interface NativeBinding {
  /** Allocate the page-aligned buffer pool (once per process). */
  initPool(slotBytes: number, slotCount: number): PoolInfo;
  openConnection(
    options: NbdConnectionOptions,
    onBatch: (batch: RequestBatch) => void,
    onClose: (end: ConnectionEnd) => void,
  ): NativeNbdConnection;
  openStore(options: StoreOpenOptions, onComplete: StoreCompletionHandler): NativeStore;
  attachNbdDevice(options: NbdDeviceOptions, onExit: (errno: number, message: string) => void): NativeNbdDevice;
  /** From any process: NBD_DISCONNECT then NBD_CLEAR_SOCK on a device. Throws BlockError on failure. */
  disconnectNbdDevice(devicePath: string): void;
  /** CRC32C (Castagnoli), hardware-accelerated; `seed` continues a previous value (default 0). */
  crc32c(buf: Buffer, seed?: number): number;
  /** Total payload bytes memcpy'd on the hot path by native code, process-wide. */
  copiedPayloadBytes(): number;
  /**
   * Run `fn` with NBD replies held back and send them together when it returns (one sendmsg per
   * connection). Replies completed inside onBatch or a store completion are already held; this is
   * for completions that come from elsewhere, e.g. a batch of peer ACKs.
   */
  withHeldReplies<T>(fn: () => T): T;
  /** A close-on-exec duplicate of an open fd (to rewrap an accepted socket and close the original). */
  duplicateFd(fd: number): number;
  /** shutdown(fd, SHUT_RDWR): wakes a resync channel's blocked reads and writes. */
  shutdownSocket(fd: number): void;
  closeFd(fd: number): void;
  /** The native encoder of a resync write's WRITE_NOTIFY + WRITE_META (56 bytes), for tests. */
  encodeResyncWriteHeads(tag: number, seq: number, offsetBytes: number, lengthBytes: number, payloadCrc32c: number, epoch: bigint): Buffer;
  /**
   * The data runs of one resync batch (native/resync_runs.h): from dirty region `request[FromRegion]` on,
   * adjacent dirty regions that may hold data (by the data map of `request[MapFrom]`..`[MapTo]` and
   * `extents`) merged into runs, within the batch's limits. Writes [offsetBytes, lengthBytes] pairs
   * to `runs` and returns how many; ends before a region the map shows as hole or does not cover.
   */
  collectDataRuns(bits: Uint8Array, request: Float64Array, extents: Float64Array, runs: Float64Array): number;
  /** Set where native log lines go (default: stderr). */
  setLogger(log: (level: 'info' | 'warn' | 'error', message: string) => void): void;
}

let cached: NativeBinding | undefined;

/** Load build/Release/blockmirror.node once and check it exports every member of NativeBinding. */
export function loadNative(): NativeBinding {
  if (cached !== undefined) return cached;
  const file = path.join(__dirname, '..', '..', 'build', 'Release', 'blockmirror.node');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const binding = require(file) as Record<string, unknown>;
  const required: (keyof NativeBinding)[] = [
    'initPool', 'openConnection', 'openStore', 'attachNbdDevice', 'disconnectNbdDevice',
    'crc32c', 'copiedPayloadBytes', 'setLogger', 'withHeldReplies', 'duplicateFd', 'shutdownSocket', 'closeFd', 'encodeResyncWriteHeads',
    'collectDataRuns',
  ];
  for (const name of required) {
    if (typeof binding[name] !== 'function') {
      throw new Error(`native addon ${file} does not export ${name}: rebuild with npm run build`);
    }
  }
  cached = binding as unknown as NativeBinding;
  return cached;
}
