/** Start and stop real blockmirror node processes for end-to-end tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sendControlRequest } from '../../src/control/client';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const CLI = path.join(REPO_ROOT, 'bin', 'blockmirror');

/** A fresh temporary directory removed by the returned cleanup. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `bm-${prefix}-`));
}

export class NodeProcess {
  readonly child: ChildProcess;
  stderr = '';
  stdout = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly args: string[],
    readonly controlPath: string,
    options: { netns?: string } = {},
  ) {
    const argv = [CLI, ...args];
    this.child = options.netns === undefined
      ? spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('ip', ['netns', 'exec', options.netns, process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (process.env.BM_TEST_VERBOSE) process.stderr.write(d);
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Wait until the node answers status on its control socket (or exits). */
  async ready(timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      if (exited) throw new Error(`node exited before becoming ready:\n${this.stderr}`);
      try {
        return (await sendControlRequest(this.controlPath, { command: 'status' }, 2000)) as Record<string, unknown>;
      } catch {
        if (Date.now() > deadline) throw new Error(`node not ready after ${timeoutMs} ms:\n${this.stderr}`);
        await sleep(50);
      }
    }
  }

  /**
   * The node's status document. When the control socket fails, the error says whether the process
   * is gone (with its exit and the end of its stderr), so a test that fails there shows why.
   */
  async status(): Promise<Record<string, unknown>> {
    try {
      return (await sendControlRequest(this.controlPath, { command: 'status' })) as Record<string, unknown>;
    } catch (error) {
      const ended = await Promise.race([this.exited, sleep(200).then(() => undefined)]);
      const state = ended === undefined ? 'the node is still running' : `the node exited (code ${ended.code}, signal ${ended.signal})`;
      throw new Error(`${(error as Error).message}; ${state}; the end of its stderr:\n${this.stderr.slice(-3000)}`);
    }
  }

  /** SIGTERM and wait for exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }

  /** SIGKILL (a crash) and wait for exit. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Start `blockmirror serve` on a new sparse store in `dir`. */
export async function startServe(dir: string, sizeText = '64M', extra: string[] = []): Promise<{ node: NodeProcess; store: string; socket: string; uri: string }> {
  const store = path.join(dir, 'store.img');
  const socket = path.join(dir, 'nbd.sock');
  const control = path.join(dir, 'store.ctl');
  const node = new NodeProcess(['serve', '--store', store, '--size', sizeText, '--nbd-socket', socket, '--control', control, ...extra], control);
  await node.ready();
  return { node, store, socket, uri: `nbd+unix:///?socket=${socket}` };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
