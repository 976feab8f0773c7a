/**
 * A disk whose reads can be made to fail, as a bad sector or a dying drive fails them, and whose
 * writes can be made slow: a sparse file served by nbdkit through its error filter (every read fails
 * with EIO while a flag file exists) and optionally its delay filter, exposed as a regular file by
 * nbdfuse, so a node can use it as its store.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { run, runOk } from './run';
import { sleep } from './node-process';

export class FailingDisk {
  /** The file to give a node as --store (through a symlink: its metadata file goes beside the link). */
  readonly file: string;
  /** The sparse file behind it, which nbdkit reads and writes (a test may rot bytes in it). */
  readonly backingFile: string;
  private readonly fuseDir: string;
  private readonly flag: string;
  /** The end of what nbdkit and nbdfuse printed (each failed read logs a line; shown only on trouble). */
  stderr = '';
  private nbdkit: ChildProcess | undefined;
  private fuse: ChildProcess | undefined;

  private constructor(workDir: string) {
    this.fuseDir = path.join(workDir, 'fuse');
    this.file = path.join(this.fuseDir, 'disk');
    this.flag = path.join(workDir, 'fail-reads');
    this.backingFile = path.join(workDir, 'backing.img');
  }

  /** A `sizeBytes` sparse disk in `workDir` (created), reads working; each write takes `writeDelayMs` more. */
  static async create(workDir: string, sizeBytes: number, options: { writeDelayMs?: number } = {}): Promise<FailingDisk> {
    const disk = new FailingDisk(workDir);
    fs.mkdirSync(disk.fuseDir, { recursive: true });
    const backing = disk.backingFile;
    fs.closeSync(fs.openSync(backing, 'w'));
    fs.truncateSync(backing, sizeBytes);
    const socket = path.join(workDir, 'nbdkit.sock');
    const delay = options.writeDelayMs === undefined ? [] : ['--filter=delay'];
    const delayArgs = options.writeDelayMs === undefined ? [] : [`wdelay=${options.writeDelayMs}ms`];
    disk.nbdkit = spawn('nbdkit', ['--foreground', '--unix', socket, '--filter=error', ...delay, 'file', backing,
      'error-pread=EIO', 'error-pread-rate=100%', `error-pread-file=${disk.flag}`, ...delayArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
    disk.keepStderr(disk.nbdkit);
    await disk.waitFor(socket, disk.nbdkit, 'nbdkit');
    disk.fuse = spawn('nbdfuse', [disk.file, '--unix', socket], { stdio: ['ignore', 'ignore', 'pipe'] });
    disk.keepStderr(disk.fuse);
    await disk.waitFor(disk.file, disk.fuse, 'nbdfuse');
    return disk;
  }

  /**
   * From now on every read of the disk fails with EIO (writes still work). The kernel keeps pages of
   * the FUSE file it already holds while the file is open, and would serve reads from them: they are
   * dropped (dd's nocache asks the kernel to evict the whole file's clean pages).
   */
  async failReads(): Promise<void> {
    fs.writeFileSync(this.flag, '');
    await runOk('dd', [`if=${this.file}`, 'iflag=nocache', 'count=0', 'status=none']);
  }

  healReads(): void {
    fs.rmSync(this.flag, { force: true });
  }

  /** Unmount and stop both processes (the node using the disk must be stopped first). */
  async destroy(): Promise<void> {
    this.healReads();
    await run('fusermount3', ['-u', this.fuseDir]);
    for (const child of [this.fuse, this.nbdkit]) {
      if (child === undefined || child.exitCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }

  private keepStderr(child: ChildProcess): void {
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4000)));
  }

  private async waitFor(file: string, child: ChildProcess, name: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!fs.existsSync(file)) {
      if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`${name} did not create ${file}`);
      await sleep(50);
    }
  }
}
