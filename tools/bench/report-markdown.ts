// Renders a run as BENCHMARKS.md.
import { FIO_JOBS } from './fio-jobs';
import { JobMetrics } from './fio-result';
import { BenchReport, CaseResult, metricsFor, SECONDARY_COST_NOTE, TargetSummary } from './results';
import { resyncSection } from './report-resync';
import { Matrix } from './target-types';

const MIB = 1024 ** 2;

// Ratio text like "0.93×", or "—" when either side is missing.
function ratioText(value: number | undefined, baseline: number | undefined): string {
  if (value === undefined || baseline === undefined || baseline === 0) return '—';
  return `${(value / baseline).toFixed(2)}×`;
}

// Compares a blockmirror case with a baseline on the job's headline figure and on p50 latency.
function comparisonCell(report: BenchReport, jobId: string, metrics: JobMetrics, baselineId: string): string {
  const baseline = metricsFor(report.results, baselineId, jobId);
  if (!baseline) return '—';
  const job = FIO_JOBS.find((candidate) => candidate.id === jobId);
  const headline = job?.headline === 'bandwidth'
    ? `BW ${ratioText(metrics.bandwidthBytesPerSec, baseline.bandwidthBytesPerSec)}`
    : `IOPS ${ratioText(metrics.iops, baseline.iops)}`;
  return `${headline}, p50 ${ratioText(metrics.clatP50Us, baseline.clatP50Us)}`;
}

// Which baselines a blockmirror figure is compared with in each matrix.
function baselinesFor(matrix: Matrix): Array<{ id: string; label: string }> {
  return matrix === 'single'
    ? [{ id: 'nbdkit', label: 'vs nbdkit' }]
    : [{ id: 'blockmirror', label: 'vs single-node blockmirror' }, { id: 'qemu-mirror', label: 'vs QEMU mirror' }];
}

// One table row per (job, target) case.
function caseRow(report: BenchReport, result: CaseResult, target: TargetSummary | undefined, matrix: Matrix): string {
  const job = FIO_JOBS.find((candidate) => candidate.id === result.jobId);
  const name = target?.title ?? result.targetId;
  const baselines = baselinesFor(matrix);
  if (result.status !== 'ok' || !result.metrics) {
    const why = result.status === 'unavailable' ? 'not available (see Targets)' : `**failed**: ${failureCell(result.reason ?? '')}`;
    const spreadCell = report.settings.repeat > 1 ? ' |' : '';
    return `| ${job?.title ?? result.jobId} | ${name} | ${why} | | | |${spreadCell} ${baselines.map(() => '').join(' | ')} |`;
  }
  const m = result.metrics;
  const comparisons = baselines.map((baseline) =>
    target?.isBlockmirror && baseline.id !== result.targetId ? comparisonCell(report, result.jobId, m, baseline.id) : '',
  );
  const spread = report.settings.repeat > 1 ? ` ${spreadText(result, job?.headline ?? 'iops')} |` : '';
  return `| ${job?.title ?? result.jobId} | ${name} | ${Math.round(m.iops).toLocaleString('en-US')} | ${(m.bandwidthBytesPerSec / MIB).toFixed(1)} | ` +
    `${m.clatP50Us.toFixed(1)} | ${m.clatP99Us.toFixed(1)} |${spread} ${comparisons.join(' | ')} |`;
}

// Range of the headline figure over the repetitions, relative to the reported (median) run.
function spreadText(result: CaseResult, headline: 'iops' | 'bandwidth'): string {
  const runs = result.repetitions ?? [];
  if (runs.length < 2 || !result.metrics) return '—';
  const value = (metrics: JobMetrics): number => (headline === 'bandwidth' ? metrics.bandwidthBytesPerSec : metrics.iops);
  const values = runs.map(value);
  const median = value(result.metrics);
  const percent = (x: number): string => `${x >= median ? '+' : ''}${(((x - median) / median) * 100).toFixed(0)}%`;
  return `${percent(Math.min(...values))} / ${percent(Math.max(...values))} (${runs.length} runs)`;
}

/** A failure reason longer than this is cut (with an ellipsis): it may carry a whole log line. */
const FAILURE_REASON_CHARS_MAX = 300;

// Keeps text from breaking the table: escaped pipes, no line breaks.
function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

// A failure reason as a table cell, cut to FAILURE_REASON_CHARS_MAX. Goal details are never cut.
function failureCell(reason: string): string {
  const cell = escapeCell(reason);
  return cell.length <= FAILURE_REASON_CHARS_MAX ? cell : `${cell.slice(0, FAILURE_REASON_CHARS_MAX)}…`;
}

// Cases of one matrix in job order, then in the order targets are listed.
function sortedCases(report: BenchReport, matrix: Matrix): CaseResult[] {
  const jobIndex = (result: CaseResult): number => FIO_JOBS.findIndex((job) => job.id === result.jobId);
  const targetIndex = (result: CaseResult): number => report.targets.findIndex((target) => target.id === result.targetId);
  return report.results
    .filter((result) => result.matrix === matrix)
    .sort((left, right) => jobIndex(left) - jobIndex(right) || targetIndex(left) - targetIndex(right));
}

// The results table of one matrix, in job order then target order.
function matrixTable(report: BenchReport, matrix: Matrix): string[] {
  const results = sortedCases(report, matrix);
  if (results.length === 0) return ['Not run.'];
  const baselines = baselinesFor(matrix);
  const spreadHeader = report.settings.repeat > 1 ? ' headline min / max vs median |' : '';
  const spreadRule = report.settings.repeat > 1 ? '---|' : '';
  const lines = [
    `| Job | Target | IOPS | MiB/s | p50 clat (µs) | p99 clat (µs) |${spreadHeader} ${baselines.map((baseline) => baseline.label).join(' | ')} |`,
    `|---|---|--:|--:|--:|--:|${spreadRule}${baselines.map(() => '---').join('|')}|`,
  ];
  for (const result of results) {
    lines.push(caseRow(report, result, report.targets.find((target) => target.id === result.targetId), matrix));
  }
  const noted = results.filter((result) => result.notes.length > 0 && result.status === 'ok');
  const replicaChecked = noted.filter((result) => result.notes.includes('replica identical')).length;
  if (replicaChecked > 0) lines.push('', `After each mirrored case the primary and replica files were compared byte for byte: identical in ${replicaChecked} of ${replicaChecked} successful cases.`);
  const costs = noted.flatMap((result) => result.notes.filter((note) => note.startsWith(SECONDARY_COST_NOTE)).map((note) => ({ result, note })));
  if (costs.length > 0) {
    lines.push('', 'What each write cost the secondary (its status counters after the case, prefill included):', '');
    for (const { result, note } of costs) lines.push(`- ${FIO_JOBS.find((job) => job.id === result.jobId)?.title ?? result.jobId}: ${note.slice(SECONDARY_COST_NOTE.length)}`);
  }
  return lines;
}

// The issue targets with met / not met / n/a.
function goalsTable(report: BenchReport): string[] {
  if (report.goals.length === 0) return ['No goals evaluated.'];
  return [
    '| Matrix | Goal | Status | Detail |',
    '|---|---|---|---|',
    ...report.goals.map((goal) => `| ${goal.matrix} | ${goal.description} | ${goal.status === 'met' ? '**met**' : goal.status === 'not met' ? '**not met**' : 'n/a'} | ${escapeCell(goal.detail)} |`),
  ];
}

// Target list with the exact settings used and whether the target could run.
function targetsSection(report: BenchReport): string[] {
  return report.targets.map((target) => {
    const availability = target.unavailableReason ? `**not available**: ${target.unavailableReason}` : 'available';
    return `- **${target.title}** (\`${target.id}\`, ${target.matrix}) — ${availability}. ${target.settings}`;
  });
}

// Machine table: everything that changes how the figures should be read.
function machineSection(report: BenchReport): string[] {
  const m = report.machine;
  return [
    '| | |',
    '|---|---|',
    `| Date | ${m.date} |`,
    `| CPUs (nproc) | ${m.hostCpus} × ${m.cpuModel} |`,
    `| Memory | ${m.memoryGiB} GiB |`,
    `| Kernel | ${m.kernel} |`,
    `| Load average at start (1/5/15 min) | ${m.loadAverageAtStart.map((value) => value.toFixed(2)).join(' / ')} |`,
    `| Node | ${m.node} |`,
    `| fio | ${m.fio} |`,
    `| nbdkit | ${m.nbdkit} |`,
    `| qemu-nbd | ${m.qemuNbd} |`,
    `| qemu-storage-daemon | ${m.qemuStorageDaemon} |`,
    `| iperf3 | ${m.iperf3} |`,
    `| Filesystem of the store files | ${m.workDirFilesystem} |`,
    `| blockmirror commit | ${m.gitCommit} |`,
  ];
}

// iperf3 across the veth, the ceiling for any replication stream.
function networkSection(report: BenchReport): string[] {
  if (!report.settings.matrices.includes('mirrored') && !report.resync) return ['Not run (single-node matrix only).'];
  const iperf = report.iperf;
  if (!iperf) return ['Not measured.'];
  if ('error' in iperf) return [`iperf3 failed: ${iperf.error}`];
  return [`iperf3 TCP, ${iperf.durationSec} s, namespace A → B over the veth: **${(iperf.bitsPerSecond / 1e9).toFixed(2)} Gbit/s** ` +
    `(${(iperf.bitsPerSecond / 8 / MIB).toFixed(0)} MiB/s). Command: \`${iperf.command}\`.`];
}

// The whole report.
export function renderMarkdown(report: BenchReport): string {
  const s = report.settings;
  const lines = [
    '# blockmirror benchmarks',
    '',
    `Generated by \`tools/bench\` on ${report.machine.date}. Reproduce with:`,
    '',
    '```sh',
    s.reproduceCommand,
    '```',
    '',
    'See [docs/bench.md](docs/bench.md) for what is measured and how to read it. All targets ran on the same machine in the same run; ' +
      'figures from a shared or busy machine (see the load average) are noisy, compare ratios rather than absolute numbers.',
    '',
    '## Machine',
    '',
    ...machineSection(report),
    '',
    '## Method',
    '',
    `- fio \`--ioengine=nbd\` (libnbd, asynchronous: one NBD connection per job, \`iodepth\` requests in flight on it), numjobs=1, ` +
      `\`--time_based --runtime=${s.runtimeSec} --ramp_time=${s.rampSec}\`, \`--size=${s.sizeBytes}\` (whole device), ` +
      'default fio random generator and seed (every target sees the same offsets), `--output-format=json`. ' +
      'IOPS and MiB/s are fio\'s averages over the measured window; p50/p99 are completion latency (clat) percentiles.',
    `- Every (job, target) pair starts from a fresh ${s.sizeBytes / 1024 ** 3} GiB sparse file and a freshly started server; jobs run in job-major order so ` +
      'the targets of one job are measured close together in time.' +
      (s.repeat > 1 ? ` Each case ran ${s.repeat} times, interleaved across targets; the table shows the run with the median headline figure (IOPS, or MiB/s for 64k/1M).` : ' Each case ran once.'),
    `- ${s.readPrefill}`,
    '- Store files live in the host page cache for every target alike (no target uses O_DIRECT); the nbd engine has no `direct` option.',
    '',
    '## Single node',
    '',
    ...matrixTable(report, 'single'),
    '',
    '## Mirrored',
    '',
    ...matrixTable(report, 'mirrored'),
    '',
    '### Network between the namespaces',
    '',
    ...networkSection(report),
    '',
    '## Resync',
    '',
    ...resyncSection(report),
    '',
    '## Goals from the issues',
    '',
    ...goalsTable(report),
    '',
    '## Targets and settings',
    '',
    ...targetsSection(report),
    '',
  ];
  return lines.join('\n');
}
