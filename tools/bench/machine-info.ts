// Describes the machine and tool versions so a report can be compared with another one.
import * as os from 'node:os';
import { REPO_ROOT } from './blockmirror-commands';
import { runCommand } from './run-command';

export interface MachineInfo {
  date: string;
  hostCpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  loadAverageAtStart: [number, number, number];
  node: string;
  fio: string;
  nbdkit: string;
  qemuNbd: string;
  qemuStorageDaemon: string;
  iperf3: string;
  workDirFilesystem: string;
  gitCommit: string;
}

// First line of `program args` output, or a note that the program is missing.
async function versionLine(program: string, args: readonly string[]): Promise<string> {
  const result = await runCommand(program, args);
  const text = (result.stdout || result.stderr).split('\n')[0]?.trim() ?? '';
  return result.exitCode === 0 && text ? text : `not available (${program})`;
}

// Collects everything that changes the meaning of the numbers: cores, kernel, versions, load, filesystem.
export async function collectMachineInfo(workDir: string): Promise<MachineInfo> {
  const filesystem = await runCommand('findmnt', ['--noheadings', '--output', 'FSTYPE', '--target', workDir]);
  const commit = await runCommand('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']);
  const load = os.loadavg();
  return {
    date: new Date().toISOString(),
    hostCpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    loadAverageAtStart: [load[0] ?? 0, load[1] ?? 0, load[2] ?? 0],
    node: process.version,
    fio: await versionLine('fio', ['--version']),
    nbdkit: await versionLine('nbdkit', ['--version']),
    qemuNbd: await versionLine('qemu-nbd', ['--version']),
    qemuStorageDaemon: await versionLine('qemu-storage-daemon', ['--version']),
    iperf3: await versionLine('iperf3', ['--version']),
    workDirFilesystem: filesystem.exitCode === 0 ? filesystem.stdout.trim() : 'unknown',
    gitCommit: commit.exitCode === 0 ? commit.stdout.trim() : 'unknown',
  };
}
