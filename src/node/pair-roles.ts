/**
 * The pair side of a node: its metadata, its role (primary: a mirror dialing the peer; secondary:
 * a replica listening for the primary), and the role changes an operator asks for: promote,
 * demote, resolving a split brain by discarding this node's changes (saved to a file first), and
 * online verify.
 */
import * as fs from 'node:fs';
import { MetadataFile } from '../meta';
import { NodeMetadata } from './node-metadata';
import { PrimaryMirror } from '../mirror/primary-mirror';
import { SecondaryReplica } from '../mirror/secondary-replica';
import { GENERATION_NONE } from '../mirror/sync-decision';
import { randomId64 } from '../mirror/hello';
import { createLogger, type Logger } from '../util/log';
import type { NodeRuntime, PairOptions } from './runtime';
import { KEEPALIVE_INTERVAL_MS_DEFAULT, KEEPALIVE_TIMEOUT_MS_DEFAULT, RECONNECT_DELAY_MS } from '../limits';

export class RoleChangeError extends Error {
  override readonly name = 'RoleChangeError';
}

export class PairRoles {
  role: 'primary' | 'secondary';
  readonly meta: NodeMetadata;
  private mirror: PrimaryMirror | undefined;
  private replica: SecondaryReplica | undefined;
  private readonly log: Logger = createLogger('pair');
  private readonly keepaliveIntervalMs: number;
  private readonly keepaliveTimeoutMs: number;
  /** Set when this node must not serve (a newer primary exists). */
  staleReason: string | undefined;

  constructor(
    private readonly node: NodeRuntime,
    private readonly options: PairOptions,
  ) {
    const configuredRole = node.options.role;
    if (configuredRole === 'standalone') throw new Error('a pair node is primary or secondary');
    this.role = configuredRole;
    this.keepaliveIntervalMs = node.options.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS_DEFAULT;
    this.keepaliveTimeoutMs = node.options.keepaliveTimeoutMs ?? KEEPALIVE_TIMEOUT_MS_DEFAULT;
    const store = node.store;
    let file: MetadataFile;
    if (options.forceNewMetadata) {
      // A secondary's content counts as unknown: a full sync from its primary replaces it. A primary's
      // content becomes the pair's data under a new generation (DRBD's `primary --force` for a first
      // sync): a secondary that is empty or unknown gets a full sync from it, and one that holds other
      // data refuses it as unrelated until `resolve --discard-my-data` is run there.
      const authoritative = this.role === 'primary';
      file = MetadataFile.create(store.path, { volumeSizeBytes: store.sizeBytes, regionBytes: options.regionBytes, diskState: authoritative ? 'upToDate' : 'inconsistent', role: this.role });
      file.generations = { current: authoritative ? randomId64() : GENERATION_NONE, bitmap: GENERATION_NONE, history0: GENERATION_NONE, history1: GENERATION_NONE };
      file.persistSync();
      this.log.warn(authoritative
        ? `new metadata written for ${store.path}: its content is the pair's data from now on; a secondary whose content is unknown or empty gets a full sync from it`
        : `new metadata written for ${store.path}: its content counts as unknown and will be replaced by a full sync from the peer`);
    } else {
      file = MetadataFile.open(store.path, {
        volumeSizeBytes: store.sizeBytes,
        storeCreated: store.createdEmpty,
        regionBytes: options.regionBytes,
        initialDiskState: 'upToDate',
        initialRole: this.role,
      });
    }
    this.meta = new NodeMetadata(file);
    if (!file.created && !file.cleanShutdown) {
      const extents = this.meta.recoverActivityLog();
      this.log.warn(`${file.path}: the node did not shut down cleanly; ${extents} activity-log extents marked out of sync`);
    }
    file.cleanShutdown = false;
    file.role = this.role;
    file.persistSync();
    node.control.on('promote', (request) => this.promote(request['force'] === true));
    node.control.on('demote', () => this.demote());
    node.control.on('verify', (request) => this.verify(request['resync'] === true));
    node.control.on('resolve', (request) => this.resolve(request['discardMyData'] === true));
    node.addStatusSection('peer', () => this.mirror?.peerStatus() ?? this.replica?.peerStatus() ?? { state: 'degraded', reason: 'no peer configured' });
    node.addStatusSection('mirror', () => this.mirror?.mirrorStatus() ?? this.replica?.mirrorStatus() ?? null);
    node.addStatusSection('disk', () => ({ state: this.meta.diskState }));
    node.addStatusSection('generation', () => {
      const g = this.meta.generations;
      return { current: hex(g.current), bitmap: hex(g.bitmap), history: [hex(g.history0), hex(g.history1)], epoch: Number(this.meta.epoch), nodeId: hex(this.meta.nodeId) };
    });
    node.addStatusSection('resync', () => {
      const r = this.mirror?.resync.status();
      return r === undefined
        ? { active: false, bytesTotal: 0, bytesDone: 0, bytesPerSecond: 0, percent: 100, outOfSyncBytes: this.meta.dirty.dirtyBytes }
        : { ...r, outOfSyncBytes: this.meta.dirty.dirtyBytes };
    });
  }

  /** Start in the configured role. A primary first asks its peer, and refuses to serve if a newer primary answers. */
  async start(): Promise<void> {
    if (this.options.listen !== undefined || this.role === 'secondary') await this.startListener();
    if (this.role === 'primary') {
      this.startMirror();
      const outcome = await Promise.race([
        this.mirror!.firstHandshake,
        new Promise<string>((resolve) => setTimeout(() => resolve('no answer yet'), this.keepaliveTimeoutMs + 500).unref()),
      ]);
      if (this.staleReason !== undefined) {
        throw new RoleChangeError(`refusing to serve as primary: ${this.staleReason}`);
      }
      this.log.info(`primary starting; peer: ${outcome}`);
    }
  }

  private async startListener(): Promise<void> {
    const listen = this.options.listen;
    if (listen === undefined) throw new RoleChangeError('a secondary needs --listen HOST:PORT');
    if (this.replica === undefined) {
      this.replica = new SecondaryReplica(
        this.node.store,
        this.meta,
        { listenHost: listen.host, listenPort: listen.port, keepaliveIntervalMs: this.keepaliveIntervalMs, keepaliveTimeoutMs: this.keepaliveTimeoutMs },
        createLogger('replica'),
      );
      await this.replica.listen();
    }
    this.replica.answerAsPrimary = this.role === 'primary';
  }

  private startMirror(): void {
    const peer = this.options.peer;
    if (peer === undefined) throw new RoleChangeError('a primary needs --peer HOST:PORT');
    this.mirror = new PrimaryMirror(
      {
        peerHost: peer.host,
        peerPort: peer.port,
        mode: this.options.mode,
        inlineThresholdBytes: this.options.inlineThresholdBytes,
        asyncWindowBytes: this.options.asyncWindowBytes,
        volumeSizeBytes: this.node.store.sizeBytes,
        keepaliveIntervalMs: this.keepaliveIntervalMs,
        keepaliveTimeoutMs: this.keepaliveTimeoutMs,
        ackTimeoutMs: this.keepaliveTimeoutMs,
        reconnectDelayMs: RECONNECT_DELAY_MS,
        resyncRateBytesPerSecond: this.options.resyncRateBytesPerSecond,
        resyncChecksum: this.options.resyncChecksum,
        resyncChannel: this.options.resyncChannel,
      },
      this.meta,
      this.node.store,
      this.node.controller.writeGate,
      (reason) => this.onStale(reason),
      createLogger('mirror'),
    );
    this.node.controller.setReplicator(this.mirror);
    this.mirror.start();
  }

  /** A newer primary exists: stop serving at once (writes from here would be refused or diverge). */
  private onStale(reason: string): void {
    if (this.staleReason !== undefined) return;
    this.staleReason = reason;
    this.log.error(`this node must not serve: ${reason}`);
    if (this.role === 'primary' && this.node.role === 'primary') void this.demote().catch((e: Error) => this.log.error(`demotion failed: ${e.message}`));
  }

  /** Secondary → primary: bump the epoch (older-epoch writes are refused from now on) and start serving. */
  async promote(force: boolean): Promise<Record<string, unknown>> {
    if (this.role === 'primary') throw new RoleChangeError('this node is already primary');
    // Incomplete data first: it is refused whether or not the peer is there.
    if (this.meta.diskState === 'inconsistent' && !force) {
      throw new RoleChangeError('this replica is inconsistent (a resync did not finish): promoting it would serve incomplete data; use --force to do it anyway');
    }
    if (this.replica?.primaryConnected && !force) {
      throw new RoleChangeError('the peer is connected and primary: demote it first, or use --force (two primaries means split brain)');
    }
    if (this.options.peer === undefined) throw new RoleChangeError('promotion needs the peer address: start the secondary with --peer HOST:PORT');
    if (this.node.options.nbdSocketPath === undefined && this.node.options.nbdTcp === undefined && this.node.options.devicePath === undefined) {
      throw new RoleChangeError('promotion needs somewhere to serve: start the secondary with --nbd-socket PATH (or --device)');
    }
    this.replica?.disconnectPrimary('this node is being promoted');
    this.meta.epoch = this.meta.epoch + 1n;
    this.role = 'primary';
    this.meta.file.role = 'primary';
    if (this.meta.diskState !== 'upToDate') this.meta.diskState = 'upToDate';
    await this.meta.persist();
    this.staleReason = undefined;
    if (this.replica !== undefined) this.replica.answerAsPrimary = true;
    this.startMirror();
    await this.node.startFrontEnds();
    this.log.info(`promoted to primary (epoch ${this.meta.epoch})`);
    return { role: 'primary', epoch: Number(this.meta.epoch) };
  }

  /** Primary → secondary: stop serving (in-flight requests finish), stop mirroring, listen for a primary. */
  async demote(): Promise<Record<string, unknown>> {
    if (this.role !== 'primary') throw new RoleChangeError('this node is not primary');
    await this.node.stopFrontEnds();
    await this.mirror?.drain();
    this.mirror?.stop();
    this.mirror = undefined;
    this.node.controller.setReplicator(undefined);
    this.role = 'secondary';
    this.meta.file.role = 'secondary';
    await this.meta.persist();
    if (this.options.listen !== undefined) await this.startListener();
    else this.log.warn('demoted without --listen: this node will not accept a primary until restarted with --listen');
    this.log.info('demoted to secondary');
    return { role: 'secondary' };
  }

  /**
   * Split brain: discard this node's changes since the split. They are saved first to
   * STORE.discarded-<time> (records of offset, length, data), then this node becomes a resync
   * target of the other one for its own changed regions and the other's.
   */
  async resolve(discardMyData: boolean): Promise<Record<string, unknown>> {
    if (!discardMyData) throw new RoleChangeError('resolve needs --discard-my-data on the node whose changes are to be discarded');
    if (this.role === 'primary') await this.demote();
    const saved = this.saveDivergedRegions();
    const g = this.meta.generations;
    this.meta.generations = { current: g.bitmap !== GENERATION_NONE ? g.bitmap : GENERATION_NONE, bitmap: GENERATION_NONE, history0: g.history0, history1: g.history1 };
    this.meta.diskState = 'outdated';
    // The other node's primary is the one to follow now, whatever epoch it carries.
    this.meta.epoch = 0n;
    await this.meta.persist();
    this.replica?.disconnectPrimary('split brain resolved: reconnect to resync');
    this.log.warn(`split brain resolved by discarding this node's changes: ${saved.regions} regions (${saved.bytes} bytes) saved to ${saved.path}; they will be overwritten by the peer's data`);
    return { savedTo: saved.path, regions: saved.regions, bytes: saved.bytes, generation: hex(this.meta.generations.current) };
  }

  /** Write every out-of-sync region's current data to a file before it is overwritten. */
  private saveDivergedRegions(): { path: string; regions: number; bytes: number } {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const path = `${this.node.store.path}.discarded-${stamp}`;
    const fd = fs.openSync(path, 'wx', 0o600);
    let regions = 0;
    let bytes = 0;
    try {
      const header = Buffer.from(`BMDISCARD1 volume=${this.node.store.sizeBytes} regionBytes=${this.meta.dirty.regionBytes}\n`, 'ascii');
      fs.writeSync(fd, header);
      const dirty = this.meta.dirty;
      for (let r = dirty.nextDirty(0); r >= 0; r = dirty.nextDirty(r + 1)) {
        const { offsetBytes, lengthBytes } = dirty.regionRange(r);
        const data = Buffer.alloc(lengthBytes);
        const result = this.node.store.readSync(data, offsetBytes);
        if (result !== 0) throw new Error(`reading region ${r} to save it failed (errno ${-result}); nothing discarded`);
        const record = Buffer.alloc(12);
        record.writeBigUInt64BE(BigInt(offsetBytes), 0);
        record.writeUInt32BE(lengthBytes, 8);
        fs.writeSync(fd, record);
        fs.writeSync(fd, data);
        regions += 1;
        bytes += lengthBytes;
      }
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    return { path, regions, bytes };
  }

  async verify(resync: boolean): Promise<Record<string, unknown>> {
    if (this.role !== 'primary' || this.mirror === undefined) throw new RoleChangeError('verify runs on the primary');
    return { ...(await this.mirror.verify(resync)) };
  }

  /** Clean shutdown: nothing is in flight any more; mark the metadata clean. */
  async shutdown(flushed: boolean): Promise<void> {
    await this.mirror?.drain();
    this.mirror?.stop();
    await this.replica?.close();
    if (flushed) {
      this.meta.clearActivityLog();
      this.meta.file.cleanShutdown = true;
    }
    await this.meta.persist();
    this.meta.file.close();
  }
}

function hex(v: bigint): string {
  return v.toString(16).padStart(16, '0');
}
