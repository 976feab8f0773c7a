// Runs the fio matrix over a set of targets: a fresh store and server per (job, target), job-major order.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CleanupRegistry } from './cleanup-registry';
import { FioJob } from './fio-jobs';
import { FioTiming, runMeasuredJob, runPrefill } from './fio-runner';
import { NamespacePair } from './namespace-pair';
import { JobMetrics } from './fio-result';
import { CaseResult } from './results';
import { runCommand } from './run-command';
import { BenchTarget, Matrix } from './target-types';
import { medianBy } from './median';

/** Comparing two 1 GiB files from the page cache takes about a second; allow a slow disk. */
const REPLICA_COMPARE_TIMEOUT_MS = 300_000;

export interface MatrixRun {
  matrix: Matrix;
  jobs: readonly FioJob[];
  /** Only targets that are available; unavailable ones are reported by the caller. */
  targets: readonly BenchTarget[];
  timing: FioTiming;
  /** Each (job, target) is measured this many times; the run with the median headline figure is reported. */
  repeat: number;
  sizeBytes: number;
  workDir: string;
  cleanup: CleanupRegistry;
  namespaces?: NamespacePair;
  /** Keep each case's store files (--keep); otherwise they are deleted once the case is measured and checked. */
  keepStores?: boolean;
  log: (line: string) => void;
}

// Byte-compares primary and replica after the servers stopped; a mirror that lost writes must not report numbers.
export async function compareReplica(files: readonly [string, string]): Promise<void> {
  const result = await runCommand('cmp', ['--silent', files[0], files[1]], { timeoutMs: REPLICA_COMPARE_TIMEOUT_MS });
  if (result.exitCode === 1) throw new Error(`replica differs from primary (${path.basename(files[0])} vs ${path.basename(files[1])})`);
  if (result.exitCode !== 0) throw new Error(`cmp failed: ${result.stderr.trim()}`);
}

// Measures one job on one target from a fresh start, always stopping what it started.
async function runCase(run: MatrixRun, job: FioJob, target: BenchTarget, repetition: number): Promise<CaseResult> {
  // A directory per repetition: a server may leave its socket file behind, and the next start must not find it.
  const caseDir = path.join(run.workDir, run.matrix, `${job.id}--${target.id}${repetition > 1 ? `--run${repetition}` : ''}`);
  fs.mkdirSync(caseDir, { recursive: true });
  const notes: string[] = [];
  const base = { matrix: run.matrix, targetId: target.id, jobId: job.id };
  let running;
  try {
    running = await target.start({ caseDir, sizeBytes: run.sizeBytes, cleanup: run.cleanup, namespaces: run.namespaces });
  } catch (error) {
    return { ...base, status: 'failed', reason: `start: ${(error as Error).message}`, notes };
  }
  let metrics;
  try {
    if (job.needsPrefill) {
      await runPrefill(running.uri, run.sizeBytes, caseDir);
      notes.push('region prefilled');
    }
    metrics = await runMeasuredJob(job, running.uri, run.sizeBytes, run.timing, caseDir);
    await running.checkStillValid();
    if (running.describeSecondaryCost) notes.push(await running.describeSecondaryCost());
  } catch (error) {
    await running.stop().catch(() => undefined);
    return { ...base, status: 'failed', reason: (error as Error).message, notes };
  }
  try {
    await running.stop();
    if (running.replicaFiles) {
      await compareReplica(running.replicaFiles);
      notes.push('replica identical');
    }
  } catch (error) {
    return { ...base, status: 'failed', reason: `after run: ${(error as Error).message}`, metrics, notes };
  }
  return { ...base, status: 'ok', metrics, notes };
}

// Job-major order, repetitions interleaved across targets, so each job's targets see the same machine conditions.
export async function runMatrix(run: MatrixRun): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const job of run.jobs) {
    const attempts = new Map<string, CaseResult[]>(run.targets.map((target) => [target.id, []]));
    for (let repetition = 1; repetition <= run.repeat; repetition++) {
      for (const target of run.targets) {
        const label = `[${run.matrix}] ${job.id} on ${target.id}${run.repeat > 1 ? ` (run ${repetition}/${run.repeat})` : ''}`;
        run.log(`${label} ...`);
        const result = await runCase(run, job, target, repetition);
        if (!run.keepStores) removeStoreFiles(path.join(run.workDir, run.matrix));
        run.log(`${label}: ${summarize(result)}`);
        attempts.get(target.id)?.push(result);
      }
    }
    for (const target of run.targets) results.push(combineRepetitions(job, attempts.get(target.id) ?? []));
  }
  return results;
}

// Deletes the (up to device-sized) store files of finished cases: with repetitions they would fill the disk.
function removeStoreFiles(matrixDir: string): void {
  for (const caseName of fs.readdirSync(matrixDir)) {
    const caseDir = path.join(matrixDir, caseName);
    if (!fs.statSync(caseDir).isDirectory()) continue;
    for (const file of fs.readdirSync(caseDir)) if (file.endsWith('.img')) fs.rmSync(path.join(caseDir, file), { force: true });
  }
}

// Reports the repetition with the median headline figure; any failed repetition fails the case.
export function combineRepetitions(job: FioJob, attempts: readonly CaseResult[]): CaseResult {
  const failed = attempts.find((attempt) => attempt.status !== 'ok' || !attempt.metrics);
  if (failed || attempts.length === 0) {
    const okCount = attempts.filter((attempt) => attempt.status === 'ok').length;
    return { ...(failed ?? attempts[0]) as CaseResult, notes: [...(failed?.notes ?? []), `${okCount} of ${attempts.length} repetitions succeeded`] };
  }
  const headline = (result: CaseResult): number =>
    job.headline === 'bandwidth' ? (result.metrics as JobMetrics).bandwidthBytesPerSec : (result.metrics as JobMetrics).iops;
  const median = medianBy(attempts, headline);
  return { ...median, repetitions: attempts.map((attempt) => attempt.metrics as JobMetrics) };
}

// One log line per case.
function summarize(result: CaseResult): string {
  if (result.status !== 'ok' || !result.metrics) return `${result.status}: ${result.reason ?? ''}`;
  const m = result.metrics;
  return `${Math.round(m.iops)} IOPS, ${(m.bandwidthBytesPerSec / 1024 ** 2).toFixed(1)} MiB/s, p50 ${m.clatP50Us.toFixed(1)} us, p99 ${m.clatP99Us.toFixed(1)} us`;
}
