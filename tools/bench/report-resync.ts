// Renders the resync section of BENCHMARKS.md: link-cut resync, full sync of a sparse volume, IOPS during resync.
import { IperfResult } from './iperf';
import { BenchReport, DirtyResyncFigures, FullSyncFigures, IopsDuringResyncFigures, ScenarioOutcome } from './results';

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

// "12.3 MiB".
function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

// "123.4 MiB/s (0.12× iperf3)" when the link figure exists.
function rateText(bytesPerSec: number, iperf: IperfResult | undefined): string {
  const link = iperf ? ` (${(bytesPerSec / (iperf.bitsPerSecond / 8)).toFixed(2)}× iperf3)` : '';
  return `${(bytesPerSec / MIB).toFixed(1)} MiB/s${link}`;
}

// Renders an outcome's table, or the reason it has none, followed by its notes.
function outcomeLines<T>(outcome: ScenarioOutcome<T>, rows: (figures: T) => Array<[string, string]>): string[] {
  if (outcome.status !== 'ok') {
    const lines = [outcome.status === 'unavailable' ? outcome.reason : `**failed**: ${outcome.reason.replace(/\n/g, ' ')}`];
    if (outcome.notes.length > 0) lines.push('', `Notes: ${outcome.notes.join('; ')}.`);
    return lines;
  }
  const lines = ['| | |', '|---|---|', ...rows(outcome.figures).map(([name, value]) => `| ${name} | ${value} |`)];
  if (outcome.notes.length > 0) lines.push('', `Checks: ${outcome.notes.join('; ')}.`);
  return lines;
}

// Scenario 1 rows.
function dirtyRows(f: DirtyResyncFigures, iperf: IperfResult | undefined): Array<[string, string]> {
  const engineRate = f.resyncEngineSec && f.resyncEngineSec > 0 ? rateText(f.bytesDone / f.resyncEngineSec, iperf) : '—';
  return [
    ['Written while the link was down', `${mib(f.writtenBytes)} of random data in 64 KiB blocks, each to a different region`],
    ['Primary while the link was down', `peer ${f.peerStateWhileDown}, outOfSyncBytes ${mib(f.outOfSyncBytesWhileDown)} (${((100 * f.outOfSyncBytesWhileDown) / f.volumeBytes).toFixed(2)}% of ${(f.volumeBytes / GIB).toFixed(0)} GiB)`],
    ['Resynced (bytesDone / bytesSent / zero regions)', `${mib(f.bytesDone)} / ${mib(f.bytesSent)} / ${f.regionsZero}`],
    ['**Resync throughput** = bytesDone ÷ resync time (status startedAt → finishedAt), median run', `${f.resyncEngineSec === null ? '—' : `${f.resyncEngineSec.toFixed(2)} s`} → **${engineRate}**`],
    // Reports saved before repetitions existed have none.
    ...((f.repetitionBytesPerSec ?? []).length === 0 ? [] : [[`Every run (${f.repetitionBytesPerSec.length}, each on a fresh pair, in run order)`, f.repetitionBytesPerSec.map((r) => rateText(r, iperf)).join(', ')] as [string, string]]),
    ['Link up → in sync', `${f.linkUpToInSyncSec.toFixed(2)} s (adds noticing the link and reconnecting: the primary retries every 250 ms)`],
    ['End to end = bytesDone ÷ (link up → in sync)', rateText(f.bytesDone / f.linkUpToInSyncSec, iperf)],
    ['status resync.bytesPerSecond', rateText(f.statusBytesPerSecond, iperf)],
    ['The secondary\'s disk alone: fio writing the same 64 KiB random blocks (psync, one at a time) into a fresh sparse file',
      !f.secondaryDiskBytesPerSec ? '—' : `${rateText(f.secondaryDiskBytesPerSec, iperf)}; the resync reached ${!f.resyncEngineSec ? '—' : `${(f.bytesDone / f.resyncEngineSec / f.secondaryDiskBytesPerSec).toFixed(2)}×`} of it`],
    // Reports saved before stream-floor existed have no such field.
    ...(f.streamFloorBytesPerSec === undefined ? [] : [streamFloorRow(f, iperf)]),
  ];
}

// The stream-floor row: its median against iperf3 and what the resync reached of it, then every run.
function streamFloorRow(f: DirtyResyncFigures, iperf: IperfResult | undefined): [string, string] {
  const name = 'stream-floor: the same regions read, CRC32C\'d and sent, then checked and written into a fresh sparse file, by one bare C++ ' +
    'thread at each end (tools/bench/stream-floor.cc; no JavaScript, gates, bitmap or status), right after each run, median';
  const floor = f.streamFloorBytesPerSec;
  if (!floor) return [name, '—'];
  const reached = !f.resyncEngineSec ? '—' : `${(f.bytesDone / f.resyncEngineSec / floor).toFixed(2)}×`;
  const runs = (f.repetitionStreamFloorBytesPerSec ?? []).map((r) => (r / MIB).toFixed(1)).join(', ');
  return [name, `${rateText(floor, iperf)}; the resync reached ${reached} of it (runs: ${runs} MiB/s)`];
}

// Scenario 2 rows.
function fullSyncRows(f: FullSyncFigures, iperf: IperfResult | undefined): Array<[string, string]> {
  return [
    ['Volume / written before / allocated on the primary', `${(f.volumeBytes / GIB).toFixed(0)} GiB / ${mib(f.writtenBytes)} / ${mib(f.allocatedBytes)}`],
    ['Regions to sync (bytesTotal)', `${mib(f.bytesTotal)}${f.bytesTotal === f.volumeBytes ? ' (the whole volume: full sync)' : ''}`],
    ['**Data sent (bytesSent)**', `**${mib(f.bytesSent)}** = ${(f.bytesSent / f.allocatedBytes).toFixed(3)}× allocated, ${((100 * f.bytesSent) / f.volumeBytes).toFixed(2)}% of the volume`],
    ['Zero regions sent as WRITE_ZEROES', String(f.regionsZero)],
    ['New secondary started → in sync', `${f.startToInSyncSec.toFixed(2)} s (resync engine alone: ${f.resyncEngineSec === null ? '—' : `${f.resyncEngineSec.toFixed(2)} s`})`],
    ['status resync.bytesPerSecond (regions checked per second)', rateText(f.statusBytesPerSecond, iperf)],
  ];
}

// Scenario 3 rows.
function iopsRows(f: IopsDuringResyncFigures): Array<[string, string]> {
  const job = (label: string, m: IopsDuringResyncFigures['normal']): [string, string] =>
    [label, `${Math.round(m.iops).toLocaleString('en-US')} IOPS, p50 ${m.clatP50Us.toFixed(1)} µs, p99 ${m.clatP99Us.toFixed(1)} µs`];
  return [
    ['Job', `fio 4k randwrite QD32 over the whole volume, --runtime=${f.runtimeSec} --ramp_time=${f.rampSec}`],
    job('Pair connected and in sync', f.normal),
    job('During resync', f.duringResync),
    ['**Ratio** during ÷ normal', `**${(f.duringResync.iops / f.normal.iops).toFixed(2)}×**`],
    ['Resync running meanwhile', `${mib(f.dirtyBytes)} out of sync (whole volume rewritten while the link was down), primary started with ` +
      `\`--resync-rate ${f.resyncRateBytesPerSec}\` (${(f.resyncRateBytesPerSec / MIB).toFixed(0)} MiB/s); ${mib(f.resyncBytesDuringJob)} resynced during the job`],
  ];
}

// The whole "Resync" section (without its heading).
export function resyncSection(report: BenchReport): string[] {
  const resync = report.resync;
  if (!resync) return ['Not run.'];
  const iperf = report.iperf && !('error' in report.iperf) ? report.iperf : undefined;
  const link = iperf
    ? `iperf3 on the same veth in the same run: ${(iperf.bitsPerSecond / 1e9).toFixed(2)} Gbit/s (${(iperf.bitsPerSecond / 8 / MIB).toFixed(0)} MiB/s).`
    : 'No iperf3 figure for the veth in this run, so no ratio to the link.';
  return [
    'Reproduce this section alone with:',
    '',
    '```sh',
    resync.reproduceCommand,
    '```',
    '',
    ...resync.settings.map((line) => `- ${line}`),
    `- ${link}`,
    '',
    '### Resync after a link cut (1 GiB, 10% of the regions dirty)',
    '',
    ...outcomeLines(resync.dirty, (f) => dirtyRows(f, iperf)),
    '',
    '### Full sync of a sparse volume to an empty secondary',
    '',
    'The secondary is stopped, its store and `.meta` deleted, and started again with `--size`: its empty store cannot hold the primary\'s ' +
      'generation, so the primary marks every region. Holes must travel as WRITE_ZEROES, not as data.',
    '',
    ...outcomeLines(resync.fullSync, (f) => fullSyncRows(f, iperf)),
    '',
    '### Application writes during a resync',
    '',
    ...outcomeLines(resync.iops, iopsRows),
  ];
}
