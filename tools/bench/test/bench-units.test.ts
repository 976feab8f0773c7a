// Unit tests for the benchmark's pure parts: fio JSON parsing, goal checks, repetition merging, flags, markdown.
import * as assert from 'node:assert/strict';
import { parseOptions } from '../cli-options';
import { findJob } from '../fio-jobs';
import { JobMetrics, parseFioJson } from '../fio-result';
import { evaluateGoals, formatAgainst } from '../goals';
import { receivedBitsPerSecond } from '../iperf';
import { combineRepetitions } from '../matrix-runner';
import { renderMarkdown } from '../report-markdown';
import { BenchReport, CaseResult } from '../results';
import { quoteForShell } from '../run-command';

// A fio JSON document shaped like fio 3.33's output, with the nbd engine's log line in front.
function fioOutput(direction: 'read' | 'write', iops: number): string {
  const empty = { iops: 0, bw: 0, bw_bytes: 0, total_ios: 0, clat_ns: { mean: 0 } };
  const stats = {
    iops,
    bw: iops * 4,
    bw_bytes: iops * 4096,
    total_ios: iops * 2,
    clat_ns: { mean: 52_000, percentile: { '50.000000': 48_128, '99.000000': 250_880 } },
  };
  const job = { jobname: 'x', error: 0, read: direction === 'read' ? stats : empty, write: direction === 'write' ? stats : empty };
  return `fio: connected to NBD server\n${JSON.stringify({ 'fio version': 'fio-3.33', jobs: [job] }, null, 2)}\n`;
}

// Metrics with one figure overridden, for goal and repetition tests.
function metrics(overrides: Partial<JobMetrics>): JobMetrics {
  return { iops: 1000, bandwidthBytesPerSec: 1000 * 4096, clatP50Us: 50, clatP99Us: 200, clatMeanUs: 60, totalIos: 1, ...overrides };
}

// A successful case result.
function ok(targetId: string, jobId: string, m: JobMetrics, matrix: 'single' | 'mirrored' = 'single'): CaseResult {
  return { matrix, targetId, jobId, status: 'ok', metrics: m, notes: [] };
}

describe('bench: fio JSON', () => {
  it('skips the nbd engine log line and converts latencies to microseconds', () => {
    const parsed = parseFioJson(fioOutput('write', 12_000), 'write');
    assert.equal(parsed.iops, 12_000);
    assert.equal(parsed.bandwidthBytesPerSec, 12_000 * 4096);
    assert.equal(parsed.clatP50Us, 48.128);
    assert.equal(parsed.clatP99Us, 250.88);
  });

  it('rejects a job that completed no I/O in the requested direction', () => {
    assert.throws(() => parseFioJson(fioOutput('write', 10), 'read'), /no read I\/O/);
  });

  it('rejects output without JSON', () => {
    assert.throws(() => parseFioJson('fio: connected to NBD server\n', 'write'), /no JSON/);
  });
});

describe('bench: goals', () => {
  it('judges ratio, latency-ratio and latency-plus goals and explains missing figures', () => {
    const results: CaseResult[] = [
      ok('blockmirror', 'randwrite-4k-qd32', metrics({ iops: 1100 })),
      ok('nbdkit', 'randwrite-4k-qd32', metrics({ iops: 1000 })),
      ok('blockmirror', 'randwrite-4k-qd1', metrics({ clatP50Us: 70 })),
      ok('nbdkit', 'randwrite-4k-qd1', metrics({ clatP50Us: 50 })),
      ok('blockmirror-pair', 'randwrite-4k-qd1', metrics({ clatP50Us: 190 }), 'mirrored'),
      { matrix: 'single', targetId: 'nbdkit', jobId: 'randread-4k-qd32', status: 'failed', reason: 'boom', notes: [] },
    ];
    const goals = evaluateGoals(results, ['single', 'mirrored']);
    const byDescription = (text: string) => goals.find((goal) => goal.description.startsWith(text));
    assert.equal(byDescription('4k randwrite QD32 IOPS ≥ 1.0×')?.status, 'met');
    assert.equal(byDescription('4k randwrite QD1 p50 latency ≤ 1.2×')?.status, 'not met');
    assert.equal(byDescription('4k randwrite QD1 p50 latency ≤ single-node')?.status, 'not met');
    assert.match(byDescription('4k randwrite QD1 p50 latency ≤ single-node')?.detail ?? '', /\+120\.0 µs/);
    const read = byDescription('4k randread QD32');
    assert.equal(read?.status, 'n/a');
    assert.match(read?.detail ?? '', /no blockmirror figure/);
  });

  it('never prints a value just below a threshold as the threshold', () => {
    assert.equal(formatAgainst(0.99981, 1), '0.9998');
    assert.equal(formatAgainst(0.806, 1), '0.806');
    assert.equal(formatAgainst(1, 1), '1.000');
    assert.equal(formatAgainst(100.04, 100, 1), '100.04');
    assert.equal(formatAgainst(107.1, 100, 1), '107.1');
  });

  it('only evaluates the matrices that ran', () => {
    assert.ok(evaluateGoals([], ['single']).every((goal) => goal.matrix === 'single'));
  });
});

describe('bench: iperf3 JSON', () => {
  it('reads receiver throughput and surfaces iperf3 errors it reports with exit 0', () => {
    assert.equal(receivedBitsPerSecond(JSON.stringify({ end: { sum_received: { bits_per_second: 4.5e9 } } }), ''), 4.5e9);
    assert.throws(() => receivedBitsPerSecond(JSON.stringify({ end: {}, error: 'unable to connect to server: Connection refused' }), ''), /Connection refused/);
    assert.throws(() => receivedBitsPerSecond('garbage', 'boom'), /no JSON: boom/);
  });
});

describe('bench: repetitions', () => {
  it('reports the repetition with the median headline figure', () => {
    const job = findJob('randwrite-4k-qd32');
    const attempts = [900, 1200, 1000].map((iops) => ok('nbdkit', job.id, metrics({ iops })));
    const combined = combineRepetitions(job, attempts);
    assert.equal(combined.metrics?.iops, 1000);
    assert.equal(combined.repetitions?.length, 3);
  });

  it('fails the case when any repetition failed', () => {
    const job = findJob('write-1m-qd8');
    const failed: CaseResult = { matrix: 'single', targetId: 'nbdkit', jobId: job.id, status: 'failed', reason: 'x', notes: [] };
    const combined = combineRepetitions(job, [ok('nbdkit', job.id, metrics({})), failed]);
    assert.equal(combined.status, 'failed');
    assert.match(combined.notes.join(' '), /1 of 2 repetitions succeeded/);
  });
});

describe('bench: flags', () => {
  it('--quick shortens runs but an explicit --runtime wins', () => {
    assert.equal(parseOptions(['--quick']).runtimeSec, 2);
    assert.equal(parseOptions(['--quick', '--runtime', '5']).runtimeSec, 5);
    assert.deepEqual(parseOptions(['--only', 'mirrored']).matrices, ['mirrored']);
    assert.deepEqual(parseOptions(['--targets', 'nbdkit,qemu-nbd']).targetIds, ['nbdkit', 'qemu-nbd']);
  });

  it('rejects bad values', () => {
    assert.throws(() => parseOptions(['--runtime', 'abc']), /positive number/);
    assert.throws(() => parseOptions(['--only', 'both']), /single or mirrored/);
    assert.throws(() => parseOptions(['--repeat', '1.5']), /whole number/);
    assert.throws(() => parseOptions(['--bogus']), /unknown flag/);
  });

  it('quotes shell arguments only when needed', () => {
    assert.equal(quoteForShell('--out=/tmp/x.md'), '--out=/tmp/x.md');
    assert.equal(quoteForShell("it's"), `'it'\\''s'`);
  });
});

describe('bench: markdown', () => {
  it('shows figures, ratios, unavailable targets and goal status', () => {
    const results: CaseResult[] = [
      ok('blockmirror', 'randwrite-4k-qd32', metrics({ iops: 2000 })),
      ok('nbdkit', 'randwrite-4k-qd32', metrics({ iops: 1000 })),
      { matrix: 'mirrored', targetId: 'blockmirror-pair', jobId: 'randwrite-4k-qd32', status: 'unavailable', reason: 'not available: no primary', notes: [] },
    ];
    const report: BenchReport = {
      machine: {
        date: '2020-01-01T00:00:00.000Z', hostCpus: 2, cpuModel: 'cpu', memoryGiB: 1, kernel: 'Linux test', loadAverageAtStart: [1, 1, 1],
        node: 'v20', fio: 'fio-3.33', nbdkit: 'nbdkit', qemuNbd: 'qemu-nbd', qemuStorageDaemon: 'qsd', iperf3: 'iperf3', workDirFilesystem: 'ext4', gitCommit: 'abc',
      },
      settings: { runtimeSec: 10, rampSec: 2, sizeBytes: 1024 ** 3, repeat: 1, readPrefill: 'prefilled.', reproduceCommand: 'node dist/tools/bench/bench.js', matrices: ['single', 'mirrored'] },
      targets: [
        { id: 'blockmirror', matrix: 'single', title: 'blockmirror serve', isBlockmirror: true, settings: 's' },
        { id: 'nbdkit', matrix: 'single', title: 'nbdkit file plugin', isBlockmirror: false, settings: 's' },
        { id: 'blockmirror-pair', matrix: 'mirrored', title: 'pair', isBlockmirror: true, settings: 's', unavailableReason: 'no primary' },
      ],
      results,
      iperf: { bitsPerSecond: 10e9, durationSec: 5, command: 'iperf3' },
      goals: evaluateGoals(results, ['single', 'mirrored']),
    };
    const markdown = renderMarkdown(report);
    assert.match(markdown, /\| 4k randwrite QD32 \| blockmirror serve \| 2,000 \|.*IOPS 2\.00×/);
    assert.match(markdown, /\*\*not available\*\*: no primary/);
    assert.match(markdown, /4k randwrite QD32 IOPS ≥ 1\.0× nbdkit \| \*\*met\*\*/);
    assert.match(markdown, /10\.00 Gbit\/s/);
    assert.match(markdown, /node dist\/tools\/bench\/bench\.js/);
  });
});
