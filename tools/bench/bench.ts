// Entry point: measures blockmirror against nbdkit and QEMU on this machine and writes BENCHMARKS.md.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from './blockmirror-commands';
import { CleanupRegistry } from './cleanup-registry';
import { BenchOptions, parseOptions, USAGE } from './cli-options';
import { FIO_JOBS, findJob, PREFILL_BLOCK_SIZE_BYTES, PREFILL_IO_DEPTH } from './fio-jobs';
import { evaluateAllGoals } from './goals';
import { IperfResult, measureVethThroughput } from './iperf';
import { collectMachineInfo } from './machine-info';
import { runMatrix } from './matrix-runner';
import { blockmirrorPairTarget, qemuMirrorTarget } from './mirrored-targets';
import { NamespacePair, removeStaleNamespaces } from './namespace-pair';
import { renderMarkdown } from './report-markdown';
import { BenchReport, CaseResult, ResyncReport, RunSettings, TargetSummary } from './results';
import { runResyncSection } from './resync-runner';
import { killActiveCommands, quoteForShell } from './run-command';
import { blockmirrorSingleTarget, nbdkitTarget, qemuNbdTarget } from './single-targets';
import { BenchTarget, Matrix } from './target-types';

/** The device size every target exports. */
const DEVICE_SIZE_BYTES = 1024 ** 3;
const ALL_TARGETS: readonly BenchTarget[] = [blockmirrorSingleTarget, nbdkitTarget, qemuNbdTarget, blockmirrorPairTarget, qemuMirrorTarget];

// Progress goes to stderr so stdout stays clean.
function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

// Applies --only and --targets, rejecting unknown target ids.
function selectTargets(options: BenchOptions): BenchTarget[] {
  for (const id of options.targetIds ?? []) {
    if (!ALL_TARGETS.some((target) => target.id === id)) {
      throw new Error(`unknown target "${id}"; known: ${ALL_TARGETS.map((target) => target.id).join(', ')}`);
    }
  }
  return ALL_TARGETS.filter((target) => options.matrices.includes(target.matrix) && (!options.targetIds || options.targetIds.includes(target.id)));
}

// The command line that reproduces this run from the repository root (paths outside it made absolute).
function reproduceCommand(argv: readonly string[]): string {
  const pathFlags = new Set(['--out', '--json', '--work-dir']);
  const args = argv.map((arg, index) => {
    const flag = argv[index - 1];
    if (flag === undefined || !pathFlags.has(flag)) return arg;
    const absolute = path.resolve(arg);
    const relative = path.relative(REPO_ROOT, absolute);
    return relative.startsWith('..') || path.isAbsolute(relative) ? absolute : relative;
  });
  return ['npm run build:ts && node dist/tools/bench/bench.js', ...args.map(quoteForShell)].join(' ');
}

// Marks every job of an unavailable target so tables and goals can say why a figure is missing.
function unavailableResults(target: BenchTarget, reason: string, jobIds: readonly string[]): CaseResult[] {
  return jobIds.map((jobId) => ({ matrix: target.matrix, targetId: target.id, jobId, status: 'unavailable' as const, reason: `not available: ${reason}`, notes: [] }));
}

/** The command that reproduces only the resync section. */
const RESYNC_REPRODUCE_COMMAND = 'npm run build:ts && node dist/tools/bench/bench.js --only resync';

// Runs the mirrored matrix and/or the resync section inside one fresh namespace pair, measuring the veth with iperf3 first.
async function runInNamespaces(
  targets: BenchTarget[],
  options: BenchOptions,
  common: { jobs: typeof FIO_JOBS; workDir: string; cleanup: CleanupRegistry; pairUnavailableReason: string | undefined },
): Promise<{ results: CaseResult[]; iperf: IperfResult | { error: string }; resync?: ResyncReport }> {
  await removeStaleNamespaces(log);
  const namespaces = await NamespacePair.create(common.cleanup);
  log(`namespaces ${namespaces.nameA} and ${namespaces.nameB} created`);
  try {
    let iperf: IperfResult | { error: string };
    try {
      iperf = await measureVethThroughput(namespaces, options.iperfSec, common.workDir, common.cleanup);
      log(`iperf3 across the veth: ${(iperf.bitsPerSecond / 1e9).toFixed(2)} Gbit/s`);
    } catch (error) {
      iperf = { error: (error as Error).message };
      log(`iperf3 failed: ${iperf.error}`);
    }
    const results = options.matrices.includes('mirrored')
      ? await runMatrix({
        matrix: 'mirrored', jobs: common.jobs, targets, timing: { runtimeSec: options.runtimeSec, rampSec: options.rampSec }, repeat: options.repeat,
        sizeBytes: DEVICE_SIZE_BYTES, workDir: common.workDir, cleanup: common.cleanup, namespaces, keepStores: options.keepWorkDir, log,
      })
      : [];
    const resync = options.resync
      ? await runResyncSection({
        namespaces, workDir: common.workDir, cleanup: common.cleanup, volumeBytes: DEVICE_SIZE_BYTES,
        runtimeSec: options.runtimeSec, rampSec: options.rampSec, reproduceCommand: RESYNC_REPRODUCE_COMMAND, log,
      }, common.pairUnavailableReason)
      : undefined;
    return { results, iperf, resync };
  } finally {
    await namespaces.destroy();
    log('namespaces deleted');
  }
}

// Runs everything the options ask for and returns the report data.
async function runBenchmark(options: BenchOptions, argv: readonly string[], workDir: string, cleanup: CleanupRegistry): Promise<BenchReport> {
  const machine = await collectMachineInfo(workDir);
  const jobs = options.jobIds ? options.jobIds.map(findJob) : FIO_JOBS;
  const selected = selectTargets(options);
  const summaries: TargetSummary[] = [];
  const results: CaseResult[] = [];
  const available = new Map<Matrix, BenchTarget[]>([['single', []], ['mirrored', []]]);
  for (const target of selected) {
    const reason = await target.unavailableReason({ dir: workDir, sizeBytes: DEVICE_SIZE_BYTES, cleanup });
    summaries.push({ id: target.id, matrix: target.matrix, title: target.title, isBlockmirror: target.isBlockmirror, settings: target.settings, unavailableReason: reason });
    if (reason) {
      log(`${target.id}: not available: ${reason}`);
      results.push(...unavailableResults(target, reason, jobs.map((job) => job.id)));
    } else {
      available.get(target.matrix)?.push(target);
    }
  }
  const timing = { runtimeSec: options.runtimeSec, rampSec: options.rampSec };
  let iperf: BenchReport['iperf'];
  let resync: ResyncReport | undefined;
  if (options.matrices.includes('single')) {
    results.push(...(await runMatrix({ matrix: 'single', jobs, targets: available.get('single') ?? [], timing, repeat: options.repeat, sizeBytes: DEVICE_SIZE_BYTES, workDir, cleanup, keepStores: options.keepWorkDir, log })));
  }
  if (options.matrices.includes('mirrored') || options.resync) {
    const pairSummary = summaries.find((summary) => summary.id === blockmirrorPairTarget.id);
    const pairUnavailableReason = !options.resync ? undefined
      : pairSummary ? pairSummary.unavailableReason
        : await blockmirrorPairTarget.unavailableReason({ dir: workDir, sizeBytes: DEVICE_SIZE_BYTES, cleanup });
    const mirrored = await runInNamespaces(available.get('mirrored') ?? [], options, { jobs, workDir, cleanup, pairUnavailableReason });
    results.push(...mirrored.results);
    iperf = mirrored.iperf;
    resync = mirrored.resync;
  }
  const settings: RunSettings = {
    runtimeSec: options.runtimeSec,
    rampSec: options.rampSec,
    sizeBytes: DEVICE_SIZE_BYTES,
    repeat: options.repeat,
    readPrefill:
      `Before 4k randread QD32 the whole device is written once (fio rw=write bs=${PREFILL_BLOCK_SIZE_BYTES / 1024 ** 2}M iodepth=${PREFILL_IO_DEPTH}, ` +
      'unmeasured) through the same freshly started server, so reads return written blocks rather than holes.',
    reproduceCommand: reproduceCommand(argv),
    matrices: options.matrices,
    resync: options.resync,
  };
  return { machine, settings, targets: summaries, results, iperf, resync, goals: evaluateAllGoals({ results, settings, resync, iperf }) };
}

// Re-renders the markdown of an earlier run from its JSON; the figures and the reproduce command are the original run's.
function renderSavedReport(jsonPath: string, outPath: string): number {
  const saved = JSON.parse(fs.readFileSync(jsonPath, 'utf8')) as BenchReport;
  const report: BenchReport = { ...saved, goals: evaluateAllGoals(saved) };
  fs.writeFileSync(outPath, renderMarkdown(report));
  log(`rendered ${outPath} from ${jsonPath}`);
  return 0;
}

// Parses flags, runs, writes the report, and always tears down what it started.
export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  if (options.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (options.fromJsonPath) return renderSavedReport(options.fromJsonPath, options.outPath);
  const cleanup = new CleanupRegistry();
  cleanup.installProcessHandlers(log, killActiveCommands);
  const workDir = fs.mkdtempSync(path.join(options.workParent ?? os.tmpdir(), 'bmbench-'));
  if (!options.keepWorkDir) {
    // Registered first, so it runs last: after every server that writes into the directory has stopped.
    const remove = (): void => fs.rmSync(workDir, { recursive: true, force: true });
    cleanup.add({ description: `remove ${workDir}`, run: async () => remove(), runSync: remove });
  }
  log(`work directory ${workDir}; runtime ${options.runtimeSec} s, ramp ${options.rampSec} s`);
  try {
    const report = await runBenchmark(options, argv, workDir, cleanup);
    fs.writeFileSync(options.outPath, renderMarkdown(report));
    log(`wrote ${options.outPath}`);
    if (options.jsonPath) {
      fs.writeFileSync(options.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
      log(`wrote ${options.jsonPath}`);
    }
    const failed = report.results.filter((result) => result.status === 'failed');
    for (const result of failed) log(`FAILED ${result.matrix} ${result.jobId} on ${result.targetId}: ${result.reason ?? ''}`);
    return failed.length > 0 ? 2 : 0;
  } finally {
    await cleanup.runAll(log);
    if (options.keepWorkDir) log(`kept ${workDir}`);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      log(`error: ${(error as Error).stack ?? String(error)}`);
      process.exit(1);
    },
  );
}
