// The floor under the link-cut resync on this machine: stream-floor (tools/bench/stream-floor.cc) does only what
// any resync of the same regions has to do (read each region, CRC32C it, send it with the channel's heads; receive,
// check, pwrite into a fresh sparse file, ACK), in one C++ thread at each end, across the same veth. What the
// resync moves against what this moves says how much the rest of blockmirror costs; what this moves against
// iperf3 says how much of the link a resync can use at all on these CPUs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './blockmirror-commands';
import { ADDRESS_B, NamespacePair } from './namespace-pair';
import { firstLines, runCommand } from './run-command';

/** The program's source and the one native file it shares with the addon. */
export const STREAM_FLOOR_SOURCES = [path.join(REPO_ROOT, 'tools', 'bench', 'stream-floor.cc'), path.join(REPO_ROOT, 'native', 'crc32c.cc')];
/** The addon's own optimization and instruction-set flags (binding.gyp), so both CRC32Cs are the same code. */
const COMPILE_FLAGS = ['-std=c++17', '-O2', '-msse4.2', '-Wall', '-Wextra', '-Werror', '-D_GNU_SOURCE', '-D_FILE_OFFSET_BITS=64'];
/** Inside the bench's namespace B only (iperf3 uses 5201). */
const STREAM_FLOOR_PORT = 5202;
const BUILD_TIMEOUT_MS = 120_000;
const RUN_TIMEOUT_MS = 120_000;

/** What one stream moved. */
export interface StreamFloorResult {
  bytes: number;
  seconds: number;
  writes: number;
}

/** One stream's shape: the volume and its regions, as the link-cut scenario dirties them. */
export interface StreamShape {
  volumeBytes: number;
  regionBytes: number;
  regions: number;
  seed: number;
}

// Compiles stream-floor into dir with the system's g++ (the addon's build needs it too); returns the binary's path.
export async function buildStreamFloor(dir: string): Promise<string> {
  const binary = path.join(dir, 'stream-floor');
  const args = [...COMPILE_FLAGS, '-I', path.join(REPO_ROOT, 'native'), '-o', binary, ...STREAM_FLOOR_SOURCES];
  const result = await runCommand('g++', args, { timeoutMs: BUILD_TIMEOUT_MS });
  if (result.exitCode !== 0) throw new Error(`building stream-floor failed: ${firstLines(result.stderr || result.stdout)}`);
  return binary;
}

// The sender's one JSON line.
export function parseStreamFloorOutput(stdout: string): StreamFloorResult {
  let parsed: Partial<StreamFloorResult>;
  try {
    parsed = JSON.parse(stdout.trim()) as Partial<StreamFloorResult>;
  } catch {
    throw new Error(`stream-floor printed no JSON: ${stdout.slice(0, 200)}`);
  }
  const { bytes, seconds, writes } = parsed;
  if (typeof bytes !== 'number' || typeof seconds !== 'number' || typeof writes !== 'number' || !(seconds > 0) || bytes <= 0) {
    throw new Error(`stream-floor printed unexpected figures: ${stdout.slice(0, 200)}`);
  }
  return { bytes, seconds, writes };
}

/** Where each end runs: a command prefix (ip netns exec ...) and the address the receiver listens on. */
export interface StreamEnds {
  senderPrefix: readonly string[];
  receiverPrefix: readonly string[];
  address: string;
  port: number;
}

// The bench's namespaces: receiver in B (like the secondary), sender in A.
export function namespaceEnds(namespaces: NamespacePair): StreamEnds {
  return { senderPrefix: namespaces.execPrefix('a'), receiverPrefix: namespaces.execPrefix('b'), address: ADDRESS_B, port: STREAM_FLOOR_PORT };
}

// One stream: receiver started first (the sender retries its connect for 2 s), both waited for; the source and
// target files are deleted afterwards (their dirty pages would otherwise be written back during the next run).
export async function runStreamFloor(binary: string, ends: StreamEnds, dir: string, shape: StreamShape): Promise<StreamFloorResult> {
  const source = path.join(dir, 'stream-floor-source.img');
  const target = path.join(dir, 'stream-floor-target.img');
  const run = (prefix: readonly string[], args: string[]): ReturnType<typeof runCommand> => {
    const [program, ...rest] = [...prefix, binary, ...args];
    return runCommand(program as string, rest, { timeoutMs: RUN_TIMEOUT_MS });
  };
  try {
    const receiver = run(ends.receiverPrefix, ['receive', ends.address, String(ends.port), target, String(shape.volumeBytes)]);
    const sender = await run(ends.senderPrefix, ['send', ends.address, String(ends.port), source, String(shape.volumeBytes),
      String(shape.regionBytes), String(shape.regions), String(shape.seed)]);
    const received = await receiver;
    if (sender.exitCode !== 0) throw new Error(`stream-floor send failed: ${firstLines(sender.stderr)}`);
    if (received.exitCode !== 0) throw new Error(`stream-floor receive failed: ${firstLines(received.stderr)}`);
    return parseStreamFloorOutput(sender.stdout);
  } finally {
    for (const file of [source, target]) fs.rmSync(file, { force: true });
  }
}

// The command line that reproduces one stream by hand, for the report.
export function streamFloorCommand(shape: StreamShape): string {
  const size = String(shape.volumeBytes);
  return `g++ ${COMPILE_FLAGS.join(' ')} -I native -o stream-floor tools/bench/stream-floor.cc native/crc32c.cc; ` +
    `ip netns exec B ./stream-floor receive ${ADDRESS_B} ${STREAM_FLOOR_PORT} target.img ${size} & ` +
    `ip netns exec A ./stream-floor send ${ADDRESS_B} ${STREAM_FLOOR_PORT} source.img ${size} ${shape.regionBytes} ${shape.regions} SEED`;
}
