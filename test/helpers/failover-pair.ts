/**
 * A pair across two namespaces where both nodes know both addresses (so either can be promoted
 * or demoted): the primary in A listens on A's address, the secondary in B on B's; each names the
 * other as --peer. Stores live in `dir`; NBD sockets: a.sock (node A), b.sock (node B).
 */
import * as path from 'node:path';
import { NodeProcess } from './node-process';
import type { NamespacePair } from './netns';
import { waitForPeerState, waitSettled } from './pair';

export interface FailoverNodes {
  a: NodeProcess;
  b: NodeProcess;
  storeA: string;
  storeB: string;
  socketA: string;
  socketB: string;
  port: number;
}

/** Command line of node A or B in a given role. */
export function nodeArgs(dir: string, ns: NamespacePair, port: number, which: 'a' | 'b', role: 'primary' | 'secondary', extra: string[] = []): string[] {
  const self = which === 'a' ? ns.addressA : ns.addressB;
  const peer = which === 'a' ? ns.addressB : ns.addressA;
  const store = path.join(dir, `${which}.img`);
  return [
    role, '--store', store, '--size', '64M', '--listen', `${self}:${port}`, '--peer', `${peer}:${port}`,
    '--nbd-socket', path.join(dir, `${which}.sock`), '--control', `${store}.ctl`, '--keepalive-timeout', '1500', ...extra,
  ];
}

export function startNode(dir: string, ns: NamespacePair, port: number, which: 'a' | 'b', role: 'primary' | 'secondary', extra: string[] = []): NodeProcess {
  const store = path.join(dir, `${which}.img`);
  return new NodeProcess(nodeArgs(dir, ns, port, which, role, extra), `${store}.ctl`, { netns: which === 'a' ? ns.a : ns.b });
}

/**
 * Secondary B, then primary A; resolves once A mirrors to B and their first sync is over (see
 * waitSettled), so a test that cuts the link or kills a node right away starts from a settled pair.
 */
export async function startFailoverPair(dir: string, ns: NamespacePair, extraA: string[] = [], extraB: string[] = []): Promise<FailoverNodes> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const b = startNode(dir, ns, port, 'b', 'secondary', extraB);
  await b.ready();
  const a = startNode(dir, ns, port, 'a', 'primary', extraA);
  await a.ready();
  await waitForPeerState(a, 'connected');
  await waitSettled(a, b);
  return { a, b, storeA: path.join(dir, 'a.img'), storeB: path.join(dir, 'b.img'), socketA: path.join(dir, 'a.sock'), socketB: path.join(dir, 'b.sock'), port };
}

/** Poll until the primary reports no resync running and nothing out of sync. */
export async function waitInSync(node: NodeProcess, timeoutMs = 60_000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = (await node.status()) as Record<string, any>;
    // peer.disk, not peer.state: "connected" comes before the connect sequence and the resync end.
    if (s.peer?.state === 'connected' && s.peer?.disk === 'upToDate' && s.resync?.active === false && s.peer?.outOfSyncBytes === 0) return s;
    if (Date.now() > deadline) throw new Error(`not in sync: ${JSON.stringify({ peer: s.peer, resync: s.resync })}\n${node.stderr.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
