/**
 * Orders overlapping modifying operations: an operation that overlaps one still running (or one
 * queued before it) waits; non-overlapping operations run concurrently. Used wherever the local
 * apply order must equal the order in which operations were sent to the peer.
 */

/** Called when an operation may run; it calls `release` exactly once when the operation is done. */
export type GatedStart = (release: () => void) => void;

/** One operation in the gate, [startBytes, endBytes). */
class GatedOp {
  released = false;
  /** Handed to the operation's start: ends it. */
  readonly release = (): void => this.gate.finish(this);

  constructor(
    private readonly gate: RangeGate,
    readonly startBytes: number,
    readonly endBytes: number,
    readonly start: GatedStart,
  ) {}
}

export class RangeGate {
  /**
   * Running operations sorted by start. Two running operations never overlap (an operation starts
   * only when it overlaps none), so their ends are sorted too and one binary search finds the only
   * candidate for an overlap: a resync keeps hundreds of runs in the gate, and a scan of them all
   * for every application write and every run cost more than the rest of the engine's work.
   */
  private readonly running: GatedOp[] = [];
  /** Operations waiting, in arrival order; they may overlap one another. */
  private readonly waiting: GatedOp[] = [];
  /** Operations that ever had to wait (status / tests). */
  waitedCount = 0;
  private admitting = false;
  private admitAgain = false;

  /**
   * Run `start` now if [offset, offset+length) overlaps nothing running or waiting, else later in
   * arrival order.
   */
  enter(offsetBytes: number, lengthBytes: number, start: GatedStart): void {
    const op = new GatedOp(this, offsetBytes, offsetBytes + Math.max(lengthBytes, 1), start);
    if (overlapsAnyBefore(op, this.waiting, this.waiting.length) || this.overlapsRunning(op)) {
      this.waitedCount += 1;
      this.waiting.push(op);
    } else {
      this.startRunning(op);
    }
  }

  get runningCount(): number {
    return this.running.length;
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  /** An operation's release: it leaves the running set, and what waited for it may start. */
  finish(op: GatedOp): void {
    if (op.released) throw new Error('RangeGate: released twice');
    op.released = true;
    const i = this.firstEndingAfter(op.startBytes);
    if (this.running[i] !== op) throw new Error('RangeGate: released an operation that is not running');
    this.running.splice(i, 1);
    if (this.waiting.length > 0) this.admitWaiting();
  }

  private startRunning(op: GatedOp): void {
    this.running.splice(this.firstEndingAfter(op.startBytes), 0, op);
    op.start(op.release);
  }

  /** Index of the first running operation that ends after `offsetBytes` (running.length if none). */
  private firstEndingAfter(offsetBytes: number): number {
    let low = 0;
    let high = this.running.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.running[mid]!.endBytes > offsetBytes) high = mid;
      else low = mid + 1;
    }
    return low;
  }

  private overlapsRunning(op: GatedOp): boolean {
    const candidate = this.running[this.firstEndingAfter(op.startBytes)];
    return candidate !== undefined && candidate.startBytes < op.endBytes;
  }

  /** Start every waiting op that no longer overlaps a running op or an earlier waiting op. */
  private admitWaiting(): void {
    if (this.admitting) {
      this.admitAgain = true; // a release from inside op.start(): rescan after the current pass
      return;
    }
    this.admitting = true;
    try {
      do {
        this.admitAgain = false;
        for (let i = 0; i < this.waiting.length; ) {
          const op = this.waiting[i]!;
          if (!this.overlapsRunning(op) && !overlapsAnyBefore(op, this.waiting, i)) {
            this.waiting.splice(i, 1);
            this.startRunning(op);
          } else {
            i += 1;
          }
        }
      } while (this.admitAgain);
    } finally {
      this.admitting = false;
    }
  }
}

/** Whether `op` overlaps any of ops[0..count). */
function overlapsAnyBefore(op: GatedOp, ops: GatedOp[], count: number): boolean {
  for (let i = 0; i < count; i++) {
    const o = ops[i]!;
    if (o.startBytes < op.endBytes && op.startBytes < o.endBytes) return true;
  }
  return false;
}
