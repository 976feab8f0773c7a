// Builds fio command lines for the nbd engine and runs them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FioJob, PREFILL_BLOCK_SIZE_BYTES, PREFILL_IO_DEPTH } from './fio-jobs';
import { JobMetrics, parseFioJson } from './fio-result';
import { describeCommand, describeExit, firstLines, runCommand } from './run-command';

export interface FioTiming {
  runtimeSec: number;
  rampSec: number;
}

/** Extra time fio gets beyond runtime+ramp before it is treated as hung. */
const FIO_SLACK_MS = 60_000;
/** Upper bound for the unmeasured prefill (1 GiB sequential at a pessimistic ~10 MB/s). */
const PREFILL_TIMEOUT_MS = 120_000;

// fio's nbd engine takes a libnbd URI; every target exposes a unix socket.
export function nbdUnixUri(socketPath: string, exportName = ''): string {
  return `nbd+unix:///${exportName}?socket=${socketPath}`;
}

// The options shared by measured jobs and the prefill: one job, one connection, fixed region.
function commonArgs(name: string, uri: string, regionBytes: number): string[] {
  return [`--name=${name}`, '--ioengine=nbd', `--uri=${uri}`, '--numjobs=1', `--size=${regionBytes}`, '--output-format=json'];
}

// Command line for one measured job (time-bounded, percentiles p50/p99).
export function measuredJobArgs(job: FioJob, uri: string, regionBytes: number, timing: FioTiming): string[] {
  return [
    ...commonArgs(job.id, uri, regionBytes),
    `--rw=${job.pattern}`,
    `--bs=${job.blockSizeBytes}`,
    `--iodepth=${job.ioDepth}`,
    '--time_based',
    `--runtime=${timing.runtimeSec}`,
    `--ramp_time=${timing.rampSec}`,
    '--percentile_list=50:99',
  ];
}

// Command line for the sequential fill that gives read jobs real data.
export function prefillArgs(uri: string, regionBytes: number): string[] {
  return [...commonArgs('prefill', uri, regionBytes), '--rw=write', `--bs=${PREFILL_BLOCK_SIZE_BYTES}`, `--iodepth=${PREFILL_IO_DEPTH}`];
}

// Runs fio with JSON written to a file in workDir (fio-LABEL.json) and returns the parsed figures.
export async function runFio(args: string[], direction: 'read' | 'write', workDir: string, label: string, timeoutMs: number): Promise<JobMetrics> {
  const outputPath = path.join(workDir, `fio-${label}.json`);
  const fullArgs = [...args, `--output=${outputPath}`];
  const result = await runCommand('fio', fullArgs, { timeoutMs });
  const output = fs.existsSync(outputPath) ? fs.readFileSync(outputPath, 'utf8') : '';
  if (result.exitCode !== 0) {
    throw new Error(`fio ${label} failed (${describeExit(result)}): ${firstLines(result.stderr + '\n' + output)}`);
  }
  try {
    return parseFioJson(output, direction);
  } catch (error) {
    throw new Error(`fio ${label}: ${(error as Error).message}; command: ${describeCommand('fio', fullArgs)}`);
  }
}

// Runs one measured job against a ready NBD export.
export function runMeasuredJob(job: FioJob, uri: string, regionBytes: number, timing: FioTiming, workDir: string): Promise<JobMetrics> {
  const timeoutMs = (timing.runtimeSec + timing.rampSec) * 1000 + FIO_SLACK_MS;
  const direction = job.pattern === 'randread' ? 'read' : 'write';
  return runFio(measuredJobArgs(job, uri, regionBytes, timing), direction, workDir, job.id, timeoutMs);
}

// Writes the whole region once so later reads return written data, not holes.
export async function runPrefill(uri: string, regionBytes: number, workDir: string): Promise<void> {
  await runFio(prefillArgs(uri, regionBytes), 'write', workDir, 'prefill', PREFILL_TIMEOUT_MS);
}
