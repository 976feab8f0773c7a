// The resync section: a blockmirror pair across the benchmark's veth, the link cut and restored, a secondary
// replaced by an empty one, and application writes during a resync. Figures come from the primary's status.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PrimaryStatus, primaryCommand, queryStatus, secondaryCommand } from './blockmirror-commands';
import { CleanupRegistry } from './cleanup-registry';
import { findJob } from './fio-jobs';
import { nbdUnixUri, runFio, runMeasuredJob, runPrefill } from './fio-runner';
import { compareReplica } from './matrix-runner';
import { startInNamespace, stopAll, waitForPairInSync } from './mirrored-targets';
import { ADDRESS_B, NamespacePair } from './namespace-pair';
import { DirtyResyncFigures, FullSyncFigures, IopsDuringResyncFigures, ResyncReport, ScenarioOutcome } from './results';
import { ServerProcess } from './server-process';
import { TargetContext } from './target-types';
import { sleepMs, waitForNbdExport } from './wait-ready';
import {
  APPLICATION_JOB_ID, APPLICATION_RUNTIME_SEC_MAX, DIRTY_WRITE_BYTES, dirtyShareAsExpected, engineSeconds, REGION_BYTES,
  RESYNC_KEEPALIVE_TIMEOUT_MS, resyncRateFor, scatteredWriteArgs, secondaryDiskArgs, SPARSE_WRITE_BYTES,
} from './resync-workloads';
import { createSparseFile } from './sparse-file';
import { medianBy } from './median';
import { buildStreamFloor, namespaceEnds, runStreamFloor, streamFloorCommand, StreamShape } from './stream-floor';

/** Status polling interval while waiting for a state the bench times itself (a cut link noticed). */
const STATUS_POLL_INTERVAL_MS = 10;
/**
 * Polling interval while a resync runs. Resync times come from the primary's own timestamps
 * (resync.startedAt / finishedAt), so polling only has to see the end. Each status request costs the
 * primary about 0.7 ms of CPU, and the bench about as much: polled every 10 ms, a 130 ms resync on
 * two CPUs shared them with about a dozen requests.
 */
const RESYNC_POLL_INTERVAL_MS = 50;
/** A cut link must be noticed within the keepalive timeout plus slack. */
const DEGRADED_TIMEOUT_MS = RESYNC_KEEPALIVE_TIMEOUT_MS + 10_000;
/** Upper bound for an unthrottled resync of a 1 GiB volume on a slow, busy machine. */
const RESYNC_DONE_TIMEOUT_MS = 300_000;
/** Slack beyond the expected duration of a rate-limited resync. */
const RATE_LIMITED_SLACK_MS = 120_000;
/** Bounds for fio's unmeasured writes (~100 MiB scattered or 1 GiB sequential). */
const FIO_WRITE_TIMEOUT_MS = 180_000;

export interface ResyncRun {
  namespaces: NamespacePair;
  workDir: string;
  cleanup: CleanupRegistry;
  volumeBytes: number;
  /** Measured seconds and ramp of the fio job in the IOPS scenario. */
  runtimeSec: number;
  rampSec: number;
  reproduceCommand: string;
  log: (line: string) => void;
}

/** A running pair: the servers, their stores and control sockets, and the primary's NBD export. */
interface RunningPair {
  context: TargetContext;
  primary: ServerProcess;
  secondary: ServerProcess;
  primaryStore: string;
  secondaryStore: string;
  primaryControl: string;
  secondaryArgs: string[];
  uri: string;
}

// Starts the secondary in B and the primary in A, each creating a fresh sparse store, and waits until they are in sync.
async function startPair(run: ResyncRun, caseName: string, primaryExtra: readonly string[]): Promise<RunningPair> {
  const caseDir = path.join(run.workDir, 'resync', caseName);
  fs.mkdirSync(caseDir, { recursive: true });
  const context: TargetContext = { caseDir, sizeBytes: run.volumeBytes, cleanup: run.cleanup, namespaces: run.namespaces };
  const keepalive = ['--keepalive-timeout', String(RESYNC_KEEPALIVE_TIMEOUT_MS)];
  const primaryStore = path.join(caseDir, 'primary.img');
  const secondaryStore = path.join(caseDir, 'secondary.img');
  const primaryControl = path.join(caseDir, 'primary.ctl');
  const socketPath = path.join(caseDir, 'nbd.sock');
  const secondaryArgs = secondaryCommand(secondaryStore, run.volumeBytes, ADDRESS_B, path.join(caseDir, 'secondary.ctl'), keepalive);
  const secondary = startInNamespace(context, run.namespaces, 'b', 'blockmirror-secondary', secondaryArgs);
  let primary: ServerProcess | undefined;
  try {
    primary = startInNamespace(context, run.namespaces, 'a', 'blockmirror-primary',
      primaryCommand(primaryStore, run.volumeBytes, socketPath, ADDRESS_B, primaryControl, [...keepalive, ...primaryExtra]));
    const uri = nbdUnixUri(socketPath);
    await waitForNbdExport(uri, primary);
    await waitForPairInSync(primaryControl, primary);
    return { context, primary, secondary, primaryStore, secondaryStore, primaryControl, secondaryArgs, uri };
  } catch (error) {
    await stopAll(primary ? [secondary, primary] : [secondary]);
    throw error;
  }
}

// Polls the primary's status until `accept` holds; returns that status and when it was first seen (performance.now()).
async function waitForStatus(
  pair: RunningPair, accept: (status: PrimaryStatus) => boolean, timeoutMs: number, what: string, intervalMs = STATUS_POLL_INTERVAL_MS,
): Promise<{ status: PrimaryStatus; atMs: number }> {
  const deadline = performance.now() + timeoutMs;
  let last: PrimaryStatus | undefined;
  while (performance.now() < deadline) {
    for (const server of [pair.primary, pair.secondary]) if (server.hasExited) throw new Error(server.describeExit());
    last = await queryStatus(pair.primaryControl);
    if (accept(last)) return { status: last, atMs: performance.now() };
    await sleepMs(intervalMs);
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms; last status: peer ${String(last?.peer?.state)}, ` +
    `${String(last?.peer?.outOfSyncBytes)} bytes out of sync, resync active ${String(last?.resync?.active)}`);
}

// Seconds from sinceWallMs until the pair was whole: the primary's resync.finishedAt (bits cleared, peer connected),
// which the poll only sees later; the poll's own measure (polledMs) when the status has no finishedAt.
function secondsToInSync(finishedAt: string | null | undefined, sinceWallMs: number, polledMs: number): number {
  const finishedWallMs = Date.parse(finishedAt ?? '');
  return (Number.isFinite(finishedWallMs) ? finishedWallMs - sinceWallMs : polledMs) / 1000;
}

// The end state of a resync that started at or after sinceMs (wall clock): inactive, peer connected, nothing out of sync.
function resyncFinishedSince(sinceWallMs: number): (status: PrimaryStatus) => boolean {
  return (status) => {
    const started = Date.parse(status.resync?.startedAt ?? '');
    return status.resync?.active === false && status.peer?.state === 'connected' && status.peer.outOfSyncBytes === 0 &&
      Number.isFinite(started) && started >= sinceWallMs;
  };
}

// A cut link: the primary must notice it and run degraded.
function isDegraded(status: PrimaryStatus): boolean {
  return status.peer?.state === 'degraded';
}

// Stops both nodes (flushing their stores) and proves the replica equals the primary byte for byte.
async function stopAndCompare(pair: RunningPair, notes: string[]): Promise<void> {
  await stopAll([pair.secondary, pair.primary]);
  await compareReplica([pair.primaryStore, pair.secondaryStore]);
  notes.push('replica identical to the primary after the resync (cmp)');
  removeStores(pair);
}

// Deletes a finished pair's stores: their dirty page cache would otherwise be written back while the next
// scenario is measured (three link-cut runs in a row went 564, 194, 215 MiB/s, and fio alone on the disk
// from 2217 to 375 MiB/s, until each run's stores were deleted).
function removeStores(pair: RunningPair): void {
  for (const store of [pair.primaryStore, pair.secondaryStore]) fs.rmSync(store, { force: true });
}

// Runs a scenario, turning any error into a failed outcome and always stopping the pair and restoring the link.
async function runScenario<T>(
  run: ResyncRun, name: string, body: (notes: string[], hold: (pair: RunningPair) => void) => Promise<T>,
): Promise<ScenarioOutcome<T>> {
  const notes: string[] = [];
  let pair: RunningPair | undefined;
  run.log(`[resync] ${name} ...`);
  try {
    const figures = await body(notes, (started) => (pair = started));
    run.log(`[resync] ${name}: done`);
    return { status: 'ok', figures, notes };
  } catch (error) {
    run.log(`[resync] ${name}: failed: ${(error as Error).message}`);
    return { status: 'failed', reason: (error as Error).message, notes };
  } finally {
    await run.namespaces.setLinkUp(true).catch(() => undefined);
    const held = pair as RunningPair | undefined;
    // Already stopped on success (stop is idempotent); on failure this is what stops them.
    if (held) await stopAll([held.secondary, held.primary]).catch(() => undefined);
  }
}

/**
 * Scenario 1 runs this often, each time on a fresh pair: one resync of 102 MiB lasts about 80 ms, and on a shared
 * 2-vCPU machine single runs of it spread by ±30% (two sections of the same build, ten minutes apart: 1275, 1672,
 * 1759 and 1074, 919, 1378 MiB/s, while 1 s iperf3 runs stayed within ±5%); five runs give a steadier median than
 * three. The report shows the median and every run.
 */
export const DIRTY_RESYNC_REPETITIONS = 5;

// Scenario 1: cut the link, dirty ~10% of the regions with random data, restore it, time until the pair is whole;
// DIRTY_RESYNC_REPETITIONS times, reporting the median run (any failed run fails the scenario).
async function measureDirtyResync(run: ResyncRun): Promise<ScenarioOutcome<DirtyResyncFigures>> {
  const runs: DirtyResyncFigures[] = [];
  let notes: string[] = [];
  const floorNotes: string[] = [];
  const floor = await buildFloor(run, floorNotes);
  for (let i = 1; i <= DIRTY_RESYNC_REPETITIONS; i++) {
    const outcome = await measureDirtyResyncOnce(run, i, i === 1, floor);
    if (outcome.status !== 'ok') return outcome;
    runs.push(outcome.figures);
    if (i === 1) notes = outcome.notes;
    else floorNotes.push(...outcome.notes.filter((note) => note.startsWith('stream-floor')));
  }
  const rate = (f: DirtyResyncFigures): number => (f.resyncEngineSec && f.resyncEngineSec > 0 ? f.bytesDone / f.resyncEngineSec : 0);
  const median = medianBy(runs, rate);
  const floors = runs.map((f) => f.streamFloorBytesPerSec).filter((r): r is number => typeof r === 'number');
  return {
    status: 'ok',
    figures: {
      ...median, secondaryDiskBytesPerSec: runs[0]!.secondaryDiskBytesPerSec, repetitionBytesPerSec: runs.map(rate),
      // Only when every run has one: a median of some runs would not stand beside the resync's median of all.
      streamFloorBytesPerSec: floors.length === runs.length ? medianBy(floors, (r) => r) : null,
      repetitionStreamFloorBytesPerSec: floors,
    },
    notes: [...notes, ...floorNotes, `${runs.length} runs, each on a fresh pair, every one compared identical`],
  };
}

// The stream-floor binary, or null (with a note) when it could not be built.
async function buildFloor(run: ResyncRun, notes: string[]): Promise<string | null> {
  const dir = path.join(run.workDir, 'resync');
  fs.mkdirSync(dir, { recursive: true });
  try {
    return await buildStreamFloor(dir);
  } catch (error) {
    notes.push(`stream-floor: ${(error as Error).message}`);
    return null;
  }
}

// The link-cut scenario's shape for stream-floor: as many 64 KiB regions as fio dirties, scattered over the volume.
function floorShape(run: ResyncRun, seed: number): StreamShape {
  return { volumeBytes: run.volumeBytes, regionBytes: REGION_BYTES, regions: Math.round(DIRTY_WRITE_BYTES / REGION_BYTES), seed };
}

// One stream-floor run over the veth with the scenario's shape (seeded by the repetition); null with a note if it failed.
async function measureFloor(run: ResyncRun, floor: string | null, dir: string, repetition: number, notes: string[]): Promise<number | null> {
  if (!floor) return null;
  try {
    const result = await runStreamFloor(floor, namespaceEnds(run.namespaces), dir, floorShape(run, repetition));
    return result.bytes / result.seconds;
  } catch (error) {
    notes.push(`stream-floor run ${repetition} failed: ${(error as Error).message}`);
    return null;
  }
}

async function measureDirtyResyncOnce(run: ResyncRun, repetition: number, measureDisk: boolean, floor: string | null): Promise<ScenarioOutcome<DirtyResyncFigures>> {
  return runScenario(run, `dirty 10% of the regions, link cut and restored (run ${repetition} of ${DIRTY_RESYNC_REPETITIONS})`, async (notes, hold) => {
    const pair = await startPair(run, `dirty-10pct-${repetition}`, []);
    hold(pair);
    await run.namespaces.setLinkUp(false);
    await waitForStatus(pair, isDegraded, DEGRADED_TIMEOUT_MS, 'peer degraded after the link went down');
    await runFio(scatteredWriteArgs('dirty', pair.uri, run.volumeBytes, DIRTY_WRITE_BYTES), 'write', pair.context.caseDir, 'dirty', FIO_WRITE_TIMEOUT_MS);
    const down = await queryStatus(pair.primaryControl);
    const outOfSync = down.peer?.outOfSyncBytes ?? 0;
    if (!isDegraded(down)) throw new Error(`peer ${String(down.peer?.state)} after writing with the link down (expected degraded)`);
    if (!dirtyShareAsExpected(outOfSync, run.volumeBytes)) {
      throw new Error(`${outOfSync} bytes out of sync after the link-down writes: not ≈10% of ${run.volumeBytes}`);
    }
    const linkUpWallMs = Date.now();
    const linkUpMs = performance.now();
    await run.namespaces.setLinkUp(true);
    const done = await waitForStatus(pair, resyncFinishedSince(linkUpWallMs), RESYNC_DONE_TIMEOUT_MS, 'resync finished and peer in sync', RESYNC_POLL_INTERVAL_MS);
    const resync = done.status.resync ?? {};
    await stopAndCompare(pair, notes);
    const secondaryDiskBytesPerSec = measureDisk ? await measureSecondaryDisk(run, pair.context.caseDir, notes) : null;
    const streamFloorBytesPerSec = await measureFloor(run, floor, pair.context.caseDir, repetition, notes);
    return {
      volumeBytes: run.volumeBytes,
      writtenBytes: DIRTY_WRITE_BYTES,
      outOfSyncBytesWhileDown: outOfSync,
      peerStateWhileDown: String(down.peer?.state),
      linkUpToInSyncSec: secondsToInSync(resync.finishedAt, linkUpWallMs, done.atMs - linkUpMs),
      resyncEngineSec: engineSeconds(resync.startedAt, resync.finishedAt),
      bytesDone: resync.bytesDone ?? 0,
      bytesSent: resync.bytesSent ?? 0,
      regionsZero: resync.regionsZero ?? 0,
      statusBytesPerSecond: resync.bytesPerSecond ?? 0,
      secondaryDiskBytesPerSec,
      repetitionBytesPerSec: [],
      streamFloorBytesPerSec,
    };
  });
}

// The resync's disk work without the resync: fio writes the same scattered 64 KiB blocks into a fresh sparse file
// beside the stores, one pwrite at a time. A figure for the report, not a condition of the scenario.
async function measureSecondaryDisk(run: ResyncRun, caseDir: string, notes: string[]): Promise<number | null> {
  const filePath = path.join(caseDir, 'disk-ceiling.img');
  createSparseFile(filePath, run.volumeBytes);
  try {
    const metrics = await runFio(secondaryDiskArgs('disk-ceiling', filePath, run.volumeBytes, DIRTY_WRITE_BYTES), 'write', caseDir, 'disk-ceiling', FIO_WRITE_TIMEOUT_MS);
    return metrics.bandwidthBytesPerSec;
  } catch (error) {
    notes.push(`fio alone on the secondary's disk failed: ${(error as Error).message}`);
    return null;
  } finally {
    fs.rmSync(filePath, { force: true });
  }
}

// Scenario 2: ~64 MiB written on a 1 GiB primary, then the secondary replaced by an empty one: a full sync.
async function measureFullSync(run: ResyncRun): Promise<ScenarioOutcome<FullSyncFigures>> {
  return runScenario(run, 'full sync of a sparse volume to an empty secondary', async (notes, hold) => {
    const pair = await startPair(run, 'full-sync-sparse', []);
    hold(pair);
    await runFio(scatteredWriteArgs('sparse', pair.uri, run.volumeBytes, SPARSE_WRITE_BYTES), 'write', pair.context.caseDir, 'sparse', FIO_WRITE_TIMEOUT_MS);
    const allocatedBytes = fs.statSync(pair.primaryStore).blocks * 512;
    await pair.secondary.stop();
    fs.rmSync(pair.secondaryStore, { force: true });
    fs.rmSync(`${pair.secondaryStore}.meta`, { force: true });
    notes.push('secondary stopped, its store and .meta deleted, started again with --size (fresh empty store)');
    const startWallMs = Date.now();
    const startMs = performance.now();
    pair.secondary = startInNamespace(pair.context, run.namespaces, 'b', 'blockmirror-secondary-new', pair.secondaryArgs);
    const done = await waitForStatus(pair, resyncFinishedSince(startWallMs), RESYNC_DONE_TIMEOUT_MS, 'full sync finished and peer in sync', RESYNC_POLL_INTERVAL_MS);
    const resync = done.status.resync ?? {};
    if ((resync.bytesTotal ?? 0) !== run.volumeBytes) notes.push(`the resync covered ${String(resync.bytesTotal)} bytes, not the whole volume: not a full sync`);
    await stopAndCompare(pair, notes);
    return {
      volumeBytes: run.volumeBytes,
      writtenBytes: SPARSE_WRITE_BYTES,
      allocatedBytes,
      startToInSyncSec: secondsToInSync(resync.finishedAt, startWallMs, done.atMs - startMs),
      resyncEngineSec: engineSeconds(resync.startedAt, resync.finishedAt),
      bytesTotal: resync.bytesTotal ?? 0,
      bytesDone: resync.bytesDone ?? 0,
      bytesSent: resync.bytesSent ?? 0,
      regionsZero: resync.regionsZero ?? 0,
      statusBytesPerSecond: resync.bytesPerSecond ?? 0,
    };
  });
}

// Scenario 3: 4k randwrite QD32 on the connected pair, then while a rate-limited resync of the whole volume runs.
async function measureIopsDuringResync(run: ResyncRun): Promise<ScenarioOutcome<IopsDuringResyncFigures>> {
  const runtimeSec = Math.min(run.runtimeSec, APPLICATION_RUNTIME_SEC_MAX);
  const timing = { runtimeSec, rampSec: run.rampSec };
  const dirtyBytes = run.volumeBytes;
  const rate = resyncRateFor(dirtyBytes, runtimeSec + run.rampSec);
  return runScenario(run, `4k randwrite QD32 normal vs during a resync at ${rate / 1024 ** 2} MiB/s`, async (notes, hold) => {
    const pair = await startPair(run, 'iops-during-resync', ['--resync-rate', String(rate)]);
    hold(pair);
    const job = findJob(APPLICATION_JOB_ID);
    const normalDir = path.join(pair.context.caseDir, 'normal');
    const duringDir = path.join(pair.context.caseDir, 'during-resync');
    fs.mkdirSync(normalDir);
    fs.mkdirSync(duringDir);
    const normal = await runMeasuredJob(job, pair.uri, run.volumeBytes, timing, normalDir);
    await run.namespaces.setLinkUp(false);
    await waitForStatus(pair, isDegraded, DEGRADED_TIMEOUT_MS, 'peer degraded after the link went down');
    await runPrefill(pair.uri, run.volumeBytes, pair.context.caseDir);
    const linkUpWallMs = Date.now();
    await run.namespaces.setLinkUp(true);
    const started = await waitForStatus(pair, (status) => status.resync?.active === true, DEGRADED_TIMEOUT_MS, 'resync running after the link came back');
    const duringResync = await runMeasuredJob(job, pair.uri, run.volumeBytes, timing, duringDir);
    const after = await queryStatus(pair.primaryControl);
    if (after.resync?.active !== true) throw new Error('the resync finished before the measured job did: the figure would not be "during resync"');
    notes.push(`resync still active after the job: ${(after.resync.percent ?? 0).toFixed(0)}% done`);
    const expectedMs = (dirtyBytes / rate) * 1000 + RATE_LIMITED_SLACK_MS;
    await waitForStatus(pair, resyncFinishedSince(linkUpWallMs), expectedMs, 'rate-limited resync finished and peer in sync');
    await stopAndCompare(pair, notes);
    return {
      normal,
      duringResync,
      resyncRateBytesPerSec: rate,
      dirtyBytes: started.status.resync?.bytesTotal ?? dirtyBytes,
      resyncBytesDuringJob: (after.resync.bytesDone ?? 0) - (started.status.resync?.bytesDone ?? 0),
      runtimeSec,
      rampSec: run.rampSec,
    };
  });
}

// The settings behind the figures, in words, for the report.
function describeSettings(run: ResyncRun): string[] {
  const gib = run.volumeBytes / 1024 ** 3;
  return [
    `Pair as in the mirrored matrix (secondary in namespace B, primary in A, each creating a fresh ${gib} GiB sparse store with --size), ` +
      `plus \`--keepalive-timeout ${RESYNC_KEEPALIVE_TIMEOUT_MS}\` on both; region size ${REGION_BYTES / 1024} KiB (default). ` +
      `The link is cut and restored with \`${NamespacePair.linkCommand(false)}\` / \`${NamespacePair.linkCommand(true)}\`.`,
    `The link-cut resync runs ${DIRTY_RESYNC_REPETITIONS} times, each on a fresh pair; its table shows the median run and lists every run. ` +
      'After each run, stream-floor moves the same number of scattered regions over the same veth with nothing but the work any resync ' +
      `must do (one stream: \`${streamFloorCommand(floorShape(run, 1))}\`).`,
    `Progress and end state are read from the primary's control socket (the \`status --json\` document), every ${STATUS_POLL_INTERVAL_MS} ms ` +
      `until the link cut is noticed and every ${RESYNC_POLL_INTERVAL_MS} ms while a resync runs (a status request costs the primary CPU; ` +
      'resync times come from its own resync.startedAt / finishedAt, so the slower poll loses no precision); ' +
      '"in sync" means resync.active false, peer.state connected and peer.outOfSyncBytes 0, reached at resync.finishedAt.',
  ];
}

// Runs the three scenarios in the given namespaces (the caller measured iperf3 on the same veth).
export async function runResyncSection(run: ResyncRun, unavailableReason: string | undefined): Promise<ResyncReport> {
  const settings = describeSettings(run);
  if (unavailableReason) {
    const skipped = { status: 'unavailable' as const, reason: `not available: ${unavailableReason}`, notes: [] };
    return { settings, reproduceCommand: run.reproduceCommand, dirty: skipped, fullSync: skipped, iops: skipped };
  }
  const dirty = await measureDirtyResync(run);
  const fullSync = await measureFullSync(run);
  const iops = await measureIopsDuringResync(run);
  return { settings, reproduceCommand: run.reproduceCommand, dirty, fullSync, iops };
}
