/** The `blockmirror` command: one function per subcommand, exact usage errors, exit codes 0/1/2. */
import * as fs from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { flag, optionalString, parseHostPort, parseOptions, requireString, UsageError, type OptionSpec, type ParsedOptions } from './args';
import { parseSizeBytes } from '../util/size';
import { defaultControlPath } from '../control/protocol';
import { sendControlRequest } from '../control/client';
import { NodeRuntime, type PairOptions, type NodeOptions } from '../node/runtime';
import { INLINE_THRESHOLD_DEFAULT_BYTES, INLINE_THRESHOLD_MAX_BYTES, INLINE_THRESHOLD_MIN_BYTES, SECTOR_BYTES } from '../wire';
import { loadNative } from '../native';
import { setLogLevel } from '../util/log';

const USAGE = `usage: blockmirror COMMAND [options]

commands:
  up [--state DIR] [--size BYTES] [--port N]
                                           set up and run a local mirrored pair on sparse files in DIR
                                           (default ./state), exported on DIR/nbd.sock; prints how to reach it
  serve --store PATH [--size BYTES] --nbd-socket PATH [--nbd-listen HOST:PORT] [--control PATH]
        [--direct] [--export-name NAME]   one node, exported over NBD
  attach --store PATH [--size BYTES] --device /dev/nbdN [--control PATH] [--direct]
                                           one node, attached to the kernel NBD driver
  primary --store PATH [--size BYTES] --peer HOST:PORT (--nbd-socket PATH | --device /dev/nbdN)
        [--nbd-listen HOST:PORT] [--mode sync|async] [--inline-threshold BYTES] [--async-window BYTES]
        [--region-size BYTES] [--keepalive-timeout MS] [--control PATH]
                                           serve the volume and mirror every write to the secondary
  secondary --store PATH [--size BYTES] --listen HOST:PORT [--peer HOST:PORT] [--nbd-socket PATH]
        [--keepalive-timeout MS] [--control PATH]
                                           keep a replica of the primary's volume (--peer and --nbd-socket
                                           are used once promoted)
  pair options: [--region-size BYTES] [--resync-rate BYTES/s] [--resync-checksum] [--no-resync-channel]
        [--force-new-metadata]
  promote --control PATH [--force]         make a secondary primary (refused while its peer is primary)
  demote --control PATH                    make a primary secondary (stops serving)
  verify --control PATH [--resync] [--json] compare every region with the peer; --resync repairs mismatches
  resolve --control PATH --discard-my-data split brain: save this node's changes to a file, then resync from the peer
  detach --device /dev/nbdN                disconnect a kernel NBD device
  status --control PATH [--json]           print a running node's status

sizes accept K, M, G, T suffixes (binary). The control socket defaults to STORE.ctl.
`;

const NODE_OPTIONS: OptionSpec = {
  store: 'string',
  size: 'string',
  'nbd-socket': 'string',
  'nbd-listen': 'string',
  control: 'string',
  device: 'string',
  direct: 'boolean',
  'export-name': 'string',
  verbose: 'boolean',
  peer: 'string',
  listen: 'string',
  mode: 'string',
  'inline-threshold': 'string',
  'async-window': 'string',
  'region-size': 'string',
  'keepalive-timeout': 'string',
  'resync-rate': 'string',
  'resync-checksum': 'boolean',
  'no-resync-channel': 'boolean',
  'force-new-metadata': 'boolean',
};

/** Entry point used by bin/blockmirror. */
export function main(argv: string[]): void {
  const [command, ...rest] = argv;
  run(command, rest).then(
    (code) => {
      if (code !== undefined) process.exitCode = code;
    },
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`blockmirror: ${error.message}\n\n${USAGE}`);
        process.exitCode = 2;
      } else {
        const e = error as Error & { code?: string };
        process.stderr.write(`blockmirror: ${e.message}${e.code !== undefined && !e.message.includes(e.code) ? ` (${e.code})` : ''}\n`);
        process.exitCode = 1;
      }
    },
  );
}

async function run(command: string | undefined, args: string[]): Promise<number | undefined> {
  switch (command) {
    case 'serve':
      return runNode(args, 'serve');
    case 'attach':
      return runNode(args, 'attach');
    case 'primary':
      return runNode(args, 'primary');
    case 'secondary':
      return runNode(args, 'secondary');
    case 'detach':
      return detach(args);
    case 'status':
      return status(args);
    case 'promote':
      return controlCommand(args, 'promote', { force: 'boolean' }, (o) => ({ force: flag(o, 'force') }));
    case 'demote':
      return controlCommand(args, 'demote', {}, () => ({}));
    case 'verify':
      return controlCommand(args, 'verify', { resync: 'boolean' }, (o) => ({ resync: flag(o, 'resync') }));
    case 'resolve':
      return controlCommand(args, 'resolve', { 'discard-my-data': 'boolean' }, (o) => {
        if (!flag(o, 'discard-my-data')) throw new UsageError('resolve needs --discard-my-data (run it on the node whose changes are to be discarded)');
        return { discardMyData: true };
      });
    case 'up':
      return up(args);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** Build NodeOptions from parsed options, validating the combination for the subcommand. */
type NodeMode = 'serve' | 'attach' | 'primary' | 'secondary';

/** Options that only some modes accept. */
const PAIR: NodeMode[] = ['primary', 'secondary'];
const MODE_ONLY: Record<string, NodeMode[]> = {
  peer: PAIR,
  mode: PAIR,
  'inline-threshold': PAIR,
  'async-window': PAIR,
  'region-size': PAIR,
  'resync-rate': PAIR,
  'resync-checksum': PAIR,
  'no-resync-channel': PAIR,
  'force-new-metadata': PAIR,
  listen: PAIR,
  'keepalive-timeout': PAIR,
  'nbd-socket': ['serve', ...PAIR],
  'nbd-listen': ['serve', ...PAIR],
  device: ['attach', ...PAIR],
  'export-name': ['serve', ...PAIR],
};

function nodeOptions(options: ParsedOptions, mode: NodeMode): NodeOptions {
  for (const [name, modes] of Object.entries(MODE_ONLY)) {
    if (options.has(name) && !modes.includes(mode)) throw new UsageError(`${mode} does not take --${name}`);
  }
  const storePath = path.resolve(requireString(options, 'store'));
  const sizeText = optionalString(options, 'size');
  const nbdSocket = optionalString(options, 'nbd-socket');
  const nbdListen = optionalString(options, 'nbd-listen');
  const device = optionalString(options, 'device');
  if (mode === 'serve' && nbdSocket === undefined && nbdListen === undefined) {
    throw new UsageError('serve needs --nbd-socket PATH (and/or --nbd-listen HOST:PORT)');
  }
  if (mode === 'attach' && device === undefined) throw new UsageError('attach needs --device /dev/nbdN');
  if (mode === 'primary' && nbdSocket === undefined && nbdListen === undefined && device === undefined) {
    throw new UsageError('primary needs --nbd-socket PATH, --nbd-listen HOST:PORT or --device /dev/nbdN');
  }
  if (mode === 'primary' && !options.has('peer')) throw new UsageError('primary needs --peer HOST:PORT (the secondary)');
  if (mode === 'secondary' && !options.has('listen')) throw new UsageError('secondary needs --listen HOST:PORT');
  if (device !== undefined && !/^\/dev\/nbd\d+$/.test(device)) throw new UsageError(`--device must be /dev/nbdN, got "${device}"`);
  const keepaliveText = optionalString(options, 'keepalive-timeout');
  const keepaliveTimeoutMs = keepaliveText === undefined ? undefined : positiveInteger(keepaliveText, 'keepalive-timeout');
  return {
    role: mode === 'primary' ? 'primary' : mode === 'secondary' ? 'secondary' : 'standalone',
    pair: mode === 'primary' || mode === 'secondary' ? pairOptions(options) : undefined,
    keepaliveTimeoutMs,
    keepaliveIntervalMs: keepaliveTimeoutMs === undefined ? undefined : Math.max(50, Math.floor(keepaliveTimeoutMs / 5)),
    storePath,
    sizeBytes: sizeText === undefined ? undefined : sizeOption(sizeText),
    direct: flag(options, 'direct'),
    controlPath: path.resolve(optionalString(options, 'control') ?? defaultControlPath(storePath)),
    nbdSocketPath: nbdSocket === undefined ? undefined : path.resolve(nbdSocket),
    nbdTcp: nbdListen === undefined ? undefined : parseHostPort(nbdListen, 'nbd-listen'),
    devicePath: device,
    exportName: optionalString(options, 'export-name') ?? '',
  };
}

/** Run a node in the foreground until SIGTERM/SIGINT (or the kernel device goes away). */
async function runNode(args: string[], mode: NodeMode): Promise<number | undefined> {
  const options = parseOptions(args, NODE_OPTIONS);
  if (flag(options, 'verbose')) setLogLevel('debug');
  const runtime = new NodeRuntime(nodeOptions(options, mode));
  runtime.installSignalHandlers();
  try {
    await runtime.start();
  } catch (error) {
    await runtime.shutdown().catch(() => undefined);
    throw error;
  }
  return undefined; // stays alive on its sockets; signal handlers exit
}

async function detach(args: string[]): Promise<number> {
  const options = parseOptions(args, { device: 'string' });
  const device = requireString(options, 'device');
  if (!/^\/dev\/nbd\d+$/.test(device)) throw new UsageError(`--device must be /dev/nbdN, got "${device}"`);
  loadNative().disconnectNbdDevice(device);
  process.stdout.write(`${device}: disconnect requested\n`);
  return 0;
}

/** Send one administrative command to a running node and print its answer. */
async function controlCommand(
  args: string[],
  command: string,
  spec: OptionSpec,
  toRequest: (options: ParsedOptions) => Record<string, unknown>,
): Promise<number> {
  const options = parseOptions(args, { control: 'string', json: 'boolean', ...spec });
  const result = await sendControlRequest(requireString(options, 'control'), { command, ...toRequest(options) }, 24 * 3600 * 1000);
  if (flag(options, 'json')) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(formatStatus(result as Record<string, unknown>));
  return 0;
}

async function status(args: string[]): Promise<number> {
  const options = parseOptions(args, { control: 'string', json: 'boolean' });
  const result = await sendControlRequest(requireString(options, 'control'), { command: 'status' });
  if (flag(options, 'json')) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    process.stdout.write(formatStatus(result as Record<string, unknown>));
  }
  return 0;
}

/** Human-readable status: one "key: value" line per leaf. */
function formatStatus(doc: Record<string, unknown>, prefix = ''): string {
  let out = '';
  for (const [key, value] of Object.entries(doc)) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      out += formatStatus(value as Record<string, unknown>, `${prefix}${key}.`);
    } else {
      out += `${prefix}${key}: ${JSON.stringify(value)}\n`;
    }
  }
  return out;
}

/** Main job on defaults: a local mirrored pair on sparse files in a state folder, exported over NBD. */
async function up(args: string[]): Promise<number | undefined> {
  const options = parseOptions(args, { state: 'string', size: 'string', port: 'string', verbose: 'boolean' });
  if (flag(options, 'verbose')) setLogLevel('debug');
  const stateDir = path.resolve(optionalString(options, 'state') ?? 'state');
  const port = positiveInteger(optionalString(options, 'port') ?? '17789', 'port');
  fs.mkdirSync(path.join(stateDir, 'primary'), { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.join(stateDir, 'secondary'), { recursive: true, mode: 0o700 });
  const primaryStore = path.join(stateDir, 'primary', 'store.img');
  const secondaryStore = path.join(stateDir, 'secondary', 'store.img');
  const socketPath = path.join(stateDir, 'nbd.sock');
  const sizeText = optionalString(options, 'size');
  const sizeBytes = fs.existsSync(primaryStore) ? (sizeText === undefined ? undefined : sizeOption(sizeText)) : sizeOption(sizeText ?? '1G');
  const cli = path.resolve(__dirname, '../../../bin/blockmirror');
  const secondaryArgs = ['secondary', '--store', secondaryStore, '--listen', `127.0.0.1:${port}`];
  if (!fs.existsSync(secondaryStore)) secondaryArgs.push('--size', String(sizeBytes ?? fs.statSync(primaryStore).size));
  const secondary = spawn(process.execPath, [cli, ...secondaryArgs], { stdio: ['ignore', 'inherit', 'inherit'] });
  const secondaryExited = new Promise<void>((resolve) => secondary.once('exit', () => resolve()));
  await waitForControlSocket(`${secondaryStore}.ctl`, secondary);
  const runtime = new NodeRuntime({
    role: 'primary',
    storePath: primaryStore,
    sizeBytes,
    direct: false,
    controlPath: `${primaryStore}.ctl`,
    nbdSocketPath: socketPath,
    nbdTcp: undefined,
    devicePath: undefined,
    exportName: '',
    pair: {
      peer: { host: '127.0.0.1', port },
      listen: undefined,
      mode: 'sync',
      inlineThresholdBytes: INLINE_THRESHOLD_DEFAULT_BYTES,
      asyncWindowBytes: 64 * 1024 * 1024,
      regionBytes: 64 * 1024,
      resyncRateBytesPerSecond: 0,
      resyncChecksum: false,
      resyncChannel: true,
      forceNewMetadata: false,
    },
  });
  const stop = (signal: string): void => {
    runtime.log.info(`${signal} received: stopping the pair`);
    runtime
      .shutdown()
      .then(() => {
        secondary.kill('SIGTERM');
        return secondaryExited;
      })
      .then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await runtime.start();
  const uri = `nbd+unix:///?socket=${socketPath}`;
  process.stdout.write(
    [
      `blockmirror pair running: primary ${primaryStore}, secondary ${secondaryStore} (127.0.0.1:${port}), ${runtime.store.sizeBytes} bytes, sparse`,
      `  NBD export:   ${uri}`,
      `  inspect:      nbdinfo '${uri}'`,
      `  benchmark:    fio --name=t --ioengine=nbd --uri='${uri}' --rw=randwrite --bs=4k --iodepth=32 --runtime=10 --time_based --size=256M`,
      `  block device: mkdir -p ${stateDir}/fuse && nbdfuse ${stateDir}/fuse/nbd --unix ${socketPath} &`,
      `                losetup -f --show ${stateDir}/fuse/nbd   # then mkfs.ext4 / mount the loop device`,
      `  status:       node ${cli} status --control ${primaryStore}.ctl --json   (secondary: ${secondaryStore}.ctl)`,
      `  stop:         Ctrl-C (or SIGTERM)`,
      '',
    ].join('\n'),
  );
  return undefined;
}

/** Wait until a child node answers on its control socket. */
async function waitForControlSocket(controlPath: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`the secondary exited with code ${child.exitCode}`);
    try {
      await sendControlRequest(controlPath, { command: 'status' }, 1000);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error('the secondary did not become ready');
}

/** A --size value; a malformed one is a usage error. */
function sizeOption(text: string): number {
  try {
    return parseSizeBytes(text);
  } catch (error) {
    throw new UsageError(`--size: ${(error as Error).message}`);
  }
}


function positiveInteger(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive whole number, got "${text}"`);
  return n;
}

/** A pair node's settings, validated. */
function pairOptions(options: ParsedOptions): PairOptions {
  const peerText = optionalString(options, 'peer');
  const listenText = optionalString(options, 'listen');
  const mode = optionalString(options, 'mode') ?? 'sync';
  if (mode !== 'sync' && mode !== 'async') throw new UsageError(`--mode must be sync or async, got "${mode}"`);
  const inline = sizeOption(optionalString(options, 'inline-threshold') ?? String(INLINE_THRESHOLD_DEFAULT_BYTES));
  if (inline < INLINE_THRESHOLD_MIN_BYTES || inline > INLINE_THRESHOLD_MAX_BYTES || inline % SECTOR_BYTES !== 0) {
    throw new UsageError(`--inline-threshold must be a multiple of ${SECTOR_BYTES} from ${INLINE_THRESHOLD_MIN_BYTES} to ${INLINE_THRESHOLD_MAX_BYTES} bytes`);
  }
  const regionBytes = sizeOption(optionalString(options, 'region-size') ?? '64K');
  if (regionBytes < 4096 || regionBytes > 64 * 1024 * 1024 || (regionBytes & (regionBytes - 1)) !== 0) {
    throw new UsageError('--region-size must be a power of two from 4K to 64M');
  }
  const rateText = optionalString(options, 'resync-rate');
  return {
    peer: peerText === undefined ? undefined : parseHostPort(peerText, 'peer'),
    listen: listenText === undefined ? undefined : parseHostPort(listenText, 'listen'),
    mode,
    inlineThresholdBytes: inline,
    asyncWindowBytes: sizeOption(optionalString(options, 'async-window') ?? '64M'),
    regionBytes,
    resyncRateBytesPerSecond: rateText === undefined ? 0 : sizeOption(rateText),
    resyncChecksum: flag(options, 'resync-checksum'),
    resyncChannel: !flag(options, 'no-resync-channel'),
    forceNewMetadata: flag(options, 'force-new-metadata'),
  };
}
