/**
 * The one TypeScript decision point for every block request, whichever front end it came from
 * (NBD server connection or kernel /dev/nbdN): validate it against the volume, run it on the local
 * store, and (for writes, when a replicator is attached) on the peer, then complete it.
 */
import { NbdCommand, RequestField, REQUEST_ROW_FIELDS, StoreOp, type RequestBatch } from './native';
import * as P from './nbd/protocol';
import type { LocalStore } from './store/local-store';
import { newIoStats, type IoStats } from './io-stats';
import type { Logger } from './util/log';
import { RangeGate } from './range-gate';

/** The front end a request came from: it receives exactly one completion per tag. */
export interface RequestSource {
  readonly name: string;
  complete(tag: number, nbdError: number): void;
  /** Payload buffer of a pool slot (slot ≥ 0). */
  slotBuffer(slot: number): Buffer;
}

/** One validated block request, as the controller and a replicator see it. */
export interface BlockRequest {
  command: NbdCommand;
  flags: number;
  offsetBytes: number;
  lengthBytes: number;
  /** Payload (write) or destination (read); empty for other commands. */
  data: Buffer;
}

/**
 * Extension point for mirroring: told about every modifying request after local validation;
 * `done(nbdError)` is called once the peer side is settled (acknowledged, or not needed because degraded).
 */
export interface Replicator {
  replicate(request: BlockRequest, done: (nbdError: number) => void): void;
  /**
   * Optional: runs before a modifying request touches either node (e.g. a durable activity-log or
   * out-of-sync bitmap update). Returns undefined when nothing had to wait, else a promise.
   */
  prepareWrite?(request: BlockRequest): Promise<void> | undefined;
  /** Optional: the modifying request is finished on both nodes (or recorded as out of sync). */
  finishWrite?(request: BlockRequest): void;
  /** Optional: put what replicate() queued on the wire now (it may otherwise wait for the end of the tick). */
  flushSends?(): void;
  /**
   * Optional: the local part of a replicated modifying request failed (`errno` < 0) and its peer
   * part has settled, so the peer may hold what this node does not. Called before the client's reply.
   */
  localWriteFailed?(request: BlockRequest, errno: number): void;
  /**
   * Optional: the local store failed to read `request`; ask the peer for the bytes. Called with the
   * range's write gate held. False when the peer cannot serve them (nothing was sent); otherwise
   * `done` gets 0 once the bytes are in request.data, or -errno.
   */
  readFromPeer?(request: BlockRequest, done: (result: number) => void): boolean;
}

const EMPTY: Buffer = Buffer.alloc(0);

export class Controller {
  readonly io: IoStats = newIoStats();
  /** Overlapping modifying requests apply locally in the order they were sent to the peer. */
  readonly writeGate = new RangeGate();
  private replicator: Replicator | undefined;
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  /** Modifying requests waiting for prepareWrite, in arrival order (so the gate sees arrival order). */
  private preparing: { request: BlockRequest; go: () => void; fail: () => void; ready: boolean }[] = [];
  /**
   * While a batch is being dispatched, replicated requests queue their local part here: the whole
   * batch goes to the peer first, in one send, and the peer applies it while this node writes its
   * own copy, instead of the send waiting for every local write of the batch.
   */
  private localAfterSends: (() => void)[] | undefined;
  /** A read served from the peer was logged (later ones are only counted). */
  private peerReadLogged = false;

  constructor(
    private readonly store: LocalStore,
    private readonly log: Logger,
  ) {}

  /** Attach (or detach with undefined) the peer side of writes. */
  setReplicator(replicator: Replicator | undefined): void {
    this.replicator = replicator;
  }

  get sizeBytes(): number {
    return this.store.sizeBytes;
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  /** Resolve once no request is in flight (graceful shutdown). */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Entry point for one wake-up's worth of requests from one source. */
  handleBatch(source: RequestSource, batch: RequestBatch): void {
    const deferred: (() => void)[] = [];
    this.localAfterSends = deferred;
    try {
      this.dispatchBatch(source, batch);
    } finally {
      this.localAfterSends = undefined;
    }
    if (deferred.length === 0) return;
    this.replicator?.flushSends?.();
    for (const runLocal of deferred) runLocal();
  }

  private dispatchBatch(source: RequestSource, batch: RequestBatch): void {
    const rows = batch.rows;
    for (let i = 0; i < batch.count; i++) {
      const base = i * REQUEST_ROW_FIELDS;
      const tag = rows[base + RequestField.Tag]!;
      const command = rows[base + RequestField.Command]! as NbdCommand;
      const flags = rows[base + RequestField.Flags]!;
      const offsetBytes = rows[base + RequestField.OffsetBytes]!;
      const lengthBytes = rows[base + RequestField.LengthBytes]!;
      const slot = rows[base + RequestField.Slot]!;
      let data: Buffer = EMPTY;
      if (slot >= 0) data = source.slotBuffer(slot).subarray(0, lengthBytes);
      else if (batch.largeBuffers !== null) data = batch.largeBuffers[i] ?? EMPTY;
      this.handleRequest(source, tag, { command, flags, offsetBytes, lengthBytes, data });
    }
  }

  private handleRequest(source: RequestSource, tag: number, request: BlockRequest): void {
    const invalid = this.validate(request);
    if (invalid !== P.NBD_OK) {
      this.io.errors += 1;
      this.log.warn(
        `${source.name}: refused ${commandName(request.command)} offset=${request.offsetBytes} length=${request.lengthBytes} (NBD error ${invalid})`,
      );
      source.complete(tag, invalid);
      return;
    }
    this.inFlight += 1;
    const finish = (nbdError: number): void => {
      if (nbdError !== P.NBD_OK) this.io.errors += 1;
      source.complete(tag, nbdError);
      this.inFlight -= 1;
      if (this.inFlight === 0 && this.idleWaiters.length > 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    };
    this.count(request);
    if (request.command === NbdCommand.Read || request.command === NbdCommand.Flush) {
      this.runLocalOrReplicated(request, finish, undefined);
      return;
    }
    const enterGate = (): void =>
      this.writeGate.enter(request.offsetBytes, request.lengthBytes, (release) =>
        this.runLocalOrReplicated(request, finish, release),
      );
    this.prepareInOrder(request, enterGate, () => finish(P.NBD_EIO));
  }

  /** Run the replicator's prepareWrite, keeping arrival order for the write gate. */
  private prepareInOrder(request: BlockRequest, go: () => void, fail: () => void): void {
    let pending: Promise<void> | undefined;
    try {
      pending = this.replicator?.prepareWrite?.(request);
    } catch (error) {
      // A failed durable mark must not leave the request hanging: fail it through the ordered path.
      pending = Promise.reject(error as Error);
    }
    if (pending === undefined && this.preparing.length === 0) {
      go();
      return;
    }
    const entry = { request, go, fail, ready: pending === undefined };
    this.preparing.push(entry);
    if (pending !== undefined) {
      pending.then(
        () => {
          entry.ready = true;
          this.drainPrepared();
        },
        (error: Error) => {
          this.log.error(`preparing a write failed (the write is refused with EIO): ${error.message}`);
          entry.go = () => entry.fail();
          entry.ready = true;
          this.drainPrepared();
        },
      );
    }
  }

  private drainPrepared(): void {
    while (this.preparing.length > 0 && this.preparing[0]!.ready) this.preparing.shift()!.go();
  }

  /**
   * Reads are served locally (from the peer only when the local store fails them); everything else
   * also goes to the replicator when one is attached.
   */
  private runLocalOrReplicated(request: BlockRequest, finish: (nbdError: number) => void, localDone: (() => void) | undefined): void {
    if (request.command === NbdCommand.Read && this.replicator?.readFromPeer !== undefined) {
      this.runLocal(request, (local) => {
        if (local < 0) this.readFromPeer(request, local, finish);
        else finish(P.NBD_OK);
      });
      return;
    }
    if (request.command === NbdCommand.Read || this.replicator === undefined) {
      this.runLocal(request, (local) => {
        localDone?.();
        finish(P.nbdErrorFromErrno(local));
      });
      return;
    }
    this.runReplicated(request, finish, localDone);
  }

  /** Local and peer in parallel; the reply waits for both (sync mirroring) and reports the first error. */
  private runReplicated(request: BlockRequest, finish: (nbdError: number) => void, localDone: (() => void) | undefined): void {
    let pending = 2;
    let result = P.NBD_OK;
    let localErrno = 0;
    const replicator = this.replicator!;
    const settle = (nbdError: number): void => {
      if (result === P.NBD_OK) result = nbdError;
      pending -= 1;
      if (pending > 0) return;
      // Only now: a resync of the range must reach the peer after this request's own copy did.
      if (localErrno !== 0 && request.command !== NbdCommand.Flush) replicator.localWriteFailed?.(request, localErrno);
      finish(result);
    };
    replicator.replicate(request, (e) => {
      replicator.finishWrite?.(request);
      settle(e);
    });
    const runLocal = (): void =>
      this.runLocal(request, (local) => {
        localDone?.();
        localErrno = local;
        settle(P.nbdErrorFromErrno(local));
      });
    if (this.localAfterSends !== undefined) this.localAfterSends.push(runLocal);
    else runLocal();
  }

  /**
   * The local store failed a read with `localErrno`: under the range's write gate (no write to those
   * bytes in flight on either node), the peer's copy is what the local one should have returned.
   * When the peer cannot serve it either, the client gets the local error.
   */
  private readFromPeer(request: BlockRequest, localErrno: number, finish: (nbdError: number) => void): void {
    this.writeGate.enter(request.offsetBytes, request.lengthBytes, (release) => {
      const answer = (result: number): void => {
        release();
        if (result === 0 && !this.peerReadLogged) {
          this.peerReadLogged = true;
          this.log.warn(`the local store failed a read (errno ${-localErrno}) at ${request.offsetBytes}+${request.lengthBytes}: served from the peer; status counts further ones (mirror.readsFromPeer)`);
        }
        finish(P.nbdErrorFromErrno(result === 0 ? 0 : localErrno));
      };
      if (!this.replicator!.readFromPeer!(request, answer)) answer(localErrno);
    });
  }

  /** Run one request against the local store; `done` gets 0 or -errno. */
  private runLocal(request: BlockRequest, done: (result: number) => void): void {
    const store = this.store;
    const fua = (request.flags & P.NBD_CMD_FLAG_FUA) !== 0;
    switch (request.command) {
      case NbdCommand.Read:
        if (request.lengthBytes === 0) return done(0);
        if (store.runsSynchronously(request.lengthBytes, false)) return done(store.readSync(request.data, request.offsetBytes));
        return store.submit(StoreOp.Read, request.data, request.offsetBytes, request.lengthBytes, false, done);
      case NbdCommand.Write:
        if (request.lengthBytes === 0) return done(0);
        if (store.runsSynchronously(request.lengthBytes, fua)) return done(store.writeSync(request.data, request.offsetBytes));
        return store.submit(StoreOp.Write, request.data, request.offsetBytes, request.lengthBytes, fua, done);
      case NbdCommand.Flush:
        return store.submit(StoreOp.Flush, null, 0, 0, false, done);
      case NbdCommand.Trim:
        return this.thenFua(store.trimSync(request.offsetBytes, request.lengthBytes), fua, done);
      case NbdCommand.WriteZeroes:
        return this.thenFua(store.zeroSync(request.offsetBytes, request.lengthBytes), fua, done);
      default:
        return done(-22);
    }
  }

  /** FUA on TRIM / WRITE_ZEROES: make the change durable before replying. */
  private thenFua(result: number, fua: boolean, done: (result: number) => void): void {
    if (result !== 0 || !fua) return done(result);
    this.store.submit(StoreOp.Flush, null, 0, 0, false, done);
  }

  /** NBD rules: reads/trims past the end are EINVAL, writes/zeroes past the end ENOSPC, unknown commands EINVAL. */
  private validate(request: BlockRequest): number {
    const end = request.offsetBytes + request.lengthBytes;
    switch (request.command) {
      case NbdCommand.Read:
      case NbdCommand.Trim:
        if (end > this.store.sizeBytes) return P.NBD_EINVAL;
        break;
      case NbdCommand.Write:
      case NbdCommand.WriteZeroes:
        if (end > this.store.sizeBytes) return P.NBD_ENOSPC;
        break;
      case NbdCommand.Flush:
        break;
      default:
        return P.NBD_EINVAL;
    }
    if ((request.command === NbdCommand.Read || request.command === NbdCommand.Write) && request.data.length !== request.lengthBytes) {
      return P.NBD_EINVAL; // no buffer for it: longer than the payload cap
    }
    return P.NBD_OK;
  }

  private count(request: BlockRequest): void {
    switch (request.command) {
      case NbdCommand.Read:
        this.io.reads += 1;
        this.io.bytesRead += request.lengthBytes;
        break;
      case NbdCommand.Write:
        this.io.writes += 1;
        this.io.bytesWritten += request.lengthBytes;
        break;
      case NbdCommand.Flush:
        this.io.flushes += 1;
        break;
      case NbdCommand.Trim:
        this.io.trims += 1;
        break;
      case NbdCommand.WriteZeroes:
        this.io.zeroes += 1;
        break;
      default:
        break;
    }
  }
}

/** Command name for log lines. */
export function commandName(command: number): string {
  const names = ['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES', 'BLOCK_STATUS'];
  return names[command] ?? `UNKNOWN(${command})`;
}
