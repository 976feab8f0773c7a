/**
 * The local backing store (file or block device) of a node: opening with size rules, and I/O that
 * runs synchronously on the JS thread when that is cheapest (page-cache writes up to SYNC_IO_BYTES_MAX)
 * or on native worker threads otherwise, with completions delivered in batches.
 */
import * as fs from 'node:fs';
import { loadNative, StoreOp, type NativeResyncSender, type NativeStore } from '../native';
import { SYNC_IO_BYTES_MAX, VOLUME_BYTES_MAX } from '../limits';
import { formatSizeBytes } from '../util/size';

export class StoreConfigError extends Error {
  override readonly name = 'StoreConfigError';
}

export interface LocalStoreOptions {
  path: string;
  /** Requested size; undefined means "use the existing store's size". */
  sizeBytes: number | undefined;
  /** O_DIRECT on block devices. */
  direct: boolean;
}

/** Completion of an async store operation: 0 or -errno. */
export type StoreCallback = (result: number) => void;

const ASYNC_IDS_MAX = 2 ** 31;

export class LocalStore {
  readonly path: string;
  readonly sizeBytes: number;
  readonly isBlockDevice: boolean;
  readonly direct: boolean;
  /** This process created the store (sparse, all zeroes). */
  readonly createdEmpty: boolean;
  private readonly native: NativeStore;
  private readonly callbacks = new Map<number, StoreCallback>();
  private nextId = 1;
  private closed = false;
  /** Resync channel batches or receivers running on pool threads with this store's fd. */
  private channelOperations = 0;

  /** Open (creating a sparse file if needed); an existing store keeps its size and a conflicting size is an error. */
  static open(options: LocalStoreOptions): LocalStore {
    return new LocalStore(options);
  }

  private constructor(options: LocalStoreOptions) {
    this.path = options.path;
    const existing = statOrUndefined(options.path);
    if (existing === undefined && options.sizeBytes === undefined) {
      throw new StoreConfigError(`store ${options.path} does not exist and no --size was given to create it`);
    }
    if (existing !== undefined && !existing.isFile() && !existing.isBlockDevice()) {
      throw new StoreConfigError(`store ${options.path} is neither a regular file nor a block device`);
    }
    this.direct = options.direct;
    this.createdEmpty = existing === undefined;
    this.native = loadNative().openStore(
      { path: options.path, direct: options.direct, readOnly: false, create: existing === undefined },
      (count, ids, results) => this.onComplete(count, ids, results),
    );
    this.isBlockDevice = this.native.isBlockDevice();
    let size = this.native.sizeBytes();
    try {
      if (existing === undefined || (!this.isBlockDevice && size === 0 && options.sizeBytes !== undefined)) {
        // New (or empty) file: make it sparse at the requested size.
        this.native.truncate(options.sizeBytes!);
        size = options.sizeBytes!;
      } else if (options.sizeBytes !== undefined && options.sizeBytes !== size) {
        throw new StoreConfigError(
          `store ${options.path} already has size ${size} bytes (${formatSizeBytes(size)}); ` +
            `--size ${options.sizeBytes} conflicts with it (omit --size or give the same value)`,
        );
      }
      if (size <= 0) throw new StoreConfigError(`store ${options.path} has size 0`);
      if (size > VOLUME_BYTES_MAX) throw new StoreConfigError(`store ${options.path} is larger than ${VOLUME_BYTES_MAX} bytes`);
    } catch (error) {
      this.native.close();
      throw error;
    }
    this.sizeBytes = size;
  }

  /** Whether a request of this size should run on the JS thread (cheap page-cache copy) rather than a worker. */
  runsSynchronously(lengthBytes: number, fua: boolean): boolean {
    return !this.direct && !fua && lengthBytes <= SYNC_IO_BYTES_MAX;
  }

  /**
   * The first offset at or after `offsetBytes` (and before `endBytes`) that may hold data, or
   * `endBytes` if the store knows it is all hole up to there. Never larger than the truth.
   */
  nextDataOffset(offsetBytes: number, endBytes: number): number {
    return this.native.nextData(offsetBytes, endBytes);
  }

  /** NativeStore.dataExtents: data extents of a range from one FIEMAP, or -1 when unknown. */
  dataExtents(offsetBytes: number, endBytes: number, out: Float64Array): number {
    return this.closed ? -1 : this.native.dataExtents(offsetBytes, endBytes, out);
  }

  readSync(buf: Buffer, offsetBytes: number): number {
    return this.native.readSync(buf, offsetBytes);
  }

  writeSync(buf: Buffer, offsetBytes: number): number {
    return this.native.writeSync(buf, offsetBytes, false);
  }

  trimSync(offsetBytes: number, lengthBytes: number): number {
    return this.native.trimSync(offsetBytes, lengthBytes);
  }

  zeroSync(offsetBytes: number, lengthBytes: number): number {
    return this.native.zeroSync(offsetBytes, lengthBytes);
  }

  /** Queue an operation to the native workers; `done` runs on the JS thread with 0 or -errno. */
  submit(op: StoreOp, buf: Buffer | null, offsetBytes: number, lengthBytes: number, fua: boolean, done: StoreCallback): void {
    if (this.closed) {
      done(-108); // ESHUTDOWN
      return;
    }
    const id = this.nextId;
    this.nextId = this.nextId + 1 >= ASYNC_IDS_MAX ? 1 : this.nextId + 1;
    this.callbacks.set(id, done);
    this.native.submit(op, id, buf, offsetBytes, lengthBytes, fua);
  }

  /**
   * Open the primary end of a resync channel on `fd` (NativeStore.openResyncSender). The store
   * stays open until the channel has ended, even if close() is called meanwhile.
   */
  openResyncSender(fd: number, buffer: Buffer, epoch: bigint, timeoutMs: number, onSettled: (outcomes: Int32Array) => void, onEnd: (problem: string | null) => void): NativeResyncSender {
    if (this.closed) {
      loadNative().closeFd(fd);
      throw new Error('the store is closed');
    }
    this.channelOperations += 1;
    try {
      return this.native.openResyncSender(fd, buffer, epoch, timeoutMs, onSettled, (problem) => {
        this.channelOperationDone();
        onEnd(problem);
      });
    } catch (error) {
      this.channelOperationDone();
      throw error;
    }
  }

  /** Serve a resync channel until it ends (NativeStore.resyncReceive); the store stays open meanwhile. */
  resyncReceive(fd: number, buffer: Buffer, volumeBytes: number, epoch: bigint, counters: Float64Array, done: (reason: string, clean: boolean, failedWrites: number) => void): void {
    if (this.closed) {
      loadNative().closeFd(fd);
      done('the store is closed', false, 0);
      return;
    }
    this.channelOperations += 1;
    try {
      this.native.resyncReceive(fd, buffer, volumeBytes, epoch, counters, (reason, clean, failed) => {
        this.channelOperationDone();
        done(reason, clean, failed);
      });
    } catch (error) {
      this.channelOperationDone();
      throw error;
    }
  }

  private channelOperationDone(): void {
    this.channelOperations -= 1;
    if (this.channelOperations === 0 && this.closed) this.native.close();
  }

  /** Convenience: a durable flush as a promise (shutdown, tests). */
  flush(): Promise<number> {
    return new Promise((resolve) => this.submit(StoreOp.Flush, null, 0, 0, false, resolve));
  }

  /** Wait for queued operations and close the fd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.channelOperations === 0) this.native.close(); // else once the last one is done
  }

  get pendingOperations(): number {
    return this.callbacks.size;
  }

  private onComplete(count: number, ids: Uint32Array, results: Int32Array): void {
    for (let i = 0; i < count; i++) {
      const id = ids[i]!;
      const callback = this.callbacks.get(id);
      if (callback === undefined) continue;
      this.callbacks.delete(id);
      callback(results[i]!);
    }
  }
}

function statOrUndefined(path: string): fs.Stats | undefined {
  try {
    return fs.statSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
