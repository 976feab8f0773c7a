/**
 * A running node: the store, the buffer pool, the controller, its front ends (NBD server, kernel
 * device), its pair role (primary mirror or secondary replica, with metadata) and the control
 * socket, with clean shutdown on SIGTERM/SIGINT.
 */
import { loadNative } from '../native';
import { BufferPool } from '../buffer-pool';
import { Controller } from '../controller';
import { LocalStore } from '../store/local-store';
import { NbdServer } from '../nbd/server';
import { KernelDevice } from './kernel-device';
import { ControlServer } from '../control/server';
import * as P from '../nbd/protocol';
import { BLOCK_SIZE_MIN_BYTES, BLOCK_SIZE_PREFERRED_BYTES, DIRECT_BLOCK_SIZE_MIN_BYTES, NBD_PAYLOAD_BYTES_MAX } from '../limits';
import { createLogger, type Logger } from '../util/log';
import { type MirrorMode } from '../mirror/primary-mirror';
import { useCrc32cImplementation } from '../wire';
import { PairRoles } from './pair-roles';

export type NodeRole = 'standalone' | 'primary' | 'secondary';

export interface NodeOptions {
  role: NodeRole;
  storePath: string;
  sizeBytes: number | undefined;
  direct: boolean;
  controlPath: string;
  nbdSocketPath: string | undefined;
  nbdTcp: { host: string; port: number } | undefined;
  devicePath: string | undefined;
  exportName: string;
  /** Pair nodes: how to mirror, where the peer is, where to listen. */
  pair?: PairOptions;
  keepaliveIntervalMs?: number;
  keepaliveTimeoutMs?: number;
}

export interface PairOptions {
  /** Where the peer listens (the primary dials it). Required for a primary. */
  peer: { host: string; port: number } | undefined;
  /** Where this node listens (a secondary for its primary; a primary to answer role conflicts). */
  listen: { host: string; port: number } | undefined;
  mode: MirrorMode;
  inlineThresholdBytes: number;
  asyncWindowBytes: number;
  regionBytes: number;
  resyncRateBytesPerSecond: number;
  resyncChecksum: boolean;
  /** Move resync data over a resync channel when the peer offers one (docs/wire-format.md 8.2). */
  resyncChannel: boolean;
  /** Replace the metadata file (the store's content becomes unknown: the peer will full-sync it). */
  forceNewMetadata: boolean;
}

/** Transmission flags we advertise: everything we implement; MULTI_CONN is safe since all connections share one store fd and flush covers every completed write. */
export function transmissionFlags(): number {
  return (
    P.NBD_FLAG_HAS_FLAGS |
    P.NBD_FLAG_SEND_FLUSH |
    P.NBD_FLAG_SEND_FUA |
    P.NBD_FLAG_SEND_TRIM |
    P.NBD_FLAG_SEND_WRITE_ZEROES |
    P.NBD_FLAG_CAN_MULTI_CONN
  );
}

export class NodeRuntime {
  readonly log: Logger = createLogger('node');
  readonly store: LocalStore;
  readonly pool: BufferPool;
  readonly controller: Controller;
  readonly control: ControlServer;
  readonly pair: PairRoles | undefined;
  private nbdServer: NbdServer | undefined;
  private kernelDevice: KernelDevice | undefined;
  private readonly startedAtMs = Date.now();
  private shuttingDown: Promise<void> | undefined;
  /** Extra sections of `status --json` contributed by other components. */
  private readonly statusSections = new Map<string, () => unknown>();

  constructor(readonly options: NodeOptions) {
    this.store = LocalStore.open({ path: options.storePath, sizeBytes: options.sizeBytes, direct: options.direct });
    try {
      this.pool = BufferPool.init();
      this.controller = new Controller(this.store, createLogger('controller'));
      this.control = new ControlServer(options.controlPath, createLogger('control'));
      this.control.on('status', () => this.status());
      if (options.pair !== undefined) this.pair = new PairRoles(this, options.pair);
    } catch (error) {
      this.store.close();
      throw error;
    }
  }

  /** Add a section to the status document. */
  addStatusSection(name: string, producer: () => unknown): void {
    this.statusSections.set(name, producer);
  }

  get role(): NodeRole {
    return this.pair?.role ?? 'standalone';
  }

  /** Bring up the control socket, the pair role and the front ends given in the options. */
  async start(): Promise<void> {
    const native = loadNative();
    native.setLogger((level, message) => createLogger('native')[level](message));
    useCrc32cImplementation((buf, seed) => native.crc32c(buf as Buffer, seed));
    await this.control.listen();
    if (this.pair !== undefined) await this.pair.start();
    if (this.role !== 'secondary') await this.startFrontEnds();
    this.log.info(`node ready: role=${this.role} store=${this.store.path} size=${this.store.sizeBytes} control=${this.options.controlPath}`);
  }

  /** Export the volume (NBD server and/or kernel device): a primary or standalone node only. */
  async startFrontEnds(): Promise<void> {
    if (this.options.nbdSocketPath !== undefined || this.options.nbdTcp !== undefined) {
      this.nbdServer = new NbdServer(
        {
          unixSocketPath: this.options.nbdSocketPath,
          tcp: this.options.nbdTcp,
          exported: {
            name: this.options.exportName,
            description: `blockmirror ${this.role} ${this.options.storePath}`,
            sizeBytes: this.store.sizeBytes,
            transmissionFlags: transmissionFlags(),
            blockSizeMinBytes: this.store.direct ? DIRECT_BLOCK_SIZE_MIN_BYTES : BLOCK_SIZE_MIN_BYTES,
            blockSizePreferredBytes: BLOCK_SIZE_PREFERRED_BYTES,
            blockSizeMaxBytes: NBD_PAYLOAD_BYTES_MAX,
          },
        },
        this.controller,
        this.pool,
        createLogger('nbd'),
      );
      await this.nbdServer.listen();
    }
    if (this.options.devicePath !== undefined) {
      this.kernelDevice = new KernelDevice(
        this.options.devicePath,
        this.controller,
        this.pool,
        transmissionFlags(),
        createLogger('kernel'),
        (message) => {
          this.log.warn(`${message}; shutting down`);
          void this.shutdown();
        },
      );
      this.kernelDevice.attach();
    }
  }

  /** Stop exporting the volume: in-flight requests finish first (demotion, shutdown). */
  async stopFrontEnds(): Promise<void> {
    await this.kernelDevice?.detach();
    this.kernelDevice = undefined;
    await this.nbdServer?.close();
    this.nbdServer = undefined;
    await this.controller.whenIdle();
  }

  /** Install SIGTERM/SIGINT handlers that shut down cleanly and exit. */
  installSignalHandlers(): void {
    const onSignal = (signal: string): void => {
      this.log.info(`${signal} received: shutting down`);
      this.shutdown().then(
        () => process.exit(0),
        (error: unknown) => {
          this.log.error(`shutdown failed: ${(error as Error).message}`);
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
  }

  /** In-flight requests finish, the store is flushed, metadata marked clean, sockets removed. Idempotent. */
  shutdown(): Promise<void> {
    if (this.shuttingDown === undefined) this.shuttingDown = this.doShutdown();
    return this.shuttingDown;
  }

  private async doShutdown(): Promise<void> {
    await this.stopFrontEnds();
    const flushed = await this.store.flush();
    if (flushed !== 0) this.log.error(`final flush of ${this.store.path} failed: errno ${-flushed}`);
    await this.pair?.shutdown(flushed === 0);
    this.store.close();
    await this.control.close();
    this.log.info('shutdown complete');
  }

  /** The status document (`blockmirror status --json`). */
  status(): Record<string, unknown> {
    const nbd = this.nbdServer?.stats();
    const kernel = this.kernelDevice?.stats();
    const doc: Record<string, unknown> = {
      role: this.role,
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.startedAtMs) / 1000),
      store: { path: this.store.path, size: this.store.sizeBytes, blockDevice: this.store.isBlockDevice, direct: this.store.direct },
      io: { ...this.controller.io, inFlight: this.controller.requestsInFlight, gateWaits: this.controller.writeGate.waitedCount },
      copiedPayloadBytes: loadNative().copiedPayloadBytes(),
      nbd: nbd === undefined ? null : {
        socket: this.options.nbdSocketPath ?? null,
        tcp: this.options.nbdTcp ?? null,
        connections: this.nbdServer!.connectionCount,
        requests: nbd.requests,
        batches: nbd.batches,
        requestsPerBatch: nbd.batches > 0 ? nbd.requests / nbd.batches : 0,
      },
      device: kernel === undefined ? null : { path: this.options.devicePath, requests: kernel.requests, batches: kernel.batches },
    };
    for (const [name, producer] of this.statusSections) doc[name] = producer();
    return doc;
  }
}
