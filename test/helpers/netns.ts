/**
 * Two "hosts" on one machine: network namespaces joined by a veth pair, created by the test
 * itself, with addresses that exist only inside those namespaces. Removed by destroy().
 */
import * as crypto from 'node:crypto';
import { run, runOk } from './run';

export class NamespacePair {
  readonly a: string;
  readonly b: string;
  readonly addressA: string;
  readonly addressB: string;
  private readonly vethA: string;
  private readonly vethB: string;

  private constructor(id: string, subnet: number) {
    this.a = `bmt-${id}-a`;
    this.b = `bmt-${id}-b`;
    this.vethA = `bm${id}a`;
    this.vethB = `bm${id}b`;
    this.addressA = `10.231.${subnet}.1`;
    this.addressB = `10.231.${subnet}.2`;
  }

  /** Create both namespaces, the veth pair and the addresses; loopback up in each. */
  static async create(): Promise<NamespacePair> {
    const id = crypto.randomBytes(3).toString('hex');
    const pair = new NamespacePair(id, crypto.randomInt(1, 250));
    try {
      await runOk('ip', ['netns', 'add', pair.a]);
      await runOk('ip', ['netns', 'add', pair.b]);
      await runOk('ip', ['link', 'add', pair.vethA, 'netns', pair.a, 'type', 'veth', 'peer', 'name', pair.vethB, 'netns', pair.b]);
      await runOk('ip', ['-n', pair.a, 'addr', 'add', `${pair.addressA}/30`, 'dev', pair.vethA]);
      await runOk('ip', ['-n', pair.b, 'addr', 'add', `${pair.addressB}/30`, 'dev', pair.vethB]);
      for (const [ns, dev] of [[pair.a, pair.vethA], [pair.b, pair.vethB]] as const) {
        await runOk('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        await runOk('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      }
    } catch (error) {
      await pair.destroy();
      throw error;
    }
    return pair;
  }

  /** Take the link down on A's side (a cut cable). */
  async linkDown(): Promise<void> {
    await runOk('ip', ['-n', this.a, 'link', 'set', this.vethA, 'down']);
  }

  async linkUp(): Promise<void> {
    await runOk('ip', ['-n', this.a, 'link', 'set', this.vethA, 'up']);
  }

  async destroy(): Promise<void> {
    await run('ip', ['netns', 'del', this.a]);
    await run('ip', ['netns', 'del', this.b]);
  }
}
