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
  await waitForConnectSequence(primary);
  return { primary, secondary, primaryStore, secondaryStore, socket, uri: `nbd+unix:///?socket=${socket}`, peerAddress: `${listenHost}:${port}` };
}

/**
 * The primary reports "connected" before the last message of the connect sequence (RESYNC_DONE, sent
 * once its metadata is persisted) has reached the secondary: wait for that message's ACK, so that a
 * test's first sample of either node's counters comes after it.
 */
export async function waitForConnectSequence(primary: NodeProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = (await primary.status()) as Record<string, any>;
    if (status.mirror?.acksReceived >= 1) return;
    if (Date.now() > deadline) throw new Error(`no ACK for the connect sequence's RESYNC_DONE: ${JSON.stringify(status.mirror)}\n${primary.stderr}`);
    await sleep(10);
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
