/**
 * blockmirror proof writer: writes self-describing blocks to an NBD export and durably logs every
 * write the server acknowledges, so `checker.js` can later prove none of them was lost.
 * Usage and exit codes: docs/proof.md.
 */
import * as fs from 'node:fs';
import { AckLogWriter } from './ack-log';
import { UsageError, numberOption, parseArgs, sizeOption, stringOption } from './cli-args';
import * as EXIT from './exit-codes';
import { NBD_FLAG_READ_ONLY, NbdClient } from './nbd-client';
import { describeNbdAddress, nbdAddressFromOptions } from './nbd-uri';
import { isValidProofBlockBytes } from './proof-block';
import { WriteLoop, newRunId, type WriteLoopResult } from './write-loop';

const USAGE = `usage: node dist/tools/proof/writer.js (--uri nbd+unix:///?socket=PATH | --socket PATH) --log FILE
         [--size BYTES] [--region-bytes N] [--queue-depth N] [--duration SECONDS] [--block-bytes 4096]
         [--fua-percent P] [--flush-every N]
Writes self-describing blocks at random offsets of the first --size bytes (default: the whole export)
and appends every acknowledged write to FILE (fdatasync per batch) before doing anything else.
Runs until --duration elapses (default: until SIGINT/SIGTERM) or the server disappears.
exit: 0 stopped cleanly, 2 usage, 3 server lost (log is complete), 4 server error reply, 5 cannot connect, 7 internal
`;

export const DEFAULT_BLOCK_BYTES = 4096;
export const DEFAULT_QUEUE_DEPTH = 16;
export const MAX_QUEUE_DEPTH = 1024;
/** Default hot region: small enough that blocks are overwritten many times within seconds. */
export const DEFAULT_REGION_BYTES = 1024 * 1024;
export const DEFAULT_FUA_PERCENT = 10;
export const DEFAULT_FLUSH_EVERY_WRITES = 256;
/** Longest --duration accepted (one week): anything longer is a typo. */
const MAX_DURATION_SECONDS = 7 * 24 * 3600;

/** Upper bound on waiting for output to drain after the work is done. */
const LINGER_BEFORE_EXIT_MS = 10_000;

const OPTION_KINDS = {
  uri: 'string',
  socket: 'string',
  log: 'string',
  size: 'string',
  'region-bytes': 'string',
  'queue-depth': 'string',
  duration: 'string',
  'block-bytes': 'string',
  'fua-percent': 'string',
  'flush-every': 'string',
  help: 'flag',
} as const;

/** Prints to stderr with the tool's prefix. */
function say(message: string): void {
  process.stderr.write(`proof-writer: ${message}\n`);
}

/** Maps how the loop ended to the exit code and a one-line summary. */
function reportEnd(result: WriteLoopResult, logPath: string, elapsedMs: number): number {
  const totals =
    `${result.acknowledgedWrites} writes acknowledged and logged (${result.acknowledgedFuaWrites} with FUA, ` +
    `${result.acknowledgedFlushes} flushes), ${result.unacknowledgedWrites} sent but not acknowledged, ` +
    `in ${(elapsedMs / 1000).toFixed(1)} s; log: ${logPath}`;
  switch (result.end.kind) {
    case 'stopped':
      say(`stopped: ${totals}`);
      return EXIT.EXIT_OK;
    case 'server-lost':
      say(`server lost (${result.end.reason}): ${totals}`);
      return EXIT.EXIT_SERVER_LOST;
    case 'server-error':
      say(`server error (${result.end.reason}): ${totals}`);
      return EXIT.EXIT_SERVER_ERROR;
    case 'log-failed':
      say(`cannot write the log (${result.end.reason}): ${totals}`);
      return EXIT.EXIT_INTERNAL;
  }
}

/** Parses options, connects, runs the loop; returns the exit code. */
export async function runWriter(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, OPTION_KINDS);
  if (args.has('help')) {
    process.stdout.write(USAGE);
    return EXIT.EXIT_OK;
  }
  const logPath = stringOption(args, 'log');
  if (logPath === undefined) throw new UsageError('missing --log FILE');
  if (fs.existsSync(logPath)) throw new UsageError(`log ${logPath} already exists (the writer never overwrites a proof log)`);
  let address;
  try {
    address = nbdAddressFromOptions(stringOption(args, 'uri'), stringOption(args, 'socket'));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const blockBytes = sizeOption(args, 'block-bytes') ?? DEFAULT_BLOCK_BYTES;
  if (!isValidProofBlockBytes(blockBytes)) throw new UsageError('--block-bytes must be a power of two from 512 to 1M');
  const queueDepth = numberOption(args, 'queue-depth', { min: 1, max: MAX_QUEUE_DEPTH, integer: true }) ?? DEFAULT_QUEUE_DEPTH;
  const durationSeconds = numberOption(args, 'duration', { min: 0, max: MAX_DURATION_SECONDS, integer: false }) ?? 0;
  const regionBytes = sizeOption(args, 'region-bytes') ?? DEFAULT_REGION_BYTES;
  const fuaPercent = numberOption(args, 'fua-percent', { min: 0, max: 100, integer: false }) ?? DEFAULT_FUA_PERCENT;
  const flushEveryWrites = numberOption(args, 'flush-every', { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true }) ?? DEFAULT_FLUSH_EVERY_WRITES;
  const requestedArea = sizeOption(args, 'size');

  let client: NbdClient;
  try {
    client = await NbdClient.connect(address);
  } catch (error) {
    say(`cannot connect to ${describeNbdAddress(address)}: ${(error as Error).message}`);
    return EXIT.EXIT_CONNECT_FAILED;
  }
  const exportBytes = client.exportSizeBytes;
  const areaBytes = Math.floor((requestedArea ?? exportBytes) / blockBytes) * blockBytes;
  const problem =
    (client.transmissionFlags & NBD_FLAG_READ_ONLY) !== 0
      ? 'the export is read-only'
      : requestedArea !== undefined && requestedArea > exportBytes
        ? `--size ${requestedArea} is larger than the export (${exportBytes} bytes)`
        : areaBytes / blockBytes <= queueDepth
          ? `the area (${areaBytes} bytes) must hold more than --queue-depth ${queueDepth} blocks of ${blockBytes} bytes`
          : undefined;
  if (problem !== undefined) {
    await client.disconnect();
    throw new UsageError(problem);
  }

  const runId = newRunId();
  const log = AckLogWriter.create(logPath, { runId, blockBytes, exportBytes, areaBytes, startedAt: new Date().toISOString() });
  const loop = new WriteLoop(client, log, { blockBytes, queueDepth, areaBytes, regionBytes, fuaPercent, flushEveryWrites, runId });
  say(
    `run ${runId.toString(16).padStart(16, '0')}: writing ${blockBytes}-byte blocks over ${areaBytes} of ${exportBytes} bytes of ` +
      `${describeNbdAddress(address)}, queue depth ${queueDepth}, ${durationSeconds > 0 ? `for ${durationSeconds} s` : 'until interrupted'}; log ${logPath}`,
  );
  const startedMs = Date.now();
  const durationTimer = durationSeconds > 0 ? setTimeout(() => loop.stop(), durationSeconds * 1000) : undefined;
  const onSignal = (): void => loop.stop();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const result = await loop.run();
  if (durationTimer !== undefined) clearTimeout(durationTimer);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  log.close();
  await client.disconnect();
  return reportEnd(result, logPath, Date.now() - startedMs);
}

/** Sets the exit code and lets stdout drain (a large --json would be cut by process.exit); forces the exit if something lingers. */
function exitWhenFlushed(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), LINGER_BEFORE_EXIT_MS).unref();
}

/** Entry point: runs and exits with the code; usage errors print the usage. */
function main(): void {
  runWriter(process.argv.slice(2)).then(
    (code) => exitWhenFlushed(code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        say(error.message);
        process.stderr.write(USAGE);
        process.exit(EXIT.EXIT_USAGE);
      }
      say(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      process.exit(EXIT.EXIT_INTERNAL);
    },
  );
}

if (require.main === module) main();
