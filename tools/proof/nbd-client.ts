/**
 * A small, self-contained NBD client for the proof tools: fixed-newstyle handshake with
 * NBD_OPT_GO, simple replies only (structured replies are never requested), and pipelined
 * READ / WRITE / FLUSH requests matched to their replies by cookie.
 */
import * as net from 'node:net';

const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
const NBD_IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
const NBD_OPTION_REPLY_MAGIC = 0x3e889045565a9n;
const NBD_REQUEST_MAGIC = 0x25609513;
const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
const NBD_FLAG_NO_ZEROES = 1 << 1;
const NBD_OPT_GO = 7;
const NBD_REP_ACK = 1;
const NBD_REP_INFO = 3;
const NBD_INFO_EXPORT = 0;
const NBD_REP_FLAG_ERROR = 2 ** 31;

/** Transmission flags the tools care about. */
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;

const NBD_CMD_READ = 0;
const NBD_CMD_WRITE = 1;
const NBD_CMD_DISC = 2;
const NBD_CMD_FLUSH = 3;
const NBD_CMD_FLAG_FUA = 1 << 0;

const GREETING_BYTES = 18;
const OPTION_REPLY_HEADER_BYTES = 20;
const REQUEST_HEADER_BYTES = 28;
const SIMPLE_REPLY_BYTES = 16;
/** Upper bound on one option reply payload; anything bigger is a broken server. */
const MAX_OPTION_REPLY_BYTES = 64 * 1024;
/** Handshake must finish within this time, or the server is considered unreachable. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Where the export lives: a unix socket path or a TCP host and port, plus the export name. */
export type NbdAddress = { kind: 'unix'; socketPath: string; exportName: string } | { kind: 'tcp'; host: string; port: number; exportName: string };

/** The connection to the server went away (closed, reset, or never completed). */
export class NbdConnectionLostError extends Error {}

/** The server answered a request with a non-zero NBD error number. */
export class NbdReplyError extends Error {
  constructor(
    readonly command: string,
    readonly nbdError: number,
  ) {
    super(`server answered ${command} with NBD error ${nbdError}`);
  }
}

interface PendingRequest {
  command: string;
  readLengthBytes: number;
  resolve: (data: Buffer) => void;
  reject: (error: Error) => void;
}

/** One NBD connection in the transmission phase. */
export class NbdClient {
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private readonly pending = new Map<bigint, PendingRequest>();
  private nextCookie = 1n;
  private lostError: Error | undefined;
  private handshakeWaiter: (() => void) | undefined;
  private transmission = false;
  /** Called once when the connection is lost, after all pending requests were rejected. */
  onLost: ((error: Error) => void) | undefined;

  private sizeBytes = 0;
  private flags = 0;

  private constructor(private readonly socket: net.Socket) {}

  /** Export size the server announced in NBD_INFO_EXPORT. */
  get exportSizeBytes(): number {
    return this.sizeBytes;
  }

  /** Transmission flags the server announced (NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, ...). */
  get transmissionFlags(): number {
    return this.flags;
  }

  /** Connect, negotiate with NBD_OPT_GO and return a client ready for requests. */
  static async connect(address: NbdAddress, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<NbdClient> {
    const socket = address.kind === 'unix' ? net.createConnection(address.socketPath) : net.createConnection(address.port, address.host);
    socket.setNoDelay(true);
    const client = new NbdClient(socket);
    client.attach();
    const timer = setTimeout(() => client.lose(new NbdConnectionLostError(`NBD handshake timed out after ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('close', () => reject(new NbdConnectionLostError(`cannot connect: ${client.lostError?.message ?? 'closed'}`)));
      });
      const { sizeBytes, flags } = await client.handshake(address.exportName);
      client.sizeBytes = sizeBytes;
      client.flags = flags;
      client.transmission = true;
      client.parseReplies();
      return client;
    } catch (error) {
      socket.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Wires socket events: data is buffered, close/error fail everything pending. */
  private attach(): void {
    this.socket.on('data', (data: Buffer) => {
      this.chunks.push(data);
      this.bufferedBytes += data.length;
      if (this.transmission) this.parseReplies();
      else this.handshakeWaiter?.();
    });
    this.socket.on('error', (error: Error) => this.lose(new NbdConnectionLostError(`connection error: ${error.message}`)));
    this.socket.on('close', () => this.lose(new NbdConnectionLostError('server closed the connection')));
  }

  /** Marks the connection lost once and rejects every request in flight. */
  private lose(error: Error): void {
    if (this.lostError !== undefined) return;
    this.lostError = error;
    this.socket.destroy();
    const requests = [...this.pending.values()];
    this.pending.clear();
    for (const request of requests) request.reject(error);
    this.handshakeWaiter?.();
    this.onLost?.(error);
  }

  /** True once the connection is gone. */
  get lost(): boolean {
    return this.lostError !== undefined;
  }

  /** Number of requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Removes and returns exactly n buffered bytes (caller checked they are there). */
  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bufferedBytes);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.bufferedBytes = rest.length;
    return out;
  }

  /** Handshake-phase read: waits for n bytes or fails when the connection is lost. */
  private async readExactly(n: number): Promise<Buffer> {
    while (this.bufferedBytes < n) {
      if (this.lostError !== undefined) throw this.lostError;
      await new Promise<void>((resolve) => (this.handshakeWaiter = resolve));
    }
    return Buffer.from(this.take(n));
  }

  /** Fixed-newstyle negotiation ending in NBD_OPT_GO on the named export. */
  private async handshake(exportName: string): Promise<{ sizeBytes: number; flags: number }> {
    const greeting = await this.readExactly(GREETING_BYTES);
    if (greeting.readBigUInt64BE(0) !== NBD_MAGIC || greeting.readBigUInt64BE(8) !== NBD_IHAVEOPT) {
      throw new NbdConnectionLostError('not a fixed-newstyle NBD server (bad greeting magic)');
    }
    const serverFlags = greeting.readUInt16BE(16);
    if ((serverFlags & NBD_FLAG_FIXED_NEWSTYLE) === 0) throw new NbdConnectionLostError('server does not offer fixed newstyle');
    const clientFlags = Buffer.alloc(4);
    clientFlags.writeUInt32BE(NBD_FLAG_FIXED_NEWSTYLE | (serverFlags & NBD_FLAG_NO_ZEROES), 0);
    const name = Buffer.from(exportName, 'utf8');
    const goData = Buffer.alloc(4 + name.length + 2); // name length, name, zero information requests
    goData.writeUInt32BE(name.length, 0);
    name.copy(goData, 4);
    const optionHeader = Buffer.alloc(16);
    optionHeader.writeBigUInt64BE(NBD_IHAVEOPT, 0);
    optionHeader.writeUInt32BE(NBD_OPT_GO, 8);
    optionHeader.writeUInt32BE(goData.length, 12);
    this.socket.write(Buffer.concat([clientFlags, optionHeader, goData]));
    let sizeBytes = -1;
    let flags = 0;
    for (;;) {
      const header = await this.readExactly(OPTION_REPLY_HEADER_BYTES);
      if (header.readBigUInt64BE(0) !== NBD_OPTION_REPLY_MAGIC) throw new NbdConnectionLostError('bad option reply magic');
      const type = header.readUInt32BE(12);
      const length = header.readUInt32BE(16);
      if (length > MAX_OPTION_REPLY_BYTES) throw new NbdConnectionLostError(`option reply of ${length} bytes is too large`);
      const data = length > 0 ? await this.readExactly(length) : Buffer.alloc(0);
      if (type === NBD_REP_ACK) break;
      if (type >= NBD_REP_FLAG_ERROR) {
        throw new NbdConnectionLostError(`server refused NBD_OPT_GO (reply 0x${type.toString(16)}${data.length > 0 ? `: ${data.toString('utf8')}` : ''})`);
      }
      if (type === NBD_REP_INFO && data.length >= 12 && data.readUInt16BE(0) === NBD_INFO_EXPORT) {
        sizeBytes = Number(data.readBigUInt64BE(2));
        flags = data.readUInt16BE(10);
      }
    }
    if (sizeBytes < 0) throw new NbdConnectionLostError('server finished NBD_OPT_GO without NBD_INFO_EXPORT');
    return { sizeBytes, flags };
  }

  /** Transmission phase: resolves every complete simple reply (with read payload) in the buffer. */
  private parseReplies(): void {
    while (this.bufferedBytes >= SIMPLE_REPLY_BYTES && this.lostError === undefined) {
      const head = this.chunks[0]!.length >= SIMPLE_REPLY_BYTES ? this.chunks[0]! : Buffer.concat(this.chunks, this.bufferedBytes);
      if (head.readUInt32BE(0) !== NBD_SIMPLE_REPLY_MAGIC) {
        this.lose(new NbdConnectionLostError(`bad reply magic 0x${head.readUInt32BE(0).toString(16)}`));
        return;
      }
      const error = head.readUInt32BE(4);
      const cookie = head.readBigUInt64BE(8);
      const request = this.pending.get(cookie);
      if (request === undefined) {
        this.lose(new NbdConnectionLostError(`reply for unknown cookie ${cookie}`));
        return;
      }
      const payloadBytes = error === 0 ? request.readLengthBytes : 0;
      if (this.bufferedBytes < SIMPLE_REPLY_BYTES + payloadBytes) return;
      this.take(SIMPLE_REPLY_BYTES);
      const payload = payloadBytes > 0 ? Buffer.from(this.take(payloadBytes)) : Buffer.alloc(0);
      this.pending.delete(cookie);
      if (error === 0) request.resolve(payload);
      else request.reject(new NbdReplyError(request.command, error));
    }
  }

  /** Sends one request and returns the promise of its reply. */
  private send(type: number, command: string, flags: number, offset: number, length: number, payload?: Buffer): Promise<Buffer> {
    if (this.lostError !== undefined) return Promise.reject(this.lostError);
    const cookie = this.nextCookie++;
    const header = Buffer.alloc(REQUEST_HEADER_BYTES);
    header.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(flags, 4);
    header.writeUInt16BE(type, 6);
    header.writeBigUInt64BE(cookie, 8);
    header.writeBigUInt64BE(BigInt(offset), 16);
    header.writeUInt32BE(length, 24);
    const reply = new Promise<Buffer>((resolve, reject) => {
      this.pending.set(cookie, { command, readLengthBytes: type === NBD_CMD_READ ? length : 0, resolve, reject });
    });
    this.socket.write(header);
    if (payload !== undefined) this.socket.write(payload);
    return reply;
  }

  /** NBD_CMD_WRITE, optionally with FUA. */
  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.send(NBD_CMD_WRITE, 'WRITE', fua ? NBD_CMD_FLAG_FUA : 0, offset, data.length, data).then(() => undefined);
  }

  /** NBD_CMD_READ of length bytes. */
  read(offset: number, length: number): Promise<Buffer> {
    return this.send(NBD_CMD_READ, 'READ', 0, offset, length);
  }

  /** NBD_CMD_FLUSH. */
  flush(): Promise<void> {
    return this.send(NBD_CMD_FLUSH, 'FLUSH', 0, 0, 0).then(() => undefined);
  }

  /** Batches several request writes into one socket write (writev). */
  corked(fn: () => void): void {
    this.socket.cork();
    try {
      fn();
    } finally {
      this.socket.uncork();
    }
  }

  /** Polite NBD_CMD_DISC then close; harmless if the connection is already gone. */
  async disconnect(): Promise<void> {
    if (this.lostError !== undefined) return;
    const header = Buffer.alloc(REQUEST_HEADER_BYTES);
    header.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(NBD_CMD_DISC, 6);
    this.lostError = new NbdConnectionLostError('disconnected by the client');
    await new Promise<void>((resolve) => this.socket.end(header, resolve));
    this.socket.destroy();
  }
}
