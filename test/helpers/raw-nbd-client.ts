/**
 * A deliberately low-level NBD client for tests: performs the fixed-newstyle handshake with
 * NBD_OPT_GO (or any option sequence) and then sends raw, possibly malformed, requests.
 */
import * as net from 'node:net';

export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;

export interface SimpleReply {
  error: number;
  cookie: bigint;
}

export class RawNbdClient {
  private buffered = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** Connect to a unix socket path. */
  static async connect(path: string): Promise<RawNbdClient> {
    const socket = net.createConnection(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawNbdClient(socket);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Read exactly n bytes, or reject if the connection closes first. */
  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < n) {
      if (this.closed) throw new Error(`connection closed with ${this.buffered.length}/${n} bytes`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  /** Resolves when the server closes the connection (or rejects after the timeout). */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('server did not close the connection');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  /** Read the server greeting and send client flags (fixed newstyle + no zeroes). */
  async greet(clientFlags = 3): Promise<{ handshakeFlags: number }> {
    const greeting = await this.read(18);
    if (greeting.toString('latin1', 0, 8) !== 'NBDMAGIC') throw new Error('bad server magic');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFlags, 0);
    this.write(flags);
    return { handshakeFlags: greeting.readUInt16BE(16) };
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async readOptionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
    const length = h.readUInt32BE(16);
    const data = length > 0 ? await this.read(length) : Buffer.alloc(0);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  /** NBD_OPT_GO on the default export; returns size and transmission flags. */
  async go(name = ''): Promise<{ sizeBytes: number; flags: number }> {
    const nameBytes = Buffer.from(name);
    const data = Buffer.alloc(4 + nameBytes.length + 2);
    data.writeUInt32BE(nameBytes.length, 0);
    nameBytes.copy(data, 4);
    this.sendOption(7, data);
    let sizeBytes = -1;
    let flags = -1;
    for (;;) {
      const reply = await this.readOptionReply();
      if (reply.type === 1) break; // ACK
      if (reply.type !== 3) throw new Error(`GO failed: reply type 0x${reply.type.toString(16)} ${reply.data.toString()}`);
      if (reply.data.readUInt16BE(0) === 0) {
        sizeBytes = Number(reply.data.readBigUInt64BE(2));
        flags = reply.data.readUInt16BE(10);
      }
    }
    return { sizeBytes, flags };
  }

  /** Send one request header (+ payload) with arbitrary fields. */
  sendRequest(type: number, cookie: bigint, offset: bigint, length: number, payload?: Buffer, options: { magic?: number; flags?: number } = {}): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(options.magic ?? REQUEST_MAGIC, 0);
    h.writeUInt16BE(options.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(offset, 16);
    h.writeUInt32BE(length, 24);
    this.write(payload === undefined ? h : Buffer.concat([h, payload]));
  }

  async readSimpleReply(): Promise<SimpleReply> {
    const r = await this.read(16);
    if (r.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error(`bad reply magic 0x${r.readUInt32BE(0).toString(16)}`);
    return { error: r.readUInt32BE(4), cookie: r.readBigUInt64BE(8) };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Handshake + GO in one call. */
export async function connectTransmission(path: string): Promise<{ client: RawNbdClient; sizeBytes: number; flags: number }> {
  const client = await RawNbdClient.connect(path);
  await client.greet();
  const { sizeBytes, flags } = await client.go();
  return { client, sizeBytes, flags };
}
