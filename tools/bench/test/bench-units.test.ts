// Unit tests for the benchmark's pure parts: fio JSON parsing, goal checks, repetition merging, flags, markdown.
import * as assert from 'node:assert/strict';
import { parseOptions } from '../cli-options';
import { findJob } from '../fio-jobs';
import { JobMetrics, parseFioJson } from '../fio-result';
import { evaluateAllGoals, evaluateGoals, evaluateResyncGoals, formatAgainst } from '../goals';
import { receivedBitsPerSecond } from '../iperf';
import { combineRepetitions } from '../matrix-runner';
import { renderMarkdown } from '../report-markdown';
import { resyncSection } from '../report-resync';
import { BenchReport, CaseResult, ResyncReport } from '../results';
import { dirtyShareAsExpected, engineSeconds, resyncRateFor, scatteredWriteArgs, secondaryDiskArgs } from '../resync-workloads';
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

  it('--only selects a matrix or the resync section; a full run includes resync', () => {
    assert.deepEqual(parseOptions([]).matrices, ['single', 'mirrored']);
    assert.equal(parseOptions([]).resync, true);
    assert.equal(parseOptions(['--only', 'single']).resync, false);
    assert.equal(parseOptions(['--only', 'mirrored']).resync, false);
    assert.deepEqual(parseOptions(['--only', 'resync']).matrices, []);
    assert.equal(parseOptions(['--only', 'resync']).resync, true);
    assert.equal(parseOptions(['--targets', 'nbdkit']).resync, false);
    assert.equal(parseOptions(['--targets', 'blockmirror-pair']).resync, true);
  });

  it('rejects bad values', () => {
    assert.throws(() => parseOptions(['--runtime', 'abc']), /positive number/);
    assert.throws(() => parseOptions(['--only', 'both']), /single, mirrored or resync/);
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
    // A failed case's reason (it may be a whole log) is cut at 300 characters, with an ellipsis; pipes are escaped.
    const failed: CaseResult = { matrix: 'single', targetId: 'nbdkit', jobId: 'randwrite-4k-qd1', status: 'failed', reason: `a|b ${'x'.repeat(400)}`, notes: [] };
    const cut = renderMarkdown({ ...report, results: [...results, failed] });
    assert.match(cut, new RegExp(`\\*\\*failed\\*\\*: a\\\\\\|b x{295}… \\|`));
  });
});

// A resync report with the three scenarios' figures; `overrides` replaces whole scenarios.
function resyncReport(overrides: Partial<ResyncReport> = {}): ResyncReport {
  const mib = 1024 ** 2;
  return {
    settings: ['pair with --keepalive-timeout 1500'],
    reproduceCommand: 'npm run build:ts && node dist/tools/bench/bench.js --only resync',
    dirty: {
      status: 'ok', notes: ['replica identical to the primary after the resync (cmp)'],
      figures: {
        volumeBytes: 1024 * mib, writtenBytes: 102 * mib, outOfSyncBytesWhileDown: 102 * mib, peerStateWhileDown: 'degraded',
        linkUpToInSyncSec: 1, resyncEngineSec: 0.5, bytesDone: 102 * mib, bytesSent: 102 * mib, regionsZero: 0, statusBytesPerSecond: 204 * mib,
        secondaryDiskBytesPerSec: 408 * mib, repetitionBytesPerSec: [180 * mib, 204 * mib, 230 * mib],
      },
    },
    fullSync: {
      status: 'ok', notes: [],
      figures: {
        volumeBytes: 1024 * mib, writtenBytes: 64 * mib, allocatedBytes: 64 * mib, startToInSyncSec: 3, resyncEngineSec: 2,
        bytesTotal: 1024 * mib, bytesDone: 1024 * mib, bytesSent: 64 * mib, regionsZero: 15360, statusBytesPerSecond: 512 * mib,
      },
    },
    iops: {
      status: 'ok', notes: [],
      figures: {
        normal: metrics({ iops: 10_000 }), duringResync: metrics({ iops: 4_000 }), resyncRateBytesPerSec: 40 * mib,
        dirtyBytes: 1024 * mib, resyncBytesDuringJob: 300 * mib, runtimeSec: 8, rampSec: 2,
      },
    },
    ...overrides,
  };
}

describe('bench: resync section', () => {
  const iperf = { bitsPerSecond: 8 * 1024 ** 2 * 100, durationSec: 5, command: 'iperf3' };

  it('judges resync throughput against iperf3, sent bytes against allocated data, IOPS during resync against normal', () => {
    const goals = evaluateResyncGoals(resyncReport(), iperf);
    assert.deepEqual(goals.map((goal) => goal.status), ['met', 'met', 'not met']);
    // 102 MiB in the resync's own 0.5 s, not over the 1 s from link-up (which adds the reconnect).
    assert.match(goals[0]?.detail ?? '', /204\.0 MiB\/s vs 100 MiB\/s = 2\.040×/);
    assert.match(goals[0]?.detail ?? '', /disk alone \(fio, same writes\) takes 408 MiB\/s = 4\.08× iperf3, and the resync reached 0\.50× of that/);
    assert.match(goals[1]?.detail ?? '', /1\.000× \(need ≤ 1\.1×\); 6\.3% of the 1 GiB volume/);
    assert.match(goals[2]?.detail ?? '', /4000 vs 10000 IOPS = 0\.400×/);
    // Without stream-floor figures (older reports) the detail says nothing of it.
    assert.doesNotMatch(goals[0]?.detail ?? '', /stream-floor/);
  });

  it('sets the resync beside stream-floor when the floor was measured, in the goal and in the report', () => {
    const report = resyncReport();
    if (report.dirty.status !== 'ok') throw new Error('fixture');
    report.dirty.figures.streamFloorBytesPerSec = 255 * 1024 ** 2;
    report.dirty.figures.repetitionStreamFloorBytesPerSec = [250 * 1024 ** 2, 255 * 1024 ** 2, 300 * 1024 ** 2];
    const goals = evaluateResyncGoals(report, iperf);
    assert.match(goals[0]?.detail ?? '', /stream-floor \(the same reads, checksums and writes in bare C\+\+\) moved 255 MiB\/s = 2\.55× iperf3, and the resync reached 0\.80× of that/);
    const markdown = resyncSection({ iperf, resync: report } as unknown as BenchReport).join('\n');
    assert.match(markdown, /stream-floor: .* \| 255\.0 MiB\/s \(2\.55× iperf3\); the resync reached 0\.80× of it \(runs: 250\.0, 255\.0, 300\.0 MiB\/s\) \|/);
    report.dirty.figures.streamFloorBytesPerSec = null;
    assert.match(resyncSection({ iperf, resync: report } as unknown as BenchReport).join('\n'), /stream-floor: .* \| — \|/);
  });

  it('says n/a with the reason when a scenario failed, iperf3 is missing, or the sync was not full', () => {
    const failed = resyncReport({ iops: { status: 'failed', reason: 'resync finished before the measured job did', notes: [] } });
    const goals = evaluateResyncGoals(failed, { error: 'no route' });
    assert.equal(goals[0]?.status, 'n/a');
    assert.match(goals[0]?.detail ?? '', /no iperf3 figure: no route/);
    assert.match(goals[2]?.detail ?? '', /failed: resync finished before/);
    const partial = resyncReport();
    if (partial.fullSync.status === 'ok') partial.fullSync.figures.bytesTotal = 100;
    assert.match(evaluateResyncGoals(partial, iperf)[1]?.detail ?? '', /not a full sync/);
    assert.deepEqual(evaluateResyncGoals(undefined, iperf), []);
  });

  it('builds the dirty write and the resync rate from the named constants', () => {
    const args = scatteredWriteArgs('dirty', 'nbd+unix:///?socket=s', 1024 ** 3, 102 * 1024 ** 2);
    assert.ok(args.includes('--rw=randwrite') && args.includes('--bs=65536') && args.includes('--refill_buffers') && args.includes(`--io_size=${102 * 1024 ** 2}`));
    const disk = secondaryDiskArgs('disk', '/tmp/f.img', 1024 ** 3, 102 * 1024 ** 2);
    assert.ok(disk.includes('--ioengine=psync') && disk.includes('--filename=/tmp/f.img') && disk.includes('--bs=65536') && disk.includes(`--io_size=${102 * 1024 ** 2}`));
    assert.equal(dirtyShareAsExpected(102 * 1024 ** 2, 1024 ** 3), true);
    assert.equal(dirtyShareAsExpected(200 * 1024 ** 2, 1024 ** 3), false);
    assert.equal(resyncRateFor(1024 ** 3, 10) % 1024 ** 2, 0);
    assert.ok(1024 ** 3 / resyncRateFor(1024 ** 3, 10) >= 30);
    assert.equal(engineSeconds('2020-01-01T00:00:00.000Z', '2020-01-01T00:00:01.500Z'), 1.5);
    assert.equal(engineSeconds(null, '2020-01-01T00:00:01.500Z'), null);
  });

  it('renders the resync section with its reproduce command, and goals re-evaluate from saved JSON', () => {
    const settings = { runtimeSec: 10, rampSec: 2, sizeBytes: 1024 ** 3, repeat: 1, readPrefill: 'p.', reproduceCommand: 'x', matrices: [], resync: true };
    const report: BenchReport = {
      machine: {
        date: '2020-01-01T00:00:00.000Z', hostCpus: 2, cpuModel: 'cpu', memoryGiB: 1, kernel: 'Linux test', loadAverageAtStart: [1, 1, 1],
        node: 'v20', fio: 'fio-3.33', nbdkit: 'nbdkit', qemuNbd: 'qemu-nbd', qemuStorageDaemon: 'qsd', iperf3: 'iperf3', workDirFilesystem: 'ext4', gitCommit: 'abc',
      },
      settings, targets: [], results: [], iperf, resync: resyncReport(), goals: [],
    };
    report.goals = evaluateAllGoals(report);
    const markdown = renderMarkdown(report);
    assert.match(markdown, /## Resync\n\nReproduce this section alone with:\n\n```sh\nnpm run build:ts && node dist\/tools\/bench\/bench\.js --only resync/);
    assert.match(markdown, /\*\*Resync throughput\*\* = bytesDone ÷ resync time \(status startedAt → finishedAt\), median run \| 0\.50 s → \*\*204\.0 MiB\/s \(2\.04× iperf3\)\*\*/);
    assert.match(markdown, /\| Every run \(3, each on a fresh pair, in run order\) \| 180\.0 MiB\/s \(1\.80× iperf3\), 204\.0 MiB\/s \(2\.04× iperf3\), 230\.0 MiB\/s \(2\.30× iperf3\) \|/);
    assert.match(markdown, /End to end = bytesDone ÷ \(link up → in sync\) \| 102\.0 MiB\/s \(1\.02× iperf3\)/);
    assert.match(markdown, /\*\*64\.0 MiB\*\* = 1\.000× allocated, 6\.25% of the volume/);
    assert.match(markdown, /\*\*Ratio\*\* during ÷ normal \| \*\*0\.40×\*\*/);
    assert.match(markdown, /\| resync \| 4k randwrite QD32 IOPS during resync ≥ 0\.5× the in-sync pair \| \*\*not met\*\*/);
    const failed = renderMarkdown({ ...report, resync: resyncReport({ dirty: { status: 'failed', reason: 'peer connected after writing', notes: [] } }) });
    assert.match(failed, /\*\*failed\*\*: peer connected after writing/);
    assert.match(renderMarkdown({ ...report, resync: undefined }), /## Resync\n\nNot run\./);
    // A goal's detail is never cut, however long (a failure reason is cut at 300 characters).
    const longDetail = `${'y'.repeat(500)} end`;
    const withLongGoal = renderMarkdown({ ...report, goals: [{ matrix: 'resync', description: 'd', status: 'met', detail: longDetail }] });
    assert.ok(withLongGoal.includes(`| resync | d | **met** | ${longDetail} |`));
  });
});
