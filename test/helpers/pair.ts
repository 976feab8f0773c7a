/** Start a mirrored pair (secondary + primary) as real processes, on loopback or in two namespaces. */
import * as path from 'node:path';
import { NodeProcess, sleep } from './node-process';
import type { NamespacePair } from './netns';

export interface PairProcesses {
  primary: NodeProcess;
  secondary: NodeProcess;
  primaryStore: string;
  secondaryStore: string;
  socket: string;
  uri: string;
  peerAddress: string;
}

/** Start a pair in `dir`; with `netns` the secondary runs in B and the primary in A. */
export async function startPair(dir: string, options: { size?: string; netns?: NamespacePair; port?: number; primaryArgs?: string[]; secondaryArgs?: string[] } = {}): Promise<PairProcesses> {
  const size = options.size ?? '64M';
  const port = options.port ?? 20000 + Math.floor(Math.random() * 20000);
  const listenHost = options.netns?.addressB ?? '127.0.0.1';
  const primaryStore = path.join(dir, 'primary.img');
  const secondaryStore = path.join(dir, 'secondary.img');
  const socket = path.join(dir, 'nbd.sock');
  const secondary = new NodeProcess(
    ['secondary', '--store', secondaryStore, '--size', size, '--listen', `${listenHost}:${port}`, '--control', `${secondaryStore}.ctl`, ...(options.secondaryArgs ?? [])],
    `${secondaryStore}.ctl`,
    { netns: options.netns?.b },
  );
  await secondary.ready();
  const primary = new NodeProcess(
    ['primary', '--store', primaryStore, '--size', size, '--peer', `${listenHost}:${port}`, '--nbd-socket', socket, '--control', `${primaryStore}.ctl`, ...(options.primaryArgs ?? [])],
    `${primaryStore}.ctl`,
    { netns: options.netns?.a },
  );
  await primary.ready();
  await waitForPeerState(primary, 'connected');
  await waitSettled(primary, secondary);
  return { primary, secondary, primaryStore, secondaryStore, socket, uri: `nbd+unix:///?socket=${socket}`, peerAddress: `${listenHost}:${port}` };
}

/**
 * Poll until primary A reports its peer's disk up to date (B ACKed the RESYNC_DONE that A sends
 * after it reports "connected") and secondary B holds A's current generation, up to date. Until then
 * a link cut leaves B on its old generation, and the next connect is a full sync.
 */
export async function waitSettled(a: NodeProcess, b: NodeProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const sa = (await a.status()) as Record<string, any>;
    const sb = (await b.status()) as Record<string, any>;
    const aInSync = sa.peer?.state === 'connected' && sa.peer?.disk === 'upToDate' && sa.resync?.active === false && sa.peer?.outOfSyncBytes === 0;
    if (aInSync && sb.disk?.state === 'upToDate' && sb.generation?.current === sa.generation?.current) return;
    if (Date.now() > deadline) throw new Error(`pair not settled: ${JSON.stringify({ a: { peer: sa.peer, generation: sa.generation }, b: { disk: sb.disk, generation: sb.generation } })}`);
    await sleep(20);
  }
}

/** Poll the node's status until peer.state is `state`. */
export async function waitForPeerState(node: NodeProcess, state: string, timeoutMs = 30_000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = (await node.status()) as Record<string, any>;
    if (status.peer?.state === state) return status;
    if (Date.now() > deadline) throw new Error(`peer state is ${JSON.stringify(status.peer)}, wanted ${state}\n${node.stderr}`);
    await sleep(100);
  }
}
