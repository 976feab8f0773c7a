// How the benchmark invokes blockmirror; the one place to update when the CLI changes.
import * as net from 'node:net';
import * as path from 'node:path';
import { sendControlRequest } from '../../src/control/client';
import { runCommand, describeExit, firstLines } from './run-command';

/** Repository root, from dist/tools/bench/ back up three levels. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const BLOCKMIRROR_BIN = path.join(REPO_ROOT, 'bin', 'blockmirror');
/** Port the secondary listens on for replication inside namespace B. */
export const REPLICATION_PORT = 10810;
/** `--help` of a node CLI should answer well within this. */
const HELP_TIMEOUT_MS = 20_000;

// Size flag as the CLI takes it (whole GiB when possible, else bytes).
function sizeFlag(sizeBytes: number): string {
  const gib = 1024 ** 3;
  return sizeBytes % gib === 0 ? `${sizeBytes / gib}G` : String(sizeBytes);
}

// blockmirror single node: serve a store over NBD on a unix socket.
export function serveCommand(storePath: string, sizeBytes: number, socketPath: string): string[] {
  return [process.execPath, BLOCKMIRROR_BIN, 'serve', '--store', storePath, '--size', sizeFlag(sizeBytes), '--nbd-socket', socketPath];
}

// blockmirror secondary (namespace B): keep a replica and accept the primary's replication stream.
// `extraArgs` carries scenario-specific pair options (e.g. --keepalive-timeout for the resync benchmark).
export function secondaryCommand(storePath: string, sizeBytes: number, listenAddress: string, controlPath: string, extraArgs: readonly string[] = []): string[] {
  return [
    process.execPath, BLOCKMIRROR_BIN, 'secondary', '--store', storePath, '--size', sizeFlag(sizeBytes),
    '--listen', `${listenAddress}:${REPLICATION_PORT}`, '--control', controlPath, ...extraArgs,
  ];
}

// blockmirror primary (namespace A): serve NBD on a unix socket and mirror every write to the secondary.
export function primaryCommand(
  storePath: string, sizeBytes: number, socketPath: string, peerAddress: string, controlPath: string, extraArgs: readonly string[] = [],
): string[] {
  return [
    process.execPath, BLOCKMIRROR_BIN, 'primary', '--store', storePath, '--size', sizeFlag(sizeBytes),
    '--nbd-socket', socketPath, '--peer', `${peerAddress}:${REPLICATION_PORT}`, '--control', controlPath, ...extraArgs,
  ];
}

/** The part of `blockmirror status --json` the benchmark relies on for a primary. */
export interface PrimaryStatus {
  peer?: { state?: string; outOfSyncBytes?: number };
  mirror?: { mode?: string; degradedWrites?: number; disconnects?: number };
  resync?: ResyncStatus;
}

/** The part of a secondary's `status --json` the benchmark reports: what each mirrored write cost it. */
export interface SecondaryStatus {
  mirror?: { messagesPerWrite?: number; wakeupsPerWrite?: number; copiedBytesPerPayloadByte?: number; writesApplied?: number };
}

/** The `resync` section of a primary's status (the background resync's progress). */
export interface ResyncStatus {
  active?: boolean;
  bytesTotal?: number;
  bytesDone?: number;
  bytesSent?: number;
  regionsZero?: number;
  bytesPerSecond?: number;
  percent?: number;
  etaSeconds?: number | null;
  startedAt?: string | null;
  finishedAt?: string | null;
}

/** A status query over the control socket should answer quickly. */
const STATUS_TIMEOUT_MS = 10_000;

// Reads a running node's status through its control socket.
export async function readStatus(controlPath: string): Promise<PrimaryStatus> {
  const result = await runCommand(process.execPath, [BLOCKMIRROR_BIN, 'status', '--control', controlPath, '--json'], { timeoutMs: STATUS_TIMEOUT_MS });
  if (result.exitCode !== 0) throw new Error(`blockmirror status failed (${describeExit(result)}): ${firstLines(result.stderr || result.stdout)}`);
  return JSON.parse(result.stdout) as PrimaryStatus;
}

// Reads a secondary's status through its control socket.
export async function readSecondaryStatus(controlPath: string): Promise<SecondaryStatus> {
  return (await sendControlRequest(controlPath, { command: 'status' }, STATUS_TIMEOUT_MS)) as SecondaryStatus;
}

// Asks the control socket directly (one JSON line each way), without starting a node process: for tight polling
// where `blockmirror status` (~100 ms of node start-up per call) would blur the timing being measured.
export async function queryStatus(controlPath: string, timeoutMs = STATUS_TIMEOUT_MS): Promise<PrimaryStatus> {
  return (await sendControlRequest(controlPath, { command: 'status' }, timeoutMs)) as PrimaryStatus;
}

// A subcommand counts as present when `blockmirror --help` lists it; otherwise the reason is returned.
export async function subcommandUnavailableReason(subcommand: string): Promise<string | undefined> {
  const result = await runCommand(process.execPath, [BLOCKMIRROR_BIN, '--help'], { timeoutMs: HELP_TIMEOUT_MS, cwd: REPO_ROOT });
  if (result.exitCode !== 0) {
    const detail = firstLines(result.stderr || result.stdout, 1) || 'no output';
    return `\`blockmirror --help\` failed (${describeExit(result)}): ${detail.slice(0, 200)}`;
  }
  const listed = new RegExp(`^\\s+${subcommand}\\b`, 'm').test(result.stdout);
  return listed ? undefined : `\`blockmirror --help\` does not list a \`${subcommand}\` command yet`;
}
