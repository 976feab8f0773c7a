// The data a run produces; written as --json and rendered as markdown.
import { JobMetrics } from './fio-result';
import { IperfResult } from './iperf';
import { MachineInfo } from './machine-info';
import { Matrix } from './target-types';

/** Prefix of the case note that carries the secondary's per-write figures (mirrored blockmirror pair). */
export const SECONDARY_COST_NOTE = 'secondary per write: ';

export interface CaseResult {
  matrix: Matrix;
  targetId: string;
  jobId: string;
  status: 'ok' | 'failed' | 'unavailable';
  reason?: string;
  metrics?: JobMetrics;
  /** Every repetition's figures when --repeat > 1 (metrics is the median one). */
  repetitions?: JobMetrics[];
  notes: string[];
}

export interface TargetSummary {
  id: string;
  matrix: Matrix;
  title: string;
  isBlockmirror: boolean;
  settings: string;
  unavailableReason?: string;
}

export interface RunSettings {
  runtimeSec: number;
  rampSec: number;
  sizeBytes: number;
  repeat: number;
  readPrefill: string;
  reproduceCommand: string;
  matrices: Matrix[];
  /** Whether the resync section was asked for (absent in reports from before it existed). */
  resync?: boolean;
}

export interface BenchReport {
  machine: MachineInfo;
  settings: RunSettings;
  targets: TargetSummary[];
  results: CaseResult[];
  iperf?: IperfResult | { error: string };
  /** Present when the resync section ran (it shares the namespaces and the iperf3 figure with the mirrored matrix). */
  resync?: ResyncReport;
  goals: GoalResult[];
}

/** One resync scenario: its figures, or why there are none. */
export type ScenarioOutcome<T> =
  | { status: 'ok'; figures: T; notes: string[] }
  | { status: 'failed' | 'unavailable'; reason: string; notes: string[] };

/** Link cut, ~10% of the 64 KiB regions written while degraded, link restored: how fast the pair is whole again. */
export interface DirtyResyncFigures {
  volumeBytes: number;
  /** Bytes fio wrote while the link was down. */
  writtenBytes: number;
  /** peer.outOfSyncBytes and peer.state on the primary just before the link came back. */
  outOfSyncBytesWhileDown: number;
  peerStateWhileDown: string;
  /** From `ip link set up` until status showed resync inactive, peer connected, 0 bytes out of sync. */
  linkUpToInSyncSec: number;
  /** The resync engine's own duration (status resync.startedAt → finishedAt), without reconnecting. */
  resyncEngineSec: number | null;
  bytesDone: number;
  bytesSent: number;
  regionsZero: number;
  /** status resync.bytesPerSecond as the primary reports it after the resync. */
  statusBytesPerSecond: number;
  /** fio alone writing the same pattern into a fresh sparse file (the secondary's disk work), or null if it failed. */
  secondaryDiskBytesPerSec: number | null;
  /**
   * Resync throughput (bytesDone ÷ resync engine seconds) of every repetition, each on a fresh pair, in run
   * order; the other figures are those of the median repetition.
   */
  repetitionBytesPerSec: number[];
  /**
   * stream-floor (tools/bench/stream-floor.cc) over the same veth right after each repetition: the same regions
   * read, checksummed, sent, checked and written by one C++ thread at each end, nothing else. The median of the
   * runs (a run's own figure before merging), or null when it could not be built or run; absent in older reports.
   */
  streamFloorBytesPerSec?: number | null;
  /** Every stream-floor run, in run order. */
  repetitionStreamFloorBytesPerSec?: number[];
}

/** A new, empty secondary against a sparse primary: the full sync must send the allocated data, not the volume. */
export interface FullSyncFigures {
  volumeBytes: number;
  writtenBytes: number;
  /** Allocated bytes of the primary's store file (st_blocks × 512). */
  allocatedBytes: number;
  /** From starting the new secondary until the primary showed it in sync. */
  startToInSyncSec: number;
  resyncEngineSec: number | null;
  bytesTotal: number;
  bytesDone: number;
  bytesSent: number;
  regionsZero: number;
  statusBytesPerSecond: number;
}

/** 4k randwrite QD32 on the connected pair, then again while a (rate-limited) resync runs. */
export interface IopsDuringResyncFigures {
  normal: JobMetrics;
  duringResync: JobMetrics;
  resyncRateBytesPerSec: number;
  dirtyBytes: number;
  /** resync.bytesDone advanced by this much during the measured fio job (ramp included). */
  resyncBytesDuringJob: number;
  runtimeSec: number;
  rampSec: number;
}

export interface ResyncReport {
  /** The settings used, in words, for the report. */
  settings: string[];
  reproduceCommand: string;
  dirty: ScenarioOutcome<DirtyResyncFigures>;
  fullSync: ScenarioOutcome<FullSyncFigures>;
  iops: ScenarioOutcome<IopsDuringResyncFigures>;
}

export interface GoalResult {
  matrix: Matrix | 'resync';
  description: string;
  status: 'met' | 'not met' | 'n/a';
  detail: string;
}

// Finds the metrics of one (target, job) case if it was measured successfully.
export function metricsFor(results: readonly CaseResult[], targetId: string, jobId: string): JobMetrics | undefined {
  return results.find((result) => result.targetId === targetId && result.jobId === jobId && result.status === 'ok')?.metrics;
}
