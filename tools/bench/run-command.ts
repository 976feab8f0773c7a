// Runs a short-lived command to completion and captures its output.
import { ChildProcess, spawn } from 'node:child_process';

/** Short-lived children still running, so an interrupted benchmark can stop them too. */
const activeChildren = new Set<ChildProcess>();

// SIGKILLs every short-lived command still running (fio, cmp, nbdinfo, ...); used on SIGINT/SIGTERM.
export function killActiveCommands(): void {
  for (const child of activeChildren) child.kill('SIGKILL');
}

/** Upper bound for a helper command that should finish quickly (version probes, ip, cmp). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;

export interface CommandResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface CommandOptions {
  timeoutMs?: number;
  cwd?: string;
}

// Spawns without a shell so arguments never need quoting, and kills the child on timeout.
export function runCommand(command: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    activeChildren.add(child);
    const stdoutChunks: Buffer[] = [];
    const stderrChunks: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => stdoutChunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderrChunks.push(chunk));
    child.on('error', (error: Error) => {
      clearTimeout(timer);
      activeChildren.delete(child);
      resolve({ exitCode: null, signal: null, stdout: '', stderr: error.message, timedOut: false });
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      activeChildren.delete(child);
      resolve({
        exitCode,
        signal,
        stdout: Buffer.concat(stdoutChunks).toString('utf8'),
        stderr: Buffer.concat(stderrChunks).toString('utf8'),
        timedOut,
      });
    });
  });
}

// Like runCommand but throws with the command's stderr when it does not exit 0.
export async function runChecked(command: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const result = await runCommand(command, args, options);
  if (result.exitCode !== 0) {
    throw new Error(`${describeCommand(command, args)} failed (${describeExit(result)}): ${firstLines(result.stderr || result.stdout)}`);
  }
  return result;
}

// Formats a command line for logs and error messages.
export function describeCommand(command: string, args: readonly string[]): string {
  return [command, ...args].map(quoteForShell).join(' ');
}

// Quotes an argument only when a shell would otherwise split or expand it.
export function quoteForShell(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

// Says how a command ended, for error messages.
export function describeExit(result: CommandResult): string {
  if (result.timedOut) return 'timed out';
  if (result.signal) return `signal ${result.signal}`;
  return `exit ${String(result.exitCode)}`;
}

/** How many lines of a failing command's output go into an error message. */
const ERROR_OUTPUT_LINES = 3;

// Keeps error messages short: the first few non-empty lines of a command's output.
export function firstLines(text: string, count = ERROR_OUTPUT_LINES): string {
  return text.split('\n').map((line) => line.trim()).filter((line) => line.length > 0).slice(0, count).join(' | ');
}
