/**
 * Receive memory for a peer connection: the socket reads (Node's `onread`) straight into large,
 * reused slabs instead of a fresh Buffer per read, and frames are cut from the slabs as views.
 *
 * Why: a fresh Buffer per socket read means fresh pages, and on virtual machines without hardware
 * page-table support every first touch of a page is a costly fault: receiving into new memory ran
 * at about 0.5 GB/s here, into reused memory at about 4 GB/s (same loopback socket).
 *
 * Ownership: a slab is the current read target until it runs out of room; each payload handed out
 * holds it (`hold`) until its user calls `release`; a slab that is neither current nor held goes
 * back to the free list for reuse. Heads and bodies are only valid during the callback that
 * delivers them. Before the reads move to a new slab, the frame reader's unframed bytes are copied
 * to its start (`FrameReader.relocateBuffered`), so no frame ever spans two slabs; a payload gets
 * room for all of its bytes in one slab before it is read (a payload larger than a slab gets a
 * slab of its own size), and near a slab's end reads stop at payload ends, so such moves are rare
 * and small.
 *
 * Slab memory outlives connections: a closed connection's free slabs (and held ones, once
 * released) go to a process-wide reserve that the next connection takes from, and a secondary
 * fills that reserve at start with slabs whose pages are already touched (`reserveReceiveSlabs`),
 * so a resync after a reconnect, when speed matters most, takes no page faults on its receive path
 * (16 MiB of fresh slab cost a 102 MiB resync about 80 ms of faults here).
 */
import type { FrameReader } from '../wire';

/** Size of an ordinary slab. */
export const RECEIVE_SLAB_BYTES = 8 * 1024 * 1024;
/** A read is offered at least this much room (a smaller tail moves the reads to a new slab). */
export const RECEIVE_READ_BYTES_MIN = 64 * 1024;
/**
 * Between frames the next frame's size is unknown until its head arrives, and a payload that then
 * finds too little room is moved (copied) to a new slab. So a slab is left once its room falls
 * below the largest payload a kernel block layer usually sends (1 MiB plus its heads): only larger
 * payloads are ever moved.
 */
export const RECEIVE_ROOM_BETWEEN_FRAMES_MIN = 1024 * 1024 + 64 * 1024;
/** Idle slabs kept for reuse, in bytes; more are dropped for the garbage collector. */
export const RECEIVE_IDLE_BYTES_MAX = 64 * 1024 * 1024;

/** Ordinary slabs kept between connections, pages already touched; at most RECEIVE_IDLE_BYTES_MAX. */
const reserve: Buffer[] = [];

/** Fill the process-wide reserve up to `count` ordinary slabs, touching every page now. */
export function reserveReceiveSlabs(count: number): void {
  while (reserve.length < count && (reserve.length + 1) * RECEIVE_SLAB_BYTES <= RECEIVE_IDLE_BYTES_MAX) {
    reserve.push(Buffer.allocUnsafeSlow(RECEIVE_SLAB_BYTES).fill(0));
  }
}

/** Slabs in the process-wide reserve (for tests). */
export function reservedReceiveSlabs(): number {
  return reserve.length;
}

interface Slab {
  memory: Buffer;
  /** Bytes received into the slab so far (the next read goes after them). */
  filled: number;
  /** Payloads handed out and not yet released. */
  holds: number;
  current: boolean;
}

export interface ReceiveSlabStats {
  slabsAllocated: number;
  bytesAllocated: number;
  slabsReused: number;
  slabsIdle: number;
  payloadsHeld: number;
}

export class ReceiveSlabs {
  private current: Slab;
  private readonly idle: Slab[] = [];
  private idleBytes = 0;
  private readonly byMemory = new Map<ArrayBuffer, Slab>();
  /** Payloads holding a slab (a second release of the same payload must not free another's hold). */
  private readonly held = new Set<Buffer>();
  readonly stats: ReceiveSlabStats = { slabsAllocated: 0, bytesAllocated: 0, slabsReused: 0, slabsIdle: 0, payloadsHeld: 0 };
  /** The connection is gone: free slabs go to the process-wide reserve, and nothing is read into pooled memory any more. */
  private closed = false;

  constructor(private readonly reader: FrameReader) {
    this.current = this.take(RECEIVE_SLAB_BYTES);
  }

  /**
   * Memory for the next socket read: the current slab's free tail, after moving to a new slab when
   * the tail is too small for a useful read or for the rest of the payload being received.
   */
  readTarget(): Buffer {
    if (this.closed) return Buffer.allocUnsafe(RECEIVE_READ_BYTES_MIN); // a late read lands in throwaway memory
    const due = this.reader.payloadBytesDue;
    const room = this.current.memory.length - this.current.filled;
    const betweenFrames = due === 0 && this.reader.bufferedBytes === 0;
    if (room < Math.max(RECEIVE_READ_BYTES_MIN, due, betweenFrames ? RECEIVE_ROOM_BETWEEN_FRAMES_MIN : 0)) this.moveToNewSlab(due);
    const target = this.current.memory.subarray(this.current.filled);
    // Near the end of a slab, a read stops where the payload ends: the next frame then starts a
    // new slab with nothing to move, instead of a partly read payload being copied there.
    if (due > 0 && target.length - due < RECEIVE_ROOM_BETWEEN_FRAMES_MIN) return target.subarray(0, due);
    return target;
  }

  /** `n` bytes arrived at the start of the last readTarget(); returns them as a view. */
  received(n: number): Buffer {
    const slab = this.current;
    const bytes = slab.memory.subarray(slab.filled, slab.filled + n);
    slab.filled += n;
    return bytes;
  }

  /** Keep the slab under `payload` (a view cut from it) from reuse until release(payload). */
  hold(payload: Buffer): void {
    const slab = this.byMemory.get(payload.buffer as ArrayBuffer);
    if (slab === undefined || this.held.has(payload)) return; // not slab memory (a copied frame), or held already
    this.held.add(payload);
    slab.holds += 1;
    this.stats.payloadsHeld += 1;
  }

  /** The payload's user is done with it; its slab may be reused once nothing else holds it. */
  release(payload: Buffer): void {
    if (!this.held.delete(payload)) return;
    const slab = this.byMemory.get(payload.buffer as ArrayBuffer)!;
    slab.holds -= 1;
    this.stats.payloadsHeld -= 1;
    this.recycleIfFree(slab);
  }

  private moveToNewSlab(due: number): void {
    const old = this.current;
    const keep = this.reader.bufferedBytes;
    const next = this.take(Math.max(RECEIVE_SLAB_BYTES, keep + due + RECEIVE_READ_BYTES_MIN));
    next.filled = this.reader.relocateBuffered(next.memory);
    this.current = next;
    old.current = false;
    this.recycleIfFree(old);
  }

  /** The connection closed: its free slabs go to the reserve now, its held ones when released. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const current = this.current;
    current.current = false;
    for (const slab of this.idle.splice(0)) this.toReserve(slab);
    this.idleBytes = 0;
    this.stats.slabsIdle = 0;
    this.recycleIfFree(current);
  }

  private take(bytes: number): Slab {
    if (bytes <= RECEIVE_SLAB_BYTES && this.idle.length === 0 && reserve.length > 0) {
      const slab: Slab = { memory: reserve.pop()!, filled: 0, holds: 0, current: true };
      this.byMemory.set(slab.memory.buffer as ArrayBuffer, slab);
      this.stats.slabsReused += 1;
      return slab;
    }
    const i = this.idle.findIndex((s) => s.memory.length >= bytes);
    if (i >= 0) {
      const slab = this.idle.splice(i, 1)[0]!;
      this.idleBytes -= slab.memory.length;
      this.stats.slabsIdle = this.idle.length;
      this.stats.slabsReused += 1;
      slab.filled = 0;
      slab.current = true;
      return slab;
    }
    const size = Math.ceil(bytes / RECEIVE_SLAB_BYTES) * RECEIVE_SLAB_BYTES;
    const slab: Slab = { memory: Buffer.allocUnsafeSlow(size), filled: 0, holds: 0, current: true };
    this.byMemory.set(slab.memory.buffer as ArrayBuffer, slab);
    this.stats.slabsAllocated += 1;
    this.stats.bytesAllocated += size;
    return slab;
  }

  private recycleIfFree(slab: Slab): void {
    if (slab.current || slab.holds > 0) return;
    if (this.closed) {
      this.toReserve(slab);
      return;
    }
    if (this.idleBytes + slab.memory.length > RECEIVE_IDLE_BYTES_MAX) {
      this.byMemory.delete(slab.memory.buffer as ArrayBuffer);
      return;
    }
    this.idle.push(slab);
    this.idleBytes += slab.memory.length;
    this.stats.slabsIdle = this.idle.length;
  }

  /** An ordinary slab nothing uses any more goes to the process-wide reserve (if there is room). */
  private toReserve(slab: Slab): void {
    this.byMemory.delete(slab.memory.buffer as ArrayBuffer);
    if (slab.memory.length === RECEIVE_SLAB_BYTES && (reserve.length + 1) * RECEIVE_SLAB_BYTES <= RECEIVE_IDLE_BYTES_MAX) reserve.push(slab.memory);
  }
}
