// A long-running server (nbdkit, qemu-nbd, blockmirror, ...) whose output goes to a log file.
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { CleanupRegistry } from './cleanup-registry';
import { describeCommand, firstLines } from './run-command';

/** How long a server gets to exit after SIGTERM before it is killed. */
const STOP_GRACE_MS = 5_000;
/** How long to wait for the kernel to report a SIGKILLed server as gone. */
const KILL_WAIT_MS = 5_000;

export interface ServerExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

// Owns one child process: start, notice an early exit, stop with escalation.
export class ServerProcess {
  private readonly child: ChildProcess;
  private exitInfo: ServerExit | undefined;
  private readonly exited: Promise<ServerExit>;
  private readonly unregister: () => Promise<void>;
  readonly commandLine: string;

  private constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    readonly logPath: string,
    cleanup: CleanupRegistry,
  ) {
    this.commandLine = describeCommand(command, args);
    const logFd = fs.openSync(logPath, 'a');
    fs.writeSync(logFd, `# ${this.commandLine}\n`);
    this.child = spawn(command, args, { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (exitCode, signal) => {
        this.exitInfo = { exitCode, signal };
        resolve(this.exitInfo);
      });
      this.child.once('error', (error) => {
        fs.appendFileSync(logPath, `spawn error: ${error.message}\n`);
        this.exitInfo = { exitCode: null, signal: null };
        resolve(this.exitInfo);
      });
    });
    this.unregister = cleanup.add({
      description: `stop ${name}`,
      run: () => this.stopNow(),
      runSync: () => this.killSync(),
    });
  }

  // Starts a server and registers it for cleanup.
  static start(name: string, command: string, args: readonly string[], logPath: string, cleanup: CleanupRegistry): ServerProcess {
    return new ServerProcess(name, command, args, logPath, cleanup);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  // True once the process has exited (so readiness polling can give up early).
  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  // Explains why a server died, with the tail of its log, for "failed: ..." report entries.
  describeExit(): string {
    const info = this.exitInfo;
    const how = info === undefined ? 'still running' : info.signal ? `killed by ${info.signal}` : `exit ${String(info.exitCode)}`;
    return `${this.name} ${how}; log: ${firstLines(this.logTail())}`;
  }

  // Last part of the server's log, for error messages.
  logTail(maxChars = 600): string {
    try {
      const text = fs.readFileSync(this.logPath, 'utf8');
      return text.split('\n').filter((line) => !line.startsWith('# ')).join('\n').slice(-maxChars);
    } catch {
      return '';
    }
  }

  // Stops the server (SIGTERM, then SIGKILL) and unregisters its cleanup step.
  async stop(): Promise<void> {
    await this.unregister();
  }

  // SIGTERM with a grace period, then SIGKILL; resolves once the process is gone.
  private async stopNow(): Promise<void> {
    if (this.exitInfo !== undefined) return;
    this.child.kill('SIGTERM');
    if (await this.exitsWithin(STOP_GRACE_MS)) return;
    this.child.kill('SIGKILL');
    if (!(await this.exitsWithin(KILL_WAIT_MS))) {
      throw new Error(`${this.name} (pid ${String(this.pid)}) did not exit after SIGKILL`);
    }
  }

  // Waits for exit up to a deadline; true if the process exited.
  private async exitsWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const exited = this.exited.then(() => true as const);
    const result = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    return result;
  }

  // Used from the 'exit' handler: kill by our own pid, nothing else.
  private killSync(): void {
    if (this.exitInfo === undefined && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}
