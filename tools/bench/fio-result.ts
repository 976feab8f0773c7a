// Extracts the figures the report needs from fio's --output-format=json output.

export interface JobMetrics {
  iops: number;
  bandwidthBytesPerSec: number;
  clatP50Us: number;
  clatP99Us: number;
  clatMeanUs: number;
  /** I/Os fio completed in the measured window (after ramp). */
  totalIos: number;
}

interface FioDirectionStats {
  iops: number;
  bw_bytes?: number;
  bw: number;
  total_ios: number;
  clat_ns: { mean: number; percentile?: Record<string, number> };
}

interface FioJobStats {
  jobname: string;
  error: number;
  read: FioDirectionStats;
  write: FioDirectionStats;
}

const NS_PER_US = 1000;

// The nbd engine logs "fio: connected to NBD server" into the same output; JSON starts at the first line that is "{".
export function extractJsonText(output: string): string {
  const start = output.search(/^\{/m);
  if (start < 0) throw new Error(`fio output contains no JSON: ${output.slice(0, 200)}`);
  return output.slice(start);
}

// Reads one percentile (fio keys look like "50.000000") and converts ns to us.
function percentileUs(stats: FioDirectionStats, percentile: number): number {
  const table = stats.clat_ns.percentile;
  if (!table) throw new Error('fio output has no completion-latency percentiles');
  const key = Object.keys(table).find((candidate) => Math.abs(Number(candidate) - percentile) < 1e-6);
  if (key === undefined) throw new Error(`fio output has no p${percentile} completion latency`);
  return (table[key] as number) / NS_PER_US;
}

// Parses fio JSON for a single job and returns the figures for the direction that was exercised.
export function parseFioJson(output: string, direction: 'read' | 'write'): JobMetrics {
  const parsed = JSON.parse(extractJsonText(output)) as { jobs?: FioJobStats[] };
  const job = parsed.jobs?.[0];
  if (!job) throw new Error('fio JSON has no jobs');
  if (job.error !== 0) throw new Error(`fio job ${job.jobname} reported error ${job.error}`);
  const stats = job[direction];
  if (stats.total_ios === 0) throw new Error(`fio job ${job.jobname} completed no ${direction} I/O`);
  return {
    iops: stats.iops,
    bandwidthBytesPerSec: stats.bw_bytes ?? stats.bw * 1024,
    clatP50Us: percentileUs(stats, 50),
    clatP99Us: percentileUs(stats, 99),
    clatMeanUs: stats.clat_ns.mean / NS_PER_US,
    totalIos: stats.total_ios,
  };
}
