/**
 * A real kernel block device and filesystem on top of an NBD export without the nbd driver:
 * nbdfuse exposes the export as a file, losetup turns it into /dev/loopN, mkfs.ext4 + mount.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import { run, runOk } from './run';
import { sleep } from './node-process';

export class FuseLoopDevice {
  private fuse: ChildProcess | undefined;
  loopDevice: string | undefined;
  readonly fuseDir: string;
  readonly mountDir: string;

  constructor(private readonly workDir: string, private readonly nbdSocket: string) {
    this.fuseDir = path.join(workDir, 'fuse');
    this.mountDir = path.join(workDir, 'mnt');
  }

  /** nbdfuse in the foreground (so we own its lifetime), then a loop device over its file. */
  async attach(): Promise<string> {
    fs.mkdirSync(this.fuseDir, { recursive: true });
    fs.mkdirSync(this.mountDir, { recursive: true });
    const file = path.join(this.fuseDir, 'nbd');
    this.fuse = spawn('nbdfuse', [file, '--unix', this.nbdSocket], { stdio: ['ignore', 'inherit', 'inherit'] });
    const deadline = Date.now() + 20_000;
    while (!fs.existsSync(file)) {
      if (Date.now() > deadline) throw new Error('nbdfuse did not expose its file');
      if (this.fuse.exitCode !== null) throw new Error(`nbdfuse exited ${this.fuse.exitCode}`);
      await sleep(100);
    }
    const { stdout } = await runOk('losetup', ['-f', '--show', '--direct-io=off', file]);
    this.loopDevice = stdout.trim();
    return this.loopDevice;
  }

  async mkfs(): Promise<void> {
    await runOk('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', this.loopDevice!], { timeoutMs: 120_000 });
  }

  async mount(): Promise<void> {
    await runOk('mount', ['-t', 'ext4', this.loopDevice!, this.mountDir]);
  }

  async unmount(): Promise<void> {
    await runOk('umount', [this.mountDir]);
  }

  /** Unmount if mounted, drop the loop device, stop nbdfuse. */
  async detach(): Promise<void> {
    await run('umount', [this.mountDir]);
    if (this.loopDevice !== undefined) await run('losetup', ['-d', this.loopDevice]);
    this.loopDevice = undefined;
    await run('fusermount3', ['-u', this.fuseDir]);
    if (this.fuse !== undefined && this.fuse.exitCode === null) {
      const exited = new Promise((resolve) => this.fuse!.once('exit', resolve));
      await Promise.race([exited, sleep(5000)]);
      if (this.fuse.exitCode === null) this.fuse.kill('SIGKILL');
    }
  }
}

/** Write a tree of files with random content under `root`; returns relative path → sha256. */
export function writeFileTree(root: string, fileCount = 40, seed = 1): Map<string, string> {
  const sums = new Map<string, string>();
  for (let i = 0; i < fileCount; i++) {
    const rel = path.join(`dir${i % 5}`, `sub${i % 3}`, `file${i}.bin`);
    const full = path.join(root, rel);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    const size = 1 + ((i * 7919 * seed) % (512 * 1024));
    const data = crypto.randomBytes(size);
    fs.writeFileSync(full, data);
    sums.set(rel, crypto.createHash('sha256').update(data).digest('hex'));
  }
  return sums;
}

/** Compare the files under `root` with the expected checksums; returns mismatches. */
export function checkFileTree(root: string, sums: Map<string, string>): string[] {
  const bad: string[] = [];
  for (const [rel, sum] of sums) {
    const full = path.join(root, rel);
    if (!fs.existsSync(full)) {
      bad.push(`${rel}: missing`);
      continue;
    }
    const actual = crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex');
    if (actual !== sum) bad.push(`${rel}: checksum differs`);
  }
  return bad;
}
