// TCP throughput across the veth between the namespaces: the ceiling any replication can reach.
import * as path from 'node:path';
import { CleanupRegistry } from './cleanup-registry';
import { ADDRESS_B, NamespacePair } from './namespace-pair';
import { firstLines, runCommand } from './run-command';
import { ServerProcess } from './server-process';
import { retryUntil, SERVER_READY_TIMEOUT_MS } from './wait-ready';

const IPERF_PORT = 5201;
/** Slack beyond the measured duration before the iperf3 client is treated as hung. */
const IPERF_SLACK_MS = 30_000;

export interface IperfResult {
  bitsPerSecond: number;
  durationSec: number;
  command: string;
}

// Reads the receiver-side throughput from iperf3 --json output, throwing iperf3's own error if it reported one.
export function receivedBitsPerSecond(output: string, stderr: string): number {
  let parsed: { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
  try {
    parsed = JSON.parse(output) as typeof parsed;
  } catch {
    throw new Error(`iperf3 printed no JSON: ${stderr || output.slice(0, 200)}`);
  }
  if (parsed.error) throw new Error(`iperf3: ${parsed.error}`);
  const bitsPerSecond = parsed.end?.sum_received?.bits_per_second;
  if (bitsPerSecond === undefined) throw new Error('iperf3 JSON has no end.sum_received.bits_per_second');
  return bitsPerSecond;
}

// Server in B (one test then exit), client in A; returns the receiver-side throughput.
export async function measureVethThroughput(namespaces: NamespacePair, durationSec: number, workDir: string, cleanup: CleanupRegistry): Promise<IperfResult> {
  const [serverProgram, ...serverArgs] = [...namespaces.execPrefix('b'), 'iperf3', '--server', '--one-off', '--bind', ADDRESS_B, '--port', String(IPERF_PORT)];
  const server = ServerProcess.start('iperf3-server', serverProgram as string, serverArgs, path.join(workDir, 'iperf3-server.log'), cleanup);
  const clientArgs = ['iperf3', '--client', ADDRESS_B, '--port', String(IPERF_PORT), '--time', String(durationSec), '--json'];
  try {
    // iperf3 3.12 exits 0 even when it could not connect, so success is judged from the JSON.
    const bitsPerSecond = await retryUntil(async () => {
      if (server.hasExited) throw new Error(server.describeExit());
      const [program, ...args] = [...namespaces.execPrefix('a'), ...clientArgs];
      const result = await runCommand(program as string, args, { timeoutMs: durationSec * 1000 + IPERF_SLACK_MS });
      return receivedBitsPerSecond(result.stdout, firstLines(result.stderr));
    }, SERVER_READY_TIMEOUT_MS, 'iperf3 client');
    return { bitsPerSecond, durationSec, command: `ip netns exec B ${clientArgs.join(' ')} (server: iperf3 --server --one-off in B)` };
  } finally {
    await server.stop();
  }
}
