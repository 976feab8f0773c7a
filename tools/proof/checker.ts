/**
 * blockmirror proof checker: reads the writer's acknowledged-write log and proves every
 * acknowledged write is on a replica (store file, block device, or NBD export).
 * Usage and exit codes: docs/proof.md.
 */
import { AckLogError, readAckLog, type ParsedAckLog } from './ack-log';
import { openImageSource, openNbdSource, type BlockSource } from './block-source';
import { checkReplica, type BlockFinding, type CheckMode, type CheckReport } from './check';
import { UsageError, parseArgs, stringOption } from './cli-args';
import * as EXIT from './exit-codes';
import { describeNbdAddress, nbdAddressFromOptions } from './nbd-uri';
import { isValidProofBlockBytes } from './proof-block';

const USAGE = `usage: node dist/tools/proof/checker.js --log FILE (--image PATH | --uri NBD_URI | --socket PATH)
         [--require acknowledged|durable] [--json]
Checks that, for every block in the log, the replica holds the latest acknowledged write (or a
later write of the same run) with a valid CRC and the expected bytes.
  --require acknowledged  every acknowledged write (default; process kill, failover to a live replica)
  --require durable       only writes made durable by FUA or a later acknowledged FLUSH (power loss)
exit: 0 all present, 1 lost or corrupt writes, 2 usage, 5 NBD export unreachable, 6 log/image unusable or log damaged
`;

/** Findings listed per category in the text summary; --json lists all. */
export const MAX_FINDINGS_PRINTED = 50;

/** Upper bound on waiting for output to drain after the work is done. */
const LINGER_BEFORE_EXIT_MS = 10_000;

const OPTION_KINDS = { log: 'string', image: 'string', uri: 'string', socket: 'string', require: 'string', json: 'flag', help: 'flag' } as const;

/** One finding as a summary line. */
function findingLine(label: string, f: BlockFinding): string {
  const found = f.foundSeq === undefined ? '' : ` found seq ${f.foundSeq}`;
  return `  ${label} offset ${f.offset}: acknowledged seq ${f.acknowledgedSeq}${found}: ${f.reason}\n`;
}

/** The human-readable summary. */
function formatReport(report: CheckReport, logPath: string, source: string): string {
  let out =
    `log: ${logPath} (run ${report.runId}, ${report.blockBytes}-byte blocks): ${report.writesInLog} acknowledged writes, ` +
    `${report.flushesInLog} flushes, torn tail lines ${report.logTornTailLines}\n` +
    `replica: ${source}\n` +
    `required (${report.mode}): ${report.writesRequired} writes over ${report.blocksChecked} blocks checked\n` +
    `ok ${report.blocksOk} (holding a later write than required: ${report.blocksNewer}), lost ${report.lost.length}, ` +
    `corrupt ${report.corrupt.length}, torn unacknowledged ${report.tornUnacknowledged.length}\n`;
  const list = (label: string, findings: BlockFinding[]): void => {
    for (const f of findings.slice(0, MAX_FINDINGS_PRINTED)) out += findingLine(label, f);
    if (findings.length > MAX_FINDINGS_PRINTED) out += `  ... and ${findings.length - MAX_FINDINGS_PRINTED} more ${label} (see --json)\n`;
  };
  list('LOST', report.lost);
  list('CORRUPT', report.corrupt);
  list('torn-unacknowledged', report.tornUnacknowledged);
  if (report.logDamagedLines.length > 0) {
    out += `LOG DAMAGED at line(s) ${report.logDamagedLines.slice(0, MAX_FINDINGS_PRINTED).join(', ')}: records there could not be checked\n`;
  }
  out += report.passed
    ? 'PASS: every acknowledged write is on the replica\n'
    : report.lost.length + report.corrupt.length > 0
      ? `FAIL: ${report.lost.length} lost and ${report.corrupt.length} corrupt acknowledged writes\n`
      : 'INCOMPLETE: the log is damaged before its end, so the proof does not cover every acknowledged write\n';
  return out;
}

/** The exit code for a finished check. */
function exitCodeFor(report: CheckReport): number {
  if (report.lost.length + report.corrupt.length > 0) return EXIT.EXIT_CHECK_FAILED;
  if (report.logDamagedLines.length > 0) return EXIT.EXIT_INPUT_UNUSABLE;
  return EXIT.EXIT_OK;
}

/** Parses options, reads the log, opens the replica, checks; returns the exit code. */
export async function runChecker(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, OPTION_KINDS);
  if (args.has('help')) {
    process.stdout.write(USAGE);
    return EXIT.EXIT_OK;
  }
  const logPath = stringOption(args, 'log');
  if (logPath === undefined) throw new UsageError('missing --log FILE');
  const imagePath = stringOption(args, 'image');
  const uri = stringOption(args, 'uri');
  const socketPath = stringOption(args, 'socket');
  const givenTargets = [imagePath, uri, socketPath].filter((v) => v !== undefined).length;
  if (givenTargets !== 1) throw new UsageError('give exactly one of --image PATH, --uri NBD_URI, --socket PATH');
  const requireText = stringOption(args, 'require') ?? 'acknowledged';
  if (requireText !== 'acknowledged' && requireText !== 'durable') throw new UsageError('--require must be acknowledged or durable');
  const mode: CheckMode = requireText;
  const json = args.has('json');

  let log: ParsedAckLog;
  try {
    log = readAckLog(logPath);
    if (!isValidProofBlockBytes(log.header.blockBytes)) throw new AckLogError(`log header block-bytes ${log.header.blockBytes} is invalid`);
  } catch (error) {
    process.stderr.write(`proof-checker: cannot use log ${logPath}: ${(error as Error).message}\n`);
    return EXIT.EXIT_INPUT_UNUSABLE;
  }

  let source: BlockSource;
  if (imagePath !== undefined) {
    try {
      source = openImageSource(imagePath);
    } catch (error) {
      process.stderr.write(`proof-checker: cannot open image ${imagePath}: ${(error as Error).message}\n`);
      return EXIT.EXIT_INPUT_UNUSABLE;
    }
  } else {
    let address;
    try {
      address = nbdAddressFromOptions(uri, socketPath);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    try {
      source = await openNbdSource(address, `NBD ${describeNbdAddress(address)}`);
    } catch (error) {
      process.stderr.write(`proof-checker: cannot connect to ${describeNbdAddress(address)}: ${(error as Error).message}\n`);
      return EXIT.EXIT_CONNECT_FAILED;
    }
  }

  let report: CheckReport;
  try {
    report = await checkReplica(log, source, mode);
  } catch (error) {
    process.stderr.write(`proof-checker: cannot read ${source.description}: ${(error as Error).message}\n`);
    return EXIT.EXIT_INPUT_UNUSABLE;
  } finally {
    await source.close().catch(() => undefined);
  }
  const exitCode = exitCodeFor(report);
  if (json) process.stdout.write(`${JSON.stringify({ log: logPath, replica: source.description, exitCode, ...report }, null, 2)}\n`);
  else process.stdout.write(formatReport(report, logPath, source.description));
  return exitCode;
}

/** Sets the exit code and lets stdout drain (a large --json would be cut by process.exit); forces the exit if something lingers. */
function exitWhenFlushed(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), LINGER_BEFORE_EXIT_MS).unref();
}

/** Entry point: runs and exits with the code; usage errors print the usage. */
function main(): void {
  runChecker(process.argv.slice(2)).then(
    (code) => exitWhenFlushed(code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`proof-checker: ${error.message}\n${USAGE}`);
        process.exit(EXIT.EXIT_USAGE);
      }
      process.stderr.write(`proof-checker: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(EXIT.EXIT_INTERNAL);
    },
  );
}

if (require.main === module) main();
