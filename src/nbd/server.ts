/**
 * NBD server front end: listens on a unix socket (mode 0600) and optionally TCP, negotiates each
 * client in TypeScript, then hands the socket to the native transmission phase, whose request
 * batches go to the controller.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { loadNative, type NativeNbdConnection, type NbdConnectionStats } from '../native';
import type { Controller, RequestSource } from '../controller';
import { negotiate, type ExportDescription } from './negotiation';
import { NBD_CONNECTIONS_MAX, NBD_NEGOTIATION_TIMEOUT_MS, NBD_PAYLOAD_BYTES_MAX } from '../limits';
import type { Logger } from '../util/log';
import type { BufferPool } from '../buffer-pool';
import { claimSocketPath, removeSocketFile } from '../util/socket-path';

export interface NbdServerOptions {
  unixSocketPath: string | undefined;
  tcp: { host: string; port: number } | undefined;
  exported: ExportDescription;
}

/** A client connection in the transmission phase. */
class ClientConnection implements RequestSource {
  native: NativeNbdConnection | undefined;
  constructor(
    readonly name: string,
    private readonly pool: BufferPool,
  ) {}
  complete(tag: number, nbdError: number): void {
    this.native!.complete(tag, nbdError);
  }
  slotBuffer(slot: number): Buffer {
    return this.pool.slot(slot);
  }
}

export class NbdServer {
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<ClientConnection>();
  private readonly negotiating = new Set<net.Socket>();
  private nextConnectionId = 1;
  /** Stats of connections that already ended, so totals survive disconnects. */
  private readonly endedTotals: NbdConnectionStats = { requests: 0, batches: 0, payloadBytesIn: 0, payloadBytesOut: 0, copiedPayloadBytes: 0, inFlight: 0 };
  private closing = false;
  private ownsUnixSocket = false;

  constructor(
    private readonly options: NbdServerOptions,
    private readonly controller: Controller,
    private readonly pool: BufferPool,
    private readonly log: Logger,
  ) {}

  /** Start listening on every configured address. */
  async listen(): Promise<void> {
    if (this.options.unixSocketPath !== undefined) {
      const path = this.options.unixSocketPath;
      await claimSocketPath(path, 'NBD socket');
      const server = this.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
      fs.chmodSync(path, 0o600);
      this.servers.push(server);
      this.ownsUnixSocket = true;
      this.log.info(`NBD listening on unix socket ${path}`);
    }
    if (this.options.tcp !== undefined) {
      const { host, port } = this.options.tcp;
      const server = this.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      this.servers.push(server);
      this.log.info(`NBD listening on tcp ${host}:${port}`);
    }
  }

  /** Address actually bound for TCP (port 0 picks one). */
  tcpPort(): number | undefined {
    for (const s of this.servers) {
      const a = s.address();
      if (a !== null && typeof a === 'object') return a.port;
    }
    return undefined;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Totals over live and ended connections. */
  stats(): NbdConnectionStats {
    const t = { ...this.endedTotals, inFlight: 0 };
    for (const c of this.connections) {
      if (c.native === undefined) continue;
      const s = c.native.stats();
      addStats(t, s);
      t.inFlight += s.inFlight;
    }
    return t;
  }

  /** Stop accepting, wait for in-flight requests, close client connections, remove the socket file. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const socket of this.negotiating) socket.destroy();
    await this.controller.whenIdle();
    for (const c of [...this.connections]) c.native?.close();
    if (this.ownsUnixSocket && this.options.unixSocketPath !== undefined) removeSocketFile(this.options.unixSocketPath);
  }

  private createServer(): net.Server {
    const server = net.createServer({ pauseOnConnect: false, allowHalfOpen: false }, (socket) => {
      void this.accept(socket);
    });
    server.on('error', (err) => this.log.error(`NBD listener error: ${err.message}`));
    return server;
  }

  private async accept(socket: net.Socket): Promise<void> {
    const name = `nbd#${this.nextConnectionId++}`;
    if (this.closing || this.connections.size + this.negotiating.size >= NBD_CONNECTIONS_MAX) {
      this.log.warn(`${name}: refused (${this.closing ? 'shutting down' : `${NBD_CONNECTIONS_MAX} connections already`})`);
      socket.destroy();
      return;
    }
    socket.on('error', () => undefined); // reported through negotiation outcome
    this.negotiating.add(socket);
    const timer = setTimeout(() => {
      this.log.warn(`${name}: negotiation timed out after ${NBD_NEGOTIATION_TIMEOUT_MS} ms`);
      socket.destroy();
    }, NBD_NEGOTIATION_TIMEOUT_MS);
    const outcome = await negotiate(socket, this.options.exported, this.log);
    clearTimeout(timer);
    this.negotiating.delete(socket);
    if (outcome.kind === 'closed') {
      this.log.info(`${name}: closed during negotiation: ${outcome.reason}`);
      return;
    }
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.startTransmission(name, socket, outcome.initialBytes);
  }

  /** Hand the negotiated socket's fd to native; JS no longer reads or writes it. */
  private startTransmission(name: string, socket: net.Socket, initialBytes: Buffer): void {
    const handle = (socket as unknown as { _handle?: { fd?: number } })._handle;
    const fd = handle?.fd;
    if (fd === undefined || fd < 0) {
      this.log.error(`${name}: cannot get the socket's file descriptor`);
      socket.destroy();
      return;
    }
    const connection = new ClientConnection(name, this.pool);
    this.connections.add(connection);
    connection.native = loadNative().openConnection(
      { fd, payloadBytesMax: NBD_PAYLOAD_BYTES_MAX, initialBytes, name },
      (batch) => this.controller.handleBatch(connection, batch),
      (end) => {
        addStats(this.endedTotals, connection.native!.stats());
        this.connections.delete(connection);
        const line = `${name}: ended (${end.reason}${end.message ? `: ${end.message}` : ''})`;
        if (end.reason === 'protocol' || end.reason === 'error') this.log.warn(line);
        else this.log.info(line);
      },
    );
    socket.destroy(); // native holds its own dup of the fd
    this.log.info(`${name}: transmission started`);
  }
}


/** Add one connection's cumulative counters to a total (in-flight is not cumulative: callers add it). */
function addStats(total: NbdConnectionStats, s: NbdConnectionStats): void {
  total.requests += s.requests;
  total.batches += s.batches;
  total.payloadBytesIn += s.payloadBytesIn;
  total.payloadBytesOut += s.payloadBytesOut;
  total.copiedPayloadBytes += s.copiedPayloadBytes;
}
