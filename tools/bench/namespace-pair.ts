// Two network namespaces joined by a veth pair: "A" hosts the primary, "B" the secondary.
// The addresses exist only inside these namespaces, which this tool creates and deletes.
import { spawnSync } from 'node:child_process';
import { CleanupRegistry } from './cleanup-registry';
import { runChecked, runCommand } from './run-command';

export const NAMESPACE_PREFIX = 'bmbench-';
/** A /30 that only ever exists inside the benchmark's own namespaces. */
export const ADDRESS_A = '10.213.0.1';
export const ADDRESS_B = '10.213.0.2';
const PREFIX_LENGTH = 30;

export type Side = 'a' | 'b';
/** Interface names of the veth ends inside namespace A and B. */
const VETH_A = 'bmbench0';
const VETH_B = 'bmbench1';

// Owns the namespaces and guarantees they are removed (with anything still running inside).
export class NamespacePair {
  private readonly unregister: () => Promise<void>;

  private constructor(readonly nameA: string, readonly nameB: string, cleanup: CleanupRegistry) {
    this.unregister = cleanup.add({
      description: `delete namespaces ${nameA} ${nameB}`,
      run: () => this.deleteNow(),
      runSync: () => this.deleteSync(),
    });
  }

  // Creates both namespaces, the veth pair directly inside them, and brings everything up.
  static async create(cleanup: CleanupRegistry): Promise<NamespacePair> {
    const runId = `${process.pid}-${Date.now().toString(36).slice(-4)}`;
    const pair = new NamespacePair(`${NAMESPACE_PREFIX}${runId}-a`, `${NAMESPACE_PREFIX}${runId}-b`, cleanup);
    await runChecked('ip', ['netns', 'add', pair.nameA]);
    await runChecked('ip', ['netns', 'add', pair.nameB]);
    // Both ends are created inside the new namespaces, so the host's own interfaces are never touched.
    await runChecked('ip', ['link', 'add', VETH_A, 'netns', pair.nameA, 'type', 'veth', 'peer', 'name', VETH_B, 'netns', pair.nameB]);
    await runChecked('ip', ['-n', pair.nameA, 'addr', 'add', `${ADDRESS_A}/${PREFIX_LENGTH}`, 'dev', VETH_A]);
    await runChecked('ip', ['-n', pair.nameB, 'addr', 'add', `${ADDRESS_B}/${PREFIX_LENGTH}`, 'dev', VETH_B]);
    for (const [name, veth] of [[pair.nameA, VETH_A], [pair.nameB, VETH_B]] as const) {
      await runChecked('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      await runChecked('ip', ['-n', name, 'link', 'set', veth, 'up']);
    }
    return pair;
  }

  // Command prefix that runs a program inside one side's namespace.
  execPrefix(side: Side): string[] {
    return ['ip', 'netns', 'exec', side === 'a' ? this.nameA : this.nameB];
  }

  // Cuts or restores the link by setting namespace A's veth end down or up (B loses carrier with it).
  async setLinkUp(up: boolean): Promise<void> {
    await runChecked('ip', ['-n', this.nameA, 'link', 'set', VETH_A, up ? 'up' : 'down']);
  }

  // The command setLinkUp runs, for the report.
  static linkCommand(up: boolean): string {
    return `ip -n A link set ${VETH_A} ${up ? 'up' : 'down'}`;
  }

  // Deletes the namespaces now (and unregisters the cleanup step).
  async destroy(): Promise<void> {
    await this.unregister();
  }

  // Kills leftovers inside our namespaces (only processes we started can be there), then deletes them.
  private async deleteNow(): Promise<void> {
    for (const name of [this.nameA, this.nameB]) {
      const pids = await runCommand('ip', ['netns', 'pids', name]);
      for (const pid of parsePids(pids.stdout)) killQuietly(pid);
      await runCommand('ip', ['netns', 'del', name]);
    }
  }

  // Same as deleteNow, for the synchronous 'exit' path.
  private deleteSync(): void {
    for (const name of [this.nameA, this.nameB]) {
      const pids = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' });
      for (const pid of parsePids(pids.stdout ?? '')) killQuietly(pid);
      spawnSync('ip', ['netns', 'del', name]);
    }
  }
}

// `ip netns pids` prints one pid per line.
function parsePids(text: string): number[] {
  return text.split('\n').map((line) => Number(line.trim())).filter((pid) => Number.isInteger(pid) && pid > 0);
}

// SIGKILL one pid we own, ignoring "already gone".
function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already exited.
  }
}

// True when a pid belongs to a live process.
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Removes namespaces left by an earlier benchmark run that was killed hard (its pid is in the name and is gone).
export async function removeStaleNamespaces(log: (line: string) => void): Promise<void> {
  const listing = await runCommand('ip', ['netns', 'list']);
  const pattern = new RegExp(`^(${NAMESPACE_PREFIX}(\\d+)-[0-9a-z]+-[ab])\\b`);
  for (const line of listing.stdout.split('\n')) {
    const match = pattern.exec(line.trim());
    if (!match) continue;
    const [, name, ownerPid] = match;
    if (isAlive(Number(ownerPid))) continue;
    log(`removing stale namespace ${name as string} from dead run ${ownerPid as string}`);
    const pids = await runCommand('ip', ['netns', 'pids', name as string]);
    for (const pid of parsePids(pids.stdout)) killQuietly(pid);
    await runCommand('ip', ['netns', 'del', name as string]);
  }
}
