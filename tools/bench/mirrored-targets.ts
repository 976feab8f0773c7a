// Mirrored targets: blockmirror primary/secondary, and QEMU's active mirror (qemu-storage-daemon
// blockdev-mirror copy-mode=write-blocking) to an NBD target, both across the veth between namespaces.
import * as path from 'node:path';
import { SECONDARY_COST_NOTE } from './results';
import { primaryCommand, readSecondaryStatus, readStatus, secondaryCommand, subcommandUnavailableReason } from './blockmirror-commands';
import { nbdUnixUri } from './fio-runner';
import { ADDRESS_B, NamespacePair } from './namespace-pair';
import { QmpClient } from './qmp-client';
import { ServerProcess } from './server-process';
import { programUnavailableReason } from './single-targets';
import { createSparseFile } from './sparse-file';
import { BenchTarget, RunningTarget, TargetContext } from './target-types';
import { retryUntil, SERVER_READY_TIMEOUT_MS, waitForNbdExport } from './wait-ready';

/** TCP port of the mirror's NBD target inside namespace B. */
const QEMU_MIRROR_TARGET_PORT = 10809;
/** The initial full copy of a sparse 1 GiB source is fast, but allow for a slow, busy machine. */
const MIRROR_READY_TIMEOUT_MS = 180_000;
const MIRROR_JOB_ID = 'bench-mirror';
const SOURCE_NODE = 'source';
const TARGET_NODE = 'target';

// The mirrored matrix only runs with its namespaces; this makes a missing pair a programming error.
function requireNamespaces(context: TargetContext): NamespacePair {
  if (!context.namespaces) throw new Error('mirrored target started without network namespaces');
  return context.namespaces;
}

// Starts a server inside one namespace; `ip netns exec` execs it, so the tracked pid is the server itself.
export function startInNamespace(context: TargetContext, namespaces: NamespacePair, side: 'a' | 'b', name: string, command: readonly string[]): ServerProcess {
  const [program, ...args] = [...namespaces.execPrefix(side), ...command];
  return ServerProcess.start(name, program as string, args, path.join(context.caseDir, `${name}.log`), context.cleanup);
}

// Stops servers newest first, then reports the first error (so every server is stopped even if one fails).
export async function stopAll(servers: readonly ServerProcess[]): Promise<void> {
  let firstError: unknown;
  for (const server of [...servers].reverse()) {
    try {
      await server.stop();
    } catch (error) {
      firstError ??= error;
    }
  }
  if (firstError) throw firstError;
}

// QMP arguments for the active mirror under test.
function mirrorArguments(): Record<string, unknown> {
  return { 'job-id': MIRROR_JOB_ID, device: SOURCE_NODE, target: TARGET_NODE, sync: 'full', 'copy-mode': 'write-blocking' };
}

// Confirms the mirror job still exists, is "ready" and has seen no I/O error.
async function checkMirrorJob(qmp: QmpClient): Promise<void> {
  const jobs = (await qmp.execute('query-block-jobs')) as Array<Record<string, unknown>>;
  const job = jobs.find((candidate) => candidate.device === MIRROR_JOB_ID);
  if (!job) throw new Error('QEMU mirror job disappeared during the measurement');
  if (job.status !== 'ready' || job['io-status'] !== 'ok') {
    throw new Error(`QEMU mirror job not healthy after the measurement: status=${String(job.status)} io-status=${String(job['io-status'])}`);
  }
}

// Brings up: nbdkit target in B, qemu-storage-daemon in A exporting the source, then the mirror until BLOCK_JOB_READY.
async function startQemuMirror(context: TargetContext): Promise<RunningTarget> {
  const namespaces = requireNamespaces(context);
  const sourcePath = path.join(context.caseDir, 'source.img');
  const replicaPath = path.join(context.caseDir, 'replica.img');
  const exportSocket = path.join(context.caseDir, 'nbd.sock');
  const qmpSocket = path.join(context.caseDir, 'qmp.sock');
  createSparseFile(sourcePath, context.sizeBytes);
  createSparseFile(replicaPath, context.sizeBytes);
  const servers: ServerProcess[] = [];
  let qmp: QmpClient | undefined;
  try {
    const targetServer = startInNamespace(context, namespaces, 'b', 'mirror-target-nbdkit', [
      'nbdkit', '--ipaddr', ADDRESS_B, '--port', String(QEMU_MIRROR_TARGET_PORT), '--foreground', '--exit-with-parent', 'file', replicaPath,
    ]);
    servers.push(targetServer);
    // Probed from namespace A so the veth path itself is proven before QEMU connects.
    await waitForNbdExport(`nbd://${ADDRESS_B}:${QEMU_MIRROR_TARGET_PORT}/`, targetServer, namespaces.execPrefix('a'));
    const daemon = startInNamespace(context, namespaces, 'a', 'qemu-storage-daemon', [
      'qemu-storage-daemon',
      '--blockdev', `driver=file,node-name=${SOURCE_NODE}-file,filename=${sourcePath},aio=threads,cache.direct=off`,
      '--blockdev', `driver=raw,node-name=${SOURCE_NODE},file=${SOURCE_NODE}-file`,
      '--blockdev', `driver=nbd,node-name=${TARGET_NODE},server.type=inet,server.host=${ADDRESS_B},server.port=${QEMU_MIRROR_TARGET_PORT}`,
      '--nbd-server', `addr.type=unix,addr.path=${exportSocket}`,
      '--export', `type=nbd,id=bench-export,node-name=${SOURCE_NODE},writable=on,name=`,
      '--chardev', `socket,id=qmp,path=${qmpSocket},server=on,wait=off`,
      '--monitor', 'chardev=qmp',
    ]);
    servers.push(daemon);
    const client = await retryUntil(() => {
      if (daemon.hasExited) throw new Error(daemon.describeExit());
      return QmpClient.connect(qmpSocket);
    }, SERVER_READY_TIMEOUT_MS, 'QMP connect');
    qmp = client;
    await client.execute('blockdev-mirror', mirrorArguments());
    await client.waitForEvent(
      (event) => {
        if (event.data?.device !== MIRROR_JOB_ID) return 'ignore';
        if (event.event === 'BLOCK_JOB_READY') return 'resolve';
        return event.event === 'BLOCK_JOB_COMPLETED' || event.event === 'BLOCK_JOB_ERROR' || event.event === 'BLOCK_JOB_CANCELLED' ? 'reject' : 'ignore';
      },
      MIRROR_READY_TIMEOUT_MS,
      'BLOCK_JOB_READY',
    );
    const uri = nbdUnixUri(exportSocket);
    await waitForNbdExport(uri, daemon);
    return {
      uri,
      checkStillValid: () => checkMirrorJob(client),
      stop: async () => {
        client.close();
        await stopAll(servers);
      },
      replicaFiles: [sourcePath, replicaPath],
    };
  } catch (error) {
    qmp?.close();
    await stopAll(servers);
    throw error;
  }
}

/** A fresh pair has nothing to resync, but the primary must first reach the secondary. */
const PAIR_IN_SYNC_TIMEOUT_MS = 60_000;

// Waits until the primary reports its peer connected with nothing out of sync: the state being measured.
export async function waitForPairInSync(controlPath: string, primary: ServerProcess): Promise<void> {
  await retryUntil(async () => {
    if (primary.hasExited) throw new Error(primary.describeExit());
    const status = await readStatus(controlPath);
    if (status.mirror?.mode !== 'sync') throw new Error(`primary mirrors in ${String(status.mirror?.mode)} mode, the benchmark measures sync`);
    if (status.peer?.state !== 'connected' || status.peer.outOfSyncBytes !== 0) {
      throw new Error(`peer state ${String(status.peer?.state)}, out of sync ${String(status.peer?.outOfSyncBytes)} bytes`);
    }
  }, PAIR_IN_SYNC_TIMEOUT_MS, 'primary connected and in sync with the secondary');
}

// After the measurement the pair must still be mirroring, with no write taken in degraded mode.
async function checkPairStillMirroring(controlPath: string, servers: readonly ServerProcess[]): Promise<void> {
  for (const server of servers) if (server.hasExited) throw new Error(server.describeExit());
  const status = await readStatus(controlPath);
  const degraded = status.mirror?.degradedWrites ?? 0;
  if (status.peer?.state !== 'connected' || degraded > 0 || (status.peer.outOfSyncBytes ?? 0) > 0) {
    throw new Error(
      `mirror not intact after the measurement: peer ${String(status.peer?.state)}, ${degraded} degraded writes, ` +
        `${String(status.peer?.outOfSyncBytes)} bytes out of sync`,
    );
  }
}

// The secondary's own counters over the whole case (prefill included): messages and wake-ups per write, copies.
async function describeSecondaryCost(controlPath: string): Promise<string> {
  const m = (await readSecondaryStatus(controlPath)).mirror ?? {};
  const figure = (x: number | undefined, digits: number): string => (typeof x === 'number' ? x.toFixed(digits) : '?');
  return `${SECONDARY_COST_NOTE}${figure(m.messagesPerWrite, 2)} messages, ${figure(m.wakeupsPerWrite, 2)} wake-ups, ` +
    `${figure(m.copiedBytesPerPayloadByte, 3)} copied bytes per payload byte (${m.writesApplied ?? '?'} writes)`;
}

// Brings up the secondary in B and the primary in A (each creating its own sparse store), then waits until they are in sync.
async function startBlockmirrorPair(context: TargetContext): Promise<RunningTarget> {
  const namespaces = requireNamespaces(context);
  const primaryStore = path.join(context.caseDir, 'primary.img');
  const secondaryStore = path.join(context.caseDir, 'secondary.img');
  const primaryControl = path.join(context.caseDir, 'primary.ctl');
  const socketPath = path.join(context.caseDir, 'nbd.sock');
  const servers: ServerProcess[] = [];
  try {
    const secondaryControl = path.join(context.caseDir, 'secondary.ctl');
    const secondary = startInNamespace(context, namespaces, 'b', 'blockmirror-secondary',
      secondaryCommand(secondaryStore, context.sizeBytes, ADDRESS_B, secondaryControl));
    servers.push(secondary);
    const primary = startInNamespace(context, namespaces, 'a', 'blockmirror-primary',
      primaryCommand(primaryStore, context.sizeBytes, socketPath, ADDRESS_B, primaryControl));
    servers.push(primary);
    const uri = nbdUnixUri(socketPath);
    await waitForNbdExport(uri, primary);
    await waitForPairInSync(primaryControl, primary);
    return {
      uri,
      checkStillValid: () => checkPairStillMirroring(primaryControl, servers),
      describeSecondaryCost: () => describeSecondaryCost(secondaryControl),
      stop: () => stopAll(servers),
      replicaFiles: [primaryStore, secondaryStore],
    };
  } catch (error) {
    await stopAll(servers);
    throw error;
  }
}

export const qemuMirrorTarget: BenchTarget = {
  id: 'qemu-mirror',
  matrix: 'mirrored',
  title: 'QEMU active mirror',
  isBlockmirror: false,
  settings:
    'qemu-storage-daemon in namespace A: file driver aio=threads cache.direct=off (page cache, like the single-node servers), ' +
    'raw format, NBD export on a unix socket; blockdev-mirror sync=full copy-mode=write-blocking (every guest write completes ' +
    'only after it reached the target) to an NBD client node; target = nbdkit file plugin on TCP in namespace B across the veth. ' +
    'Measured after BLOCK_JOB_READY; the job must still be ready with io-status ok afterwards.',
  unavailableReason: async () =>
    (await programUnavailableReason('qemu-storage-daemon', ['--version'])) ?? (await programUnavailableReason('nbdkit', ['--version'])),
  start: startQemuMirror,
};

export const blockmirrorPairTarget: BenchTarget = {
  id: 'blockmirror-pair',
  matrix: 'mirrored',
  title: 'blockmirror primary+secondary',
  isBlockmirror: true,
  settings:
    'node bin/blockmirror secondary --store FILE --size 1G --listen 10.213.0.2:PORT in namespace B; ' +
    'node bin/blockmirror primary --store FILE --size 1G --nbd-socket SOCK --peer 10.213.0.2:PORT in namespace A ' +
    '(defaults, i.e. --mode sync; each node creates its own sparse store). Measured once `blockmirror status` shows the peer ' +
    'connected with 0 bytes out of sync; afterwards the peer must still be connected with no degraded writes.',
  unavailableReason: async () => (await subcommandUnavailableReason('primary')) ?? (await subcommandUnavailableReason('secondary')),
  start: startBlockmirrorPair,
};
