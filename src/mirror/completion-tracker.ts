/**
 * The cumulative completion point of a stream of numbered writes (1, 2, 3, ...) that complete in
 * any order: `completeThrough` is the highest seq such that it and every seq before it completed.
 * The primary sends it to the secondary as WRITE_COMPLETE (docs/wire-format.md).
 *
 * Completions ahead of the point are marks in a ring indexed by seq, so the per-write path
 * allocates nothing (a Set of early seqs reallocated its table as it grew and shrank, a page fault
 * and a young-generation object on most ACKs). The ring doubles when a completion lands further
 * ahead than it spans (one write far slower than the thousands after it).
 */
export class CompletionTracker {
  private marks = new Uint8Array(1024);
  private through = 0;

  get completeThrough(): number {
    return this.through;
  }

  /** Start a new stream: nothing complete. */
  reset(): void {
    this.marks.fill(0);
    this.through = 0;
  }

  /** Write `seq` completed (once each, seq > completeThrough); returns the new completeThrough. */
  complete(seq: number): number {
    if (!Number.isSafeInteger(seq) || seq <= this.through) throw new RangeError(`completion of seq ${seq}, already complete through ${this.through}`);
    while (seq - this.through > this.marks.length) this.grow();
    const mask = this.marks.length - 1;
    if (seq === this.through + 1) {
      this.through = seq;
      // Completions that were waiting for this one.
      for (let next = seq + 1; this.marks[next & mask] === 1; next++) {
        this.marks[next & mask] = 0;
        this.through = next;
      }
      return this.through;
    }
    this.marks[seq & mask] = 1;
    return this.through;
  }

  private grow(): void {
    const old = this.marks;
    const oldMask = old.length - 1;
    const marks = new Uint8Array(old.length * 2);
    const mask = marks.length - 1;
    for (let seq = this.through + 1; seq <= this.through + old.length; seq++) {
      if (old[seq & oldMask] === 1) marks[seq & mask] = 1;
    }
    this.marks = marks;
  }
}
