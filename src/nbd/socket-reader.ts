/** Awaitable exact-length reads from a net.Socket, for the negotiation phase only (not the hot path). */
import type { Socket } from 'node:net';

export class SocketClosedError extends Error {
  override readonly name = 'SocketClosedError';
}

/** Buffers incoming chunks and hands out exactly the number of bytes asked for. */
export class SocketReader {
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private waiter: { bytes: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.bufferedBytes += chunk.length;
      this.wake();
    });
    socket.on('end', () => this.fail(new SocketClosedError('client closed the connection')));
    socket.on('close', () => this.fail(new SocketClosedError('connection closed')));
    socket.on('error', (err) => this.fail(new SocketClosedError(`socket error: ${err.message}`)));
  }

  /** Resolve with exactly `bytes` bytes, or reject when the socket ends first. */
  read(bytes: number): Promise<Buffer> {
    if (this.waiter !== undefined) throw new Error('SocketReader: concurrent read');
    if (this.bufferedBytes >= bytes) return Promise.resolve(this.take(bytes));
    if (this.ended !== undefined) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      this.waiter = { bytes, resolve, reject };
    });
  }

  /** Stop reading from the socket and return whatever was read beyond the last read() (handover to native). */
  detach(): Buffer {
    this.socket.pause();
    this.socket.removeAllListeners('data');
    let extra: Buffer | null;
    while ((extra = this.socket.read() as Buffer | null) !== null) {
      this.chunks.push(extra);
      this.bufferedBytes += extra.length;
    }
    return this.take(this.bufferedBytes);
  }

  private take(bytes: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bufferedBytes);
    const result = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.bufferedBytes = rest.length;
    return result;
  }

  private wake(): void {
    const waiter = this.waiter;
    if (waiter !== undefined && this.bufferedBytes >= waiter.bytes) {
      this.waiter = undefined;
      waiter.resolve(this.take(waiter.bytes));
    }
  }

  private fail(error: Error): void {
    if (this.ended === undefined) this.ended = error;
    const waiter = this.waiter;
    if (waiter !== undefined) {
      this.waiter = undefined;
      waiter.reject(this.ended);
    }
  }
}
