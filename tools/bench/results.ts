// The data a run produces; written as --json and rendered as markdown.
import { JobMetrics } from './fio-result';
import { IperfResult } from './iperf';
import { MachineInfo } from './machine-info';
import { Matrix } from './target-types';

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
}

export interface BenchReport {
  machine: MachineInfo;
  settings: RunSettings;
  targets: TargetSummary[];
  results: CaseResult[];
  iperf?: IperfResult | { error: string };
  goals: GoalResult[];
}

export interface GoalResult {
  matrix: Matrix;
  description: string;
  status: 'met' | 'not met' | 'n/a';
  detail: string;
}

// Finds the metrics of one (target, job) case if it was measured successfully.
export function metricsFor(results: readonly CaseResult[], targetId: string, jobId: string): JobMetrics | undefined {
  return results.find((result) => result.targetId === targetId && result.jobId === jobId && result.status === 'ok')?.metrics;
}
