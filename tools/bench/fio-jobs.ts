// The fio workload matrix every target is measured with.

export type FioPattern = 'randwrite' | 'randread' | 'write';

export interface FioJob {
  /** Stable id used in tables, JSON and --jobs. */
  id: string;
  title: string;
  pattern: FioPattern;
  blockSizeBytes: number;
  ioDepth: number;
  /** Reads need data behind them: the region is written sequentially (unmeasured) first. */
  needsPrefill: boolean;
  /** The figure this job is judged by in the report. */
  headline: 'iops' | 'bandwidth';
}

const KIB = 1024;
const MIB = 1024 * KIB;

export const FIO_JOBS: readonly FioJob[] = [
  { id: 'randwrite-4k-qd1', title: '4k randwrite QD1', pattern: 'randwrite', blockSizeBytes: 4 * KIB, ioDepth: 1, needsPrefill: false, headline: 'iops' },
  { id: 'randwrite-4k-qd32', title: '4k randwrite QD32', pattern: 'randwrite', blockSizeBytes: 4 * KIB, ioDepth: 32, needsPrefill: false, headline: 'iops' },
  { id: 'randread-4k-qd32', title: '4k randread QD32', pattern: 'randread', blockSizeBytes: 4 * KIB, ioDepth: 32, needsPrefill: true, headline: 'iops' },
  { id: 'randwrite-64k-qd16', title: '64k randwrite QD16', pattern: 'randwrite', blockSizeBytes: 64 * KIB, ioDepth: 16, needsPrefill: false, headline: 'bandwidth' },
  { id: 'write-1m-qd8', title: '1M seq write QD8', pattern: 'write', blockSizeBytes: 1 * MIB, ioDepth: 8, needsPrefill: false, headline: 'bandwidth' },
];

/** The sequential fill that runs (unmeasured) before read jobs so reads hit written blocks, not holes. */
export const PREFILL_BLOCK_SIZE_BYTES = 1 * MIB;
export const PREFILL_IO_DEPTH = 8;

// Looks a job up by id, for --jobs and for goal checks.
export function findJob(id: string): FioJob {
  const job = FIO_JOBS.find((candidate) => candidate.id === id);
  if (!job) throw new Error(`unknown fio job "${id}"; known: ${FIO_JOBS.map((j) => j.id).join(', ')}`);
  return job;
}
