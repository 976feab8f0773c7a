/**
 * A running node: the store, the buffer pool, the controller, its front ends (NBD server, kernel
 * device) and the control socket, with clean shutdown on SIGTERM/SIGINT.
 */
import { loadNative } from '../native';
import { BufferPool } from '../buffer-pool';
import { Controller } from '../controller';
import { LocalStore } from '../store/local-store';
import { NbdServer } from '../nbd/server';
import { KernelDevice } from './kernel-device';
import { ControlServer } from '../control/server';
import * as P from '../nbd/protocol';
import { BLOCK_SIZE_MIN_BYTES, BLOCK_SIZE_PREFERRED_BYTES, NBD_PAYLOAD_BYTES_MAX } from '../limits';
import { createLogger, type Logger } from '../util/log';
import { PrimaryMirror, type MirrorMode } from '../mirror/primary-mirror';
import { SecondaryReplica } from '../mirror/secondary-replica';
import { randomId64 } from '../mirror/hello';
import { useCrc32cImplementation } from '../wire';

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
  /** Primary: where the secondary listens and how to mirror. */
  mirror?: MirrorOptions;
  /** Secondary: where to listen for the primary. */
  replica?: { listenHost: string; listenPort: number };
  keepaliveIntervalMs?: number;
  keepaliveTimeoutMs?: number;
}

export interface MirrorOptions {
  peerHost: string;
  peerPort: number;
  mode: MirrorMode;
  inlineThresholdBytes: number;
  asyncWindowBytes: number;
  regionBytes: number;
}

/** Defaults of the mirror's timing (DRBD-like: ping every second, give up after a few). */
export const KEEPALIVE_INTERVAL_MS_DEFAULT = 1000;
export const KEEPALIVE_TIMEOUT_MS_DEFAULT = 5000;
export const RECONNECT_DELAY_MS = 1000;

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
  private nbdServer: NbdServer | undefined;
  private kernelDevice: KernelDevice | undefined;
  private readonly startedAtMs = Date.now();
  private shuttingDown: Promise<void> | undefined;
  /** Primary role: the peer side of every write. */
  primaryMirror: PrimaryMirror | undefined;
  /** Secondary role: applies what the primary sends. */
  secondaryReplica: SecondaryReplica | undefined;
  readonly nodeId = randomId64();
  /** Extra sections of `status --json` contributed by other components (mirror, peer, ...). */
  private readonly statusSections = new Map<string, () => unknown>();

  constructor(readonly options: NodeOptions) {
    this.store = LocalStore.open({ path: options.storePath, sizeBytes: options.sizeBytes, direct: options.direct });
    this.pool = BufferPool.init();
    this.controller = new Controller(this.store, createLogger('controller'));
    this.control = new ControlServer(options.controlPath, createLogger('control'));
    this.control.on('status', () => this.status());
  }

  /** Add a section to the status document. */
  addStatusSection(name: string, producer: () => unknown): void {
    this.statusSections.set(name, producer);
  }

  /** Bring up the control socket and the front ends given in the options. */
  async start(): Promise<void> {
    const native = loadNative();
    native.setLogger((level, message) => createLogger('native')[level](message));
    useCrc32cImplementation((buf, seed) => native.crc32c(buf as Buffer, seed));
    await this.control.listen();
    this.startMirroring();
    if (this.options.nbdSocketPath !== undefined || this.options.nbdTcp !== undefined) {
      this.nbdServer = new NbdServer(
        {
          unixSocketPath: this.options.nbdSocketPath,
          tcp: this.options.nbdTcp,
          exported: {
            name: this.options.exportName,
            description: `blockmirror ${this.options.role} ${this.options.storePath}`,
            sizeBytes: this.store.sizeBytes,
            transmissionFlags: transmissionFlags(),
            blockSizeMinBytes: BLOCK_SIZE_MIN_BYTES,
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
    await this.secondaryReplica?.listen();
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
    this.log.info(`node ready: role=${this.options.role} store=${this.store.path} size=${this.store.sizeBytes} control=${this.options.controlPath}`);
  }

  /** Primary: attach the mirror to the controller. Secondary: listen for the primary. */
  private startMirroring(): void {
    const keepaliveIntervalMs = this.options.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS_DEFAULT;
    const keepaliveTimeoutMs = this.options.keepaliveTimeoutMs ?? KEEPALIVE_TIMEOUT_MS_DEFAULT;
    const mirror = this.options.mirror;
    if (mirror !== undefined) {
      this.primaryMirror = new PrimaryMirror(
        {
          ...mirror,
          volumeSizeBytes: this.store.sizeBytes,
          nodeId: this.nodeId,
          generation: randomId64(),
          storeCreatedEmpty: this.store.createdEmpty,
          epoch: 1n,
          keepaliveIntervalMs,
          keepaliveTimeoutMs,
          ackTimeoutMs: keepaliveTimeoutMs,
          reconnectDelayMs: RECONNECT_DELAY_MS,
        },
        createLogger('mirror'),
      );
      this.controller.setReplicator(this.primaryMirror);
      this.addStatusSection('peer', () => this.primaryMirror!.peerStatus());
      this.addStatusSection('mirror', () => this.primaryMirror!.mirrorStatus());
      this.primaryMirror.start();
    }
    const replica = this.options.replica;
    if (replica !== undefined) {
      this.secondaryReplica = new SecondaryReplica(
        this.store,
        { ...replica, nodeId: this.nodeId, storeCreatedEmpty: this.store.createdEmpty, keepaliveIntervalMs, keepaliveTimeoutMs },
        createLogger('replica'),
      );
      this.addStatusSection('peer', () => this.secondaryReplica!.peerStatus());
      this.addStatusSection('mirror', () => this.secondaryReplica!.mirrorStatus());
    }
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

  /** In-flight requests finish, the store is flushed, sockets removed. Idempotent. */
  shutdown(): Promise<void> {
    if (this.shuttingDown === undefined) this.shuttingDown = this.doShutdown();
    return this.shuttingDown;
  }

  /** Resolves when shutdown has completed (for the CLI to exit). */
  get finished(): Promise<void> | undefined {
    return this.shuttingDown;
  }

  private async doShutdown(): Promise<void> {
    await this.kernelDevice?.detach();
    await this.nbdServer?.close();
    await this.controller.whenIdle();
    await this.primaryMirror?.drain();
    this.primaryMirror?.stop();
    await this.secondaryReplica?.close();
    const flushed = await this.store.flush();
    if (flushed !== 0) this.log.error(`final flush of ${this.store.path} failed: errno ${-flushed}`);
    this.store.close();
    await this.control.close();
    this.log.info('shutdown complete');
  }

  /** The status document (`blockmirror status --json`). */
  status(): Record<string, unknown> {
    const nbd = this.nbdServer?.stats();
    const kernel = this.kernelDevice?.stats();
    const doc: Record<string, unknown> = {
      role: this.options.role,
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.startedAtMs) / 1000),
      store: { path: this.store.path, size: this.store.sizeBytes, blockDevice: this.store.isBlockDevice, direct: this.store.direct },
      io: { ...this.controller.io, inFlight: this.controller.requestsInFlight },
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
