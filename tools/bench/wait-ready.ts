// Polls until a freshly started server accepts NBD connections (or has clearly failed).
import { runCommand, firstLines } from './run-command';
import { ServerProcess } from './server-process';

/** How long a server may take from spawn to answering an NBD handshake. */
export const SERVER_READY_TIMEOUT_MS = 30_000;
/** Pause between readiness probes. */
const READY_POLL_INTERVAL_MS = 100;
/** A single nbdinfo probe should never take longer than this. */
const PROBE_TIMEOUT_MS = 5_000;

// Promise-based sleep for polling loops.
export function sleepMs(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

// Runs `nbdinfo --size` against the URI until it succeeds; `prefix` runs the probe inside a namespace.
export async function waitForNbdExport(
  uri: string,
  server: ServerProcess,
  prefix: readonly string[] = [],
  timeoutMs = SERVER_READY_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    if (server.hasExited) throw new Error(`server exited before it was ready: ${server.describeExit()}`);
    const [command, ...args] = [...prefix, 'nbdinfo', '--size', uri];
    const probe = await runCommand(command as string, args, { timeoutMs: PROBE_TIMEOUT_MS });
    if (probe.exitCode === 0) return;
    lastError = firstLines(probe.stderr);
    await sleepMs(READY_POLL_INTERVAL_MS);
  }
  throw new Error(`${server.name} not ready after ${timeoutMs} ms (${lastError}); ${server.describeExit()}`);
}

// Retries an async action until it succeeds or the deadline passes (for sockets that appear late).
export async function retryUntil<T>(action: () => Promise<T>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      return await action();
    } catch (error) {
      lastError = error;
      await sleepMs(READY_POLL_INTERVAL_MS);
    }
  }
  throw new Error(`${what} did not succeed within ${timeoutMs} ms: ${(lastError as Error | undefined)?.message ?? 'no attempt'}`);
}
