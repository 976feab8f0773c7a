// The performance targets from the issues, checked against one run's figures.
import { JobMetrics } from './fio-result';
import { IperfResult } from './iperf';
import { BenchReport, CaseResult, GoalResult, metricsFor, ResyncReport, ScenarioOutcome } from './results';
import { Matrix } from './target-types';

type Comparison =
  | { kind: 'ratio-at-least'; metric: 'iops' | 'bandwidthBytesPerSec'; minRatio: number }
  | { kind: 'latency-ratio-at-most'; maxRatio: number }
  | { kind: 'latency-plus-at-most'; maxExtraUs: number };

interface Goal {
  matrix: Matrix;
  description: string;
  jobId: string;
  targetId: string;
  baselineId: string;
  comparison: Comparison;
}

export const GOALS: readonly Goal[] = [
  { matrix: 'single', description: '4k randwrite QD32 IOPS ≥ 1.0× nbdkit', jobId: 'randwrite-4k-qd32', targetId: 'blockmirror', baselineId: 'nbdkit', comparison: { kind: 'ratio-at-least', metric: 'iops', minRatio: 1.0 } },
  { matrix: 'single', description: '4k randread QD32 IOPS ≥ 1.0× nbdkit', jobId: 'randread-4k-qd32', targetId: 'blockmirror', baselineId: 'nbdkit', comparison: { kind: 'ratio-at-least', metric: 'iops', minRatio: 1.0 } },
  { matrix: 'single', description: '1M seq write bandwidth ≥ 0.9× nbdkit', jobId: 'write-1m-qd8', targetId: 'blockmirror', baselineId: 'nbdkit', comparison: { kind: 'ratio-at-least', metric: 'bandwidthBytesPerSec', minRatio: 0.9 } },
  { matrix: 'single', description: '4k randwrite QD1 p50 latency ≤ 1.2× nbdkit', jobId: 'randwrite-4k-qd1', targetId: 'blockmirror', baselineId: 'nbdkit', comparison: { kind: 'latency-ratio-at-most', maxRatio: 1.2 } },
  { matrix: 'mirrored', description: '4k randwrite QD32 IOPS ≥ 0.5× single-node blockmirror', jobId: 'randwrite-4k-qd32', targetId: 'blockmirror-pair', baselineId: 'blockmirror', comparison: { kind: 'ratio-at-least', metric: 'iops', minRatio: 0.5 } },
  { matrix: 'mirrored', description: '4k randwrite QD32 IOPS ≥ 3× QEMU active mirror', jobId: 'randwrite-4k-qd32', targetId: 'blockmirror-pair', baselineId: 'qemu-mirror', comparison: { kind: 'ratio-at-least', metric: 'iops', minRatio: 3.0 } },
  { matrix: 'mirrored', description: '1M seq write bandwidth ≥ 0.7× single-node blockmirror', jobId: 'write-1m-qd8', targetId: 'blockmirror-pair', baselineId: 'blockmirror', comparison: { kind: 'ratio-at-least', metric: 'bandwidthBytesPerSec', minRatio: 0.7 } },
  { matrix: 'mirrored', description: '4k randwrite QD1 p50 latency ≤ single-node blockmirror p50 + 100 µs', jobId: 'randwrite-4k-qd1', targetId: 'blockmirror-pair', baselineId: 'blockmirror', comparison: { kind: 'latency-plus-at-most', maxExtraUs: 100 } },
];

// minDecimals, or as many more as it takes so a value just off the threshold never prints as the threshold itself.
export function formatAgainst(value: number, threshold: number, minDecimals = 3): string {
  const MAX_DECIMALS = 8;
  for (let decimals = minDecimals; decimals < MAX_DECIMALS; decimals++) {
    const text = value.toFixed(decimals);
    if (value === threshold || Number(text) !== threshold) return text;
  }
  return value.toFixed(MAX_DECIMALS);
}

// Why a goal cannot be judged: which side has no figure.
function missingDetail(goal: Goal, results: readonly CaseResult[], target: JobMetrics | undefined): string {
  const missingId = target ? goal.baselineId : goal.targetId;
  const result = results.find((candidate) => candidate.targetId === missingId && candidate.jobId === goal.jobId);
  return `no ${missingId} figure for ${goal.jobId}${result?.reason ? ` (${result.reason})` : result ? '' : ' (not run)'}`;
}

// Judges one goal: met / not met with the numbers, or n/a with the reason.
function evaluateGoal(goal: Goal, results: readonly CaseResult[]): GoalResult {
  const target = metricsFor(results, goal.targetId, goal.jobId);
  const baseline = metricsFor(results, goal.baselineId, goal.jobId);
  const base = { matrix: goal.matrix, description: goal.description };
  if (!target || !baseline) return { ...base, status: 'n/a', detail: missingDetail(goal, results, target) };
  const comparison = goal.comparison;
  if (comparison.kind === 'ratio-at-least') {
    const ratio = target[comparison.metric] / baseline[comparison.metric];
    return { ...base, status: ratio >= comparison.minRatio ? 'met' : 'not met', detail: `${formatAgainst(ratio, comparison.minRatio)}× (need ≥ ${comparison.minRatio}×)` };
  }
  if (comparison.kind === 'latency-ratio-at-most') {
    const ratio = target.clatP50Us / baseline.clatP50Us;
    return {
      ...base,
      status: ratio <= comparison.maxRatio ? 'met' : 'not met',
      detail: `${target.clatP50Us.toFixed(1)} µs vs ${baseline.clatP50Us.toFixed(1)} µs = ${formatAgainst(ratio, comparison.maxRatio)}× (need ≤ ${comparison.maxRatio}×)`,
    };
  }
  const extraUs = target.clatP50Us - baseline.clatP50Us;
  return {
    ...base,
    status: extraUs <= comparison.maxExtraUs ? 'met' : 'not met',
    detail: `${target.clatP50Us.toFixed(1)} µs vs ${baseline.clatP50Us.toFixed(1)} µs = ${extraUs >= 0 ? '+' : ''}${formatAgainst(extraUs, comparison.maxExtraUs, 1)} µs (need ≤ +${comparison.maxExtraUs} µs)`,
  };
}

// Evaluates every goal of the matrices that were run.
export function evaluateGoals(results: readonly CaseResult[], matrices: readonly Matrix[]): GoalResult[] {
  return GOALS.filter((goal) => matrices.includes(goal.matrix)).map((goal) => evaluateGoal(goal, results));
}

/** Resync targets from the issue. */
export const RESYNC_THROUGHPUT_MIN_RATIO = 0.8;
export const FULL_SYNC_SENT_MAX_RATIO = 1.1;
export const IOPS_DURING_RESYNC_MIN_RATIO = 0.5;

// n/a with the scenario's own reason when it has no figures.
function scenarioMissing(outcome: Exclude<ScenarioOutcome<unknown>, { status: 'ok' }>, description: string): GoalResult {
  return { matrix: 'resync', description, status: 'n/a', detail: `${outcome.status}: ${outcome.reason}` };
}

// Resync throughput (bytesDone over the resync's own startedAt → finishedAt) against iperf3 on the same veth.
function resyncThroughputGoal(resync: ResyncReport, iperf: IperfResult | { error: string } | undefined): GoalResult {
  const description = `resync of 10% dirty regions: bytesDone ÷ resync time (startedAt → finishedAt), median run, ≥ ${RESYNC_THROUGHPUT_MIN_RATIO}× iperf3 on the same veth`;
  const outcome = resync.dirty;
  if (outcome.status !== 'ok') return scenarioMissing(outcome, description);
  if (!iperf || 'error' in iperf) return { matrix: 'resync', description, status: 'n/a', detail: `no iperf3 figure${iperf ? `: ${iperf.error}` : ''}` };
  const figures = outcome.figures;
  if (figures.resyncEngineSec === null || figures.resyncEngineSec <= 0) return { matrix: 'resync', description, status: 'n/a', detail: 'the primary reported no resync start and finish times' };
  const bytesPerSec = figures.bytesDone / figures.resyncEngineSec;
  const ratio = bytesPerSec / (iperf.bitsPerSecond / 8);
  return {
    matrix: 'resync', description, status: ratio >= RESYNC_THROUGHPUT_MIN_RATIO ? 'met' : 'not met',
    detail: `${(bytesPerSec / 1024 ** 2).toFixed(1)} MiB/s vs ${(iperf.bitsPerSecond / 8 / 1024 ** 2).toFixed(0)} MiB/s = ` +
      `${formatAgainst(ratio, RESYNC_THROUGHPUT_MIN_RATIO)}× (need ≥ ${RESYNC_THROUGHPUT_MIN_RATIO}×)` +
      (!figures.secondaryDiskBytesPerSec ? '' :
        `; the secondary's disk alone (fio, same writes) takes ${(figures.secondaryDiskBytesPerSec / 1024 ** 2).toFixed(0)} MiB/s = ` +
        `${(figures.secondaryDiskBytesPerSec / (iperf.bitsPerSecond / 8)).toFixed(2)}× iperf3, and the resync reached ${(bytesPerSec / figures.secondaryDiskBytesPerSec).toFixed(2)}× of that`) +
      (!figures.streamFloorBytesPerSec ? '' :
        `; stream-floor (the same reads, checksums and writes in bare C++) moved ${(figures.streamFloorBytesPerSec / 1024 ** 2).toFixed(0)} MiB/s = ` +
        `${(figures.streamFloorBytesPerSec / (iperf.bitsPerSecond / 8)).toFixed(2)}× iperf3, and the resync reached ${(bytesPerSec / figures.streamFloorBytesPerSec).toFixed(2)}× of that`),
  };
}

// Full sync of a sparse volume: data sent must follow the allocated data, not the volume size.
function fullSyncGoal(resync: ResyncReport): GoalResult {
  const description = `full sync of a sparse volume: bytesSent ≤ ${FULL_SYNC_SENT_MAX_RATIO}× the primary's allocated data (not the volume size)`;
  const outcome = resync.fullSync;
  if (outcome.status !== 'ok') return scenarioMissing(outcome, description);
  const figures = outcome.figures;
  if (figures.bytesTotal !== figures.volumeBytes) {
    return { matrix: 'resync', description, status: 'n/a', detail: `the resync covered ${figures.bytesTotal} of ${figures.volumeBytes} bytes: not a full sync` };
  }
  const ratio = figures.bytesSent / figures.allocatedBytes;
  return {
    matrix: 'resync', description, status: ratio <= FULL_SYNC_SENT_MAX_RATIO ? 'met' : 'not met',
    detail: `${(figures.bytesSent / 1024 ** 2).toFixed(1)} MiB sent for ${(figures.allocatedBytes / 1024 ** 2).toFixed(1)} MiB allocated = ` +
      `${formatAgainst(ratio, FULL_SYNC_SENT_MAX_RATIO)}× (need ≤ ${FULL_SYNC_SENT_MAX_RATIO}×); ` +
      `${((100 * figures.bytesSent) / figures.volumeBytes).toFixed(1)}% of the ${(figures.volumeBytes / 1024 ** 3).toFixed(0)} GiB volume`,
  };
}

// Application 4k randwrite QD32 IOPS during a resync against the same pair in sync.
function iopsDuringResyncGoal(resync: ResyncReport): GoalResult {
  const description = `4k randwrite QD32 IOPS during resync ≥ ${IOPS_DURING_RESYNC_MIN_RATIO}× the in-sync pair`;
  const outcome = resync.iops;
  if (outcome.status !== 'ok') return scenarioMissing(outcome, description);
  const figures = outcome.figures;
  const ratio = figures.duringResync.iops / figures.normal.iops;
  return {
    matrix: 'resync', description, status: ratio >= IOPS_DURING_RESYNC_MIN_RATIO ? 'met' : 'not met',
    detail: `${Math.round(figures.duringResync.iops)} vs ${Math.round(figures.normal.iops)} IOPS = ` +
      `${formatAgainst(ratio, IOPS_DURING_RESYNC_MIN_RATIO)}× (need ≥ ${IOPS_DURING_RESYNC_MIN_RATIO}×; resync limited to ${(figures.resyncRateBytesPerSec / 1024 ** 2).toFixed(0)} MiB/s)`,
  };
}

// Evaluates the resync goals (none when the section did not run).
export function evaluateResyncGoals(resync: ResyncReport | undefined, iperf: IperfResult | { error: string } | undefined): GoalResult[] {
  if (!resync) return [];
  return [resyncThroughputGoal(resync, iperf), fullSyncGoal(resync), iopsDuringResyncGoal(resync)];
}

// Every goal of a report: the matrices' and the resync section's.
export function evaluateAllGoals(report: Pick<BenchReport, 'results' | 'settings' | 'resync' | 'iperf'>): GoalResult[] {
  return [...evaluateGoals(report.results, report.settings.matrices), ...evaluateResyncGoals(report.resync, report.iperf)];
}
