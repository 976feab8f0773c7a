/**
 * Orders overlapping modifying operations: an operation that overlaps one still running (or one
 * queued before it) waits; non-overlapping operations run concurrently. Used wherever the local
 * apply order must equal the order in which operations were sent to the peer.
 */

interface GatedOp {
  startBytes: number;
  endBytes: number;
  start: () => void;
}

/** Called when an operation may run; it calls `release` exactly once when the operation is done. */
export type GatedStart = (release: () => void) => void;

export class RangeGate {
  private readonly running: GatedOp[] = [];
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
    const op: GatedOp = { startBytes: offsetBytes, endBytes: offsetBytes + Math.max(lengthBytes, 1), start: () => start(release) };
    let released = false;
    const release = (): void => {
      if (released) throw new Error('RangeGate: released twice');
      released = true;
      // Running ops are unordered: the last one takes the released one's place (no shifting).
      const i = this.running.indexOf(op);
      if (i >= 0) {
        const last = this.running.pop()!;
        if (i < this.running.length) this.running[i] = last;
      }
      this.admitWaiting();
    };
    if (this.conflicts(op, this.running) || this.conflicts(op, this.waiting)) {
      this.waitedCount += 1;
      this.waiting.push(op);
    } else {
      this.running.push(op);
      op.start();
    }
  }

  get runningCount(): number {
    return this.running.length;
  }

  get waitingCount(): number {
    return this.waiting.length;
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
          if (!this.conflicts(op, this.running) && !this.conflicts(op, this.waiting.slice(0, i))) {
            this.waiting.splice(i, 1);
            this.running.push(op);
            op.start();
          } else {
            i += 1;
          }
        }
      } while (this.admitAgain);
    } finally {
      this.admitting = false;
    }
  }

  private conflicts(op: GatedOp, others: GatedOp[]): boolean {
    for (const o of others) {
      if (o !== op && o.startBytes < op.endBytes && op.startBytes < o.endBytes) return true;
    }
    return false;
  }
}
