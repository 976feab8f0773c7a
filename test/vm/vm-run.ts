/** Run a command inside the kernel test VM (tools/vm/run-in-vm.sh) and read the guest's verdict lines. */
import * as path from 'node:path';
import { run, type RunResult } from '../helpers/run';

/** run-in-vm.sh exit codes of its own (see docs/vm.md). */
export const VM_EXIT_SKIPPED = 77;
export const VM_EXIT_BOOT_FAILED = 90;
export const VM_EXIT_TIMEOUT = 91;

/** The repository root, from dist/test/vm/ (compiled) or test/vm/ (sources). */
export const REPO_DIR = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');

/** One "VMTEST RESULT <name> ok|fail key=value..." line printed by a guest test script. */
export interface GuestVerdict {
  name: string;
  ok: boolean;
  details: string;
}

/** Boot the VM once, run `command` in the repo directory as root; the harness's own timeout is below `timeoutMs`. */
export async function runInVm(command: string[], timeoutSeconds: number): Promise<RunResult> {
  const script = path.join(REPO_DIR, 'tools', 'vm', 'run-in-vm.sh');
  const hostMarginMs = 30_000;
  return run(script, ['--timeout', String(timeoutSeconds), '--', ...command], { timeoutMs: timeoutSeconds * 1000 + hostMarginMs });
}

/** Every verdict line in the guest output, by test name (the last one wins if a name repeats). */
export function parseVerdicts(output: string): Map<string, GuestVerdict> {
  const verdicts = new Map<string, GuestVerdict>();
  for (const match of output.matchAll(/^VMTEST RESULT (\S+) (ok|fail)(.*)$/gm)) {
    const [, name = '', status, details = ''] = match;
    verdicts.set(name, { name, ok: status === 'ok', details: details.trim() });
  }
  return verdicts;
}
