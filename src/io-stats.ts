/** Counters of client I/O served by a node (status --json `io`). */
export interface IoStats {
  reads: number;
  writes: number;
  flushes: number;
  trims: number;
  zeroes: number;
  errors: number;
  bytesRead: number;
  bytesWritten: number;
}

export function newIoStats(): IoStats {
  return { reads: 0, writes: 0, flushes: 0, trims: 0, zeroes: 0, errors: 0, bytesRead: 0, bytesWritten: 0 };
}
