/**
 * Test-only helpers: a raw NBD transmission-phase client over a unix socket, and a harness that hands the
 * server end of that socket to the native addon exactly as the server code does.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ConnectionEnd, NativeBinding, NativeNbdConnection, NbdConnectionOptions, PoolInfo, RequestBatch } from '../../src/native';

export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const REQUEST_HEADER_BYTES = 28;
export const REPLY_HEADER_BYTES = 16;
/** NBD error number for EINVAL. */
export const NBD_EINVAL = 22;

/** Pool size the native tests ask for when they are the first to initialize the process-wide pool. */
const TEST_SLOT_BYTES = 64 * 1024;
const TEST_SLOT_COUNT = 16;

/** The process-wide pool: created with the test sizes, or whatever another test file created first. */
export function sharedPool(native: NativeBinding): PoolInfo {
  try {
    return native.initPool(TEST_SLOT_BYTES, TEST_SLOT_COUNT);
  } catch (error) {
    const match = /initialized as (\d+) x (\d+)/.exec(String((error as Error).message));
    if (match === null) throw error;
    return native.initPool(Number(match[1]), Number(match[2]));
  }
}

/** Encode one request header (big-endian). */
export function encodeRequest(type: number, cookie: bigint, offset: bigint, length: number, flags = 0, magic = REQUEST_MAGIC): Buffer {
  const header = Buffer.alloc(REQUEST_HEADER_BYTES);
  header.writeUInt32BE(magic, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(cookie, 8);
  header.writeBigUInt64BE(offset, 16);
  header.writeUInt32BE(length, 24);
  return header;
}

export interface Reply {
  error: number;
  cookie: bigint;
  payload: Buffer;
}

/** Client side: writes raw requests, parses simple replies (it knows which cookies expect read data). */
export class NbdTestClient {
  private received = Buffer.alloc(0);
  private readonly readLengths = new Map<bigint, number>();
  private readonly replies: Reply[] = [];
  private waiters: (() => void)[] = [];
  closed = false;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.parse();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** Send a request; for reads remember the length so the reply payload can be split off. */
  send(type: number, cookie: bigint, offset: bigint, length: number, payload?: Buffer, flags = 0): void {
    if (type === 0) this.readLengths.set(cookie, length);
    this.socket.write(encodeRequest(type, cookie, offset, length, flags));
    if (payload !== undefined) this.socket.write(payload);
  }

  /** Resolve once `count` replies arrived in total (or the socket closed). */
  async waitReplies(count: number): Promise<Reply[]> {
    while (this.replies.length < count && !this.closed) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.replies.slice(0, count);
  }

  async waitClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  private parse(): void {
    while (this.received.length >= REPLY_HEADER_BYTES) {
      const magic = this.received.readUInt32BE(0);
      if (magic !== SIMPLE_REPLY_MAGIC) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
      const error = this.received.readUInt32BE(4);
      const cookie = this.received.readBigUInt64BE(8);
      const readLength = this.readLengths.get(cookie);
      const payloadBytes = error === 0 && readLength !== undefined ? readLength : 0;
      if (this.received.length < REPLY_HEADER_BYTES + payloadBytes) return;
      const payload = Buffer.from(this.received.subarray(REPLY_HEADER_BYTES, REPLY_HEADER_BYTES + payloadBytes));
      this.received = this.received.subarray(REPLY_HEADER_BYTES + payloadBytes);
      this.readLengths.delete(cookie);
      this.replies.push({ error, cookie, payload });
    }
    this.wake();
  }
}

/** One decoded row of a RequestBatch. */
export interface Row {
  tag: number;
  command: number;
  flags: number;
  offset: number;
  length: number;
  slot: number;
  largeBuffer: Buffer | null;
}

/** Decode a batch into rows. */
export function decodeBatch(batch: RequestBatch): Row[] {
  const rows: Row[] = [];
  for (let i = 0; i < batch.count; i++) {
    const at = i * 6;
    rows.push({
      tag: batch.rows[at]!,
      command: batch.rows[at + 1]!,
      flags: batch.rows[at + 2]!,
      offset: batch.rows[at + 3]!,
      length: batch.rows[at + 4]!,
      slot: batch.rows[at + 5]!,
      largeBuffer: batch.largeBuffers === null ? null : batch.largeBuffers[i] ?? null,
    });
  }
  return rows;
}

/** A native connection plus the client driving it, with the callbacks recorded. */
export interface Harness {
  connection: NativeNbdConnection;
  client: NbdTestClient;
  batches: Row[][];
  /** Called for every batch after it is recorded (tests install their own JS "server" here). */
  onRows: (rows: Row[]) => void;
  closed: Promise<ConnectionEnd>;
  closeCount: () => number;
  dispose: () => void;
}

/** Create a unix socket pair through a listening server in a temp dir and open a native connection on it. */
export async function openHarness(
  native: NativeBinding,
  options: Partial<Omit<NbdConnectionOptions, 'fd'>> = {},
): Promise<Harness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-native-'));
  const socketPath = path.join(dir, 'nbd.sock');
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const clientSocket = net.connect(socketPath);
  await new Promise<void>((resolve) => clientSocket.once('connect', resolve));
  const serverSocket = await accepted;
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });

  let closeCount = 0;
  let resolveClosed!: (end: ConnectionEnd) => void;
  const closed = new Promise<ConnectionEnd>((resolve) => (resolveClosed = resolve));
  const harness = {
    batches: [] as Row[][],
    onRows: (_rows: Row[]) => undefined,
    closed,
    closeCount: () => closeCount,
  } as Partial<Harness> as Harness;
  const fd = (serverSocket as unknown as { _handle: { fd: number } })._handle.fd;
  harness.connection = native.openConnection(
    { fd, payloadBytesMax: options.payloadBytesMax ?? 1024 * 1024, name: options.name ?? 'test', initialBytes: options.initialBytes },
    (batch) => {
      const rows = decodeBatch(batch);
      harness.batches.push(rows);
      harness.onRows(rows);
    },
    (end) => {
      closeCount++;
      resolveClosed(end);
    },
  );
  serverSocket.destroy(); // native holds its own dup of the fd
  harness.client = new NbdTestClient(clientSocket);
  harness.dispose = () => {
    clientSocket.destroy();
    harness.connection.close();
  };
  return harness;
}

/** Resolve when predicate() holds, polling the event loop (no absolute time assertions). */
export async function until(predicate: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
