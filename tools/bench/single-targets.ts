// Single-node targets: blockmirror serve, nbdkit's file plugin and qemu-nbd, each over a unix socket.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { serveCommand, subcommandUnavailableReason } from './blockmirror-commands';
import { nbdUnixUri } from './fio-runner';
import { firstLines, runCommand } from './run-command';
import { ServerProcess } from './server-process';
import { createSparseFile } from './sparse-file';
import { BenchTarget, ProbeContext, RunningTarget, TargetContext } from './target-types';
import { waitForNbdExport } from './wait-ready';

// Reason a required external program is missing, or undefined if `program args` exits 0.
export async function programUnavailableReason(program: string, args: readonly string[]): Promise<string | undefined> {
  const probe = await runCommand(program, args);
  if (probe.exitCode === 0) return undefined;
  return `\`${program} ${args.join(' ')}\` failed: ${firstLines(probe.stderr || probe.stdout, 1) || 'not installed?'}`;
}

// Starts and stops one throwaway instance, so a target that cannot serve yet is "not available" rather than failing every job.
export async function probeStartReason(target: BenchTarget, probe: ProbeContext): Promise<string | undefined> {
  const caseDir = fs.mkdtempSync(path.join(probe.dir, `probe-${target.id}-`));
  try {
    const running = await target.start({ caseDir, sizeBytes: probe.sizeBytes, cleanup: probe.cleanup });
    await running.stop();
    return undefined;
  } catch (error) {
    return `a probe start failed: ${(error as Error).message.slice(0, 400)}`;
  }
}

// Starts a unix-socket NBD server over a fresh sparse file and waits until it answers.
async function startFileServer(
  context: TargetContext,
  name: string,
  commandFor: (filePath: string, socketPath: string) => string[],
  storeCreation: 'pre-create' | 'server-creates',
): Promise<RunningTarget> {
  const filePath = path.join(context.caseDir, 'disk.img');
  const socketPath = path.join(context.caseDir, 'nbd.sock');
  if (storeCreation === 'pre-create') createSparseFile(filePath, context.sizeBytes);
  const [command, ...args] = commandFor(filePath, socketPath);
  const server = ServerProcess.start(name, command as string, args, path.join(context.caseDir, `${name}.log`), context.cleanup);
  const uri = nbdUnixUri(socketPath);
  try {
    await waitForNbdExport(uri, server);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return {
    uri,
    checkStillValid: async () => {
      if (server.hasExited) throw new Error(server.describeExit());
    },
    stop: () => server.stop(),
  };
}

export const nbdkitTarget: BenchTarget = {
  id: 'nbdkit',
  matrix: 'single',
  title: 'nbdkit file plugin',
  isBlockmirror: false,
  settings:
    'nbdkit --unix SOCK --foreground --exit-with-parent file FILE: default thread model (file plugin is "parallel", 16 threads ' +
    'per connection), page cache on (plugin default cache=default), flush = fdatasync.',
  unavailableReason: () => programUnavailableReason('nbdkit', ['file', '--dump-plugin']),
  start: (context) =>
    startFileServer(context, 'nbdkit', (filePath, socketPath) => [
      'nbdkit', '--unix', socketPath, '--foreground', '--exit-with-parent', 'file', filePath,
    ], 'pre-create'),
};

export const qemuNbdTarget: BenchTarget = {
  id: 'qemu-nbd',
  matrix: 'single',
  title: 'qemu-nbd',
  isBlockmirror: false,
  settings:
    'qemu-nbd --socket SOCK --format raw --cache=writeback --aio=threads --discard=ignore --detect-zeroes=off --persistent ' +
    '--shared=8 FILE: writeback = host page cache with flush mapped to fdatasync and aio=threads = a worker-thread pool, ' +
    'the same I/O path nbdkit\'s file plugin uses, so neither server gets O_DIRECT or io_uring the other lacks; ' +
    '--persistent because fio opens one probe connection before the measured one.',
  unavailableReason: () => programUnavailableReason('qemu-nbd', ['--version']),
  start: (context) =>
    startFileServer(context, 'qemu-nbd', (filePath, socketPath) => [
      'qemu-nbd', '--socket', socketPath, '--format', 'raw', '--cache=writeback', '--aio=threads', '--discard=ignore',
      '--detect-zeroes=off', '--persistent', '--shared=8', filePath,
    ], 'pre-create'),
};

export const blockmirrorSingleTarget: BenchTarget = {
  id: 'blockmirror',
  matrix: 'single',
  title: 'blockmirror serve',
  isBlockmirror: true,
  settings: 'node bin/blockmirror serve --store FILE --size 1G --nbd-socket SOCK (defaults; blockmirror creates the sparse store itself).',
  unavailableReason: async (probe) => (await subcommandUnavailableReason('serve')) ?? (await probeStartReason(blockmirrorSingleTarget, probe)),
  // blockmirror creates its own sparse store, so it knows the store starts out all zeroes.
  start: (context) =>
    startFileServer(context, 'blockmirror', (filePath, socketPath) => serveCommand(filePath, context.sizeBytes, socketPath), 'server-creates'),
};
