/**
 * The acknowledged-write proof tools against a real blockmirror node, all as real processes:
 * writer → stop the node → checker passes; a corrupted block is reported at exactly its offset;
 * a log torn mid-record still checks; kill -9 of the node mid-run leaves a complete log that passes.
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAckLog } from '../../tools/proof/ack-log';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const BLOCKMIRROR = path.join(REPO_ROOT, 'bin', 'blockmirror');
const WRITER = path.join(REPO_ROOT, 'dist', 'tools', 'proof', 'writer.js');
const CHECKER = path.join(REPO_ROOT, 'dist', 'tools', 'proof', 'checker.js');
const STORE_SIZE = '64M';
const WRITER_DURATION_SECONDS = 3;
/** Generous bounds for a loaded 2-core machine; they only turn a hang into a failure. */
const SOCKET_READY_TIMEOUT_MS = 20_000;
const PROCESS_EXIT_TIMEOUT_MS = 60_000;
/** Acknowledged writes to wait for before pulling the plug in the kill -9 case. */
const WRITES_BEFORE_KILL = 200;

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Waits for a spawned process to exit, collecting its output; fails after the timeout. */
function finished(child: ChildProcess, what: string): Promise<Finished> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not exit within ${PROCESS_EXIT_TIMEOUT_MS} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, PROCESS_EXIT_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs a node script to completion. */
function runNode(script: string, args: string[]): Promise<Finished> {
  return finished(spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }), path.basename(script));
}

/** Polls until a unix socket accepts connections. */
async function waitForSocket(socketPath: string, node: ChildProcess): Promise<void> {
  const deadline = Date.now() + SOCKET_READY_TIMEOUT_MS;
  for (;;) {
    if (node.exitCode !== null) throw new Error(`blockmirror serve exited with ${node.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createConnection(socketPath);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${socketPath} not ready after ${SOCKET_READY_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts `blockmirror serve` on a store and waits until its NBD socket accepts. */
async function startNode(dir: string, name: string): Promise<{ node: ChildProcess; exited: Promise<Finished>; store: string; socket: string }> {
  const store = path.join(dir, `${name}.img`);
  const socket = path.join(dir, `${name}.sock`);
  const node = spawn(process.execPath, [BLOCKMIRROR, 'serve', '--store', store, '--size', STORE_SIZE, '--nbd-socket', socket], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = finished(node, 'blockmirror serve');
  await waitForSocket(socket, node);
  return { node, exited, store, socket };
}

/** Parses the checker's --json output. */
function checkerJson(result: Finished): {
  passed: boolean;
  writesInLog: number;
  blocksChecked: number;
  logTornTailLines: number;
  lost: { offset: number }[];
  corrupt: { offset: number }[];
} {
  try {
    return JSON.parse(result.stdout);
  } catch {
    throw new Error(`checker printed no JSON (exit ${result.code})\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
}

describe('proof tools against a real node (writer, checker)', function () {
  let dir: string;
  const nodes: ChildProcess[] = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proof-'));
  });

  afterEach(() => {
    for (const node of nodes.splice(0)) if (node.exitCode === null && node.signalCode === null) node.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('passes after a clean stop, reports exactly a corrupted block, and tolerates a log torn mid-record', async function () {
    const { node, exited, store, socket } = await startNode(dir, 'clean');
    nodes.push(node);
    const logPath = path.join(dir, 'ack.log');
    const writer = await runNode(WRITER, ['--uri', `nbd+unix:///?socket=${socket}`, '--log', logPath, '--duration', String(WRITER_DURATION_SECONDS)]);
    assert.equal(writer.code, 0, `writer: ${writer.stderr}`);
    assert.match(writer.stderr, /stopped: \d+ writes acknowledged and logged/);
    node.kill('SIGTERM');
    assert.equal((await exited).code, 0, 'blockmirror serve exits 0 on SIGTERM');

    const log = parseAckLog(fs.readFileSync(logPath, 'utf8'));
    assert.ok(log.writes.length > 0, 'the writer acknowledged some writes');
    const clean = await runNode(CHECKER, ['--log', logPath, '--image', store, '--json']);
    const cleanReport = checkerJson(clean);
    assert.equal(clean.code, 0, clean.stdout);
    assert.equal(cleanReport.passed, true);
    assert.equal(cleanReport.writesInLog, log.writes.length);
    assert.equal(cleanReport.blocksChecked, new Set(log.writes.map((w) => w.offset)).size);

    // Corrupt one logged block in the middle of its payload (XOR, so the bytes surely change).
    const victim = log.writes[Math.floor(log.writes.length / 2)]!;
    const damageAt = victim.offset + 1000;
    const original = Buffer.alloc(16);
    const fd = fs.openSync(store, 'r+');
    fs.readSync(fd, original, 0, original.length, damageAt);
    fs.writeSync(fd, Buffer.from(original.map((b) => b ^ 0xff)), 0, original.length, damageAt);
    const corrupted = await runNode(CHECKER, ['--log', logPath, '--image', store, '--json']);
    const corruptReport = checkerJson(corrupted);
    assert.equal(corrupted.code, 1, corrupted.stdout);
    assert.equal(corruptReport.passed, false);
    assert.deepEqual(corruptReport.corrupt.map((f) => f.offset), [victim.offset]);
    assert.deepEqual(corruptReport.lost, []);
    const corruptedText = await runNode(CHECKER, ['--log', logPath, '--image', store]);
    assert.equal(corruptedText.code, 1);
    assert.match(corruptedText.stdout, new RegExp(`CORRUPT offset ${victim.offset}:`));
    assert.match(corruptedText.stdout, /^FAIL: 0 lost and 1 corrupt/m);
    fs.writeSync(fd, original, 0, original.length, damageAt);
    fs.closeSync(fd);

    // Tear the log in the middle of its last record: the complete records still check.
    const text = fs.readFileSync(logPath, 'utf8');
    const lastLineStart = text.lastIndexOf('\n', text.length - 2) + 1;
    const tornLength = lastLineStart + Math.floor((text.length - lastLineStart) / 2);
    fs.truncateSync(logPath, tornLength);
    const torn = await runNode(CHECKER, ['--log', logPath, '--image', store, '--json']);
    const tornReport = checkerJson(torn);
    assert.equal(torn.code, 0, torn.stdout);
    assert.equal(tornReport.passed, true);
    assert.equal(tornReport.logTornTailLines, 1);
    const lastIsWrite = text.slice(lastLineStart).startsWith('W ');
    assert.equal(tornReport.writesInLog, log.writes.length - (lastIsWrite ? 1 : 0));
  });

  it('after kill -9 of the node mid-run, the writer exits 3 with a complete log that passes', async function () {
    const { node, exited, store, socket } = await startNode(dir, 'killed');
    nodes.push(node);
    const logPath = path.join(dir, 'ack.log');
    const writerProcess = spawn(process.execPath, [WRITER, '--socket', socket, '--log', logPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    const writerDone = finished(writerProcess, 'writer');
    const deadline = Date.now() + PROCESS_EXIT_TIMEOUT_MS;
    while (!fs.existsSync(logPath) || fs.readFileSync(logPath, 'utf8').split('\n').length < WRITES_BEFORE_KILL) {
      if (Date.now() > deadline) throw new Error('the writer logged too few writes');
      await new Promise((r) => setTimeout(r, 50));
    }
    node.kill('SIGKILL');
    assert.equal((await exited).signal, 'SIGKILL');
    const writer = await writerDone;
    assert.equal(writer.code, 3, `writer: ${writer.stderr}`);
    const match = /server lost \(.*\): (\d+) writes acknowledged and logged/.exec(writer.stderr);
    assert.ok(match !== null, writer.stderr);
    const log = parseAckLog(fs.readFileSync(logPath, 'utf8'));
    assert.equal(log.writes.length, Number(match[1]), 'the message counts exactly the logged writes');
    assert.equal(log.tornTailLines, 0, 'the writer closed its log cleanly');

    const checked = await runNode(CHECKER, ['--log', logPath, '--image', store, '--json']);
    assert.equal(checked.code, 0, checked.stdout);
    assert.equal(checkerJson(checked).passed, true);
  });

  it('fails with exit 1 and reports lost writes when the replica never got them', async function () {
    const { node, exited, socket } = await startNode(dir, 'source');
    nodes.push(node);
    const logPath = path.join(dir, 'ack.log');
    const writer = await runNode(WRITER, ['--socket', socket, '--log', logPath, '--duration', '1', '--size', '16M']);
    assert.equal(writer.code, 0, writer.stderr);
    node.kill('SIGTERM');
    await exited;
    const emptyReplica = path.join(dir, 'empty.img');
    fs.writeFileSync(emptyReplica, '');
    fs.truncateSync(emptyReplica, 64 * 1024 * 1024);
    const checked = await runNode(CHECKER, ['--log', logPath, '--image', emptyReplica, '--json']);
    const report = checkerJson(checked);
    assert.equal(checked.code, 1);
    assert.equal(report.lost.length, report.blocksChecked);
    assert.deepEqual(report.corrupt, []);
  });

  it('exits 5 when the export cannot be reached and 2 when the log already exists', async function () {
    const missing = await runNode(WRITER, ['--socket', path.join(dir, 'nothing.sock'), '--log', path.join(dir, 'a.log'), '--duration', '1']);
    assert.equal(missing.code, 5, missing.stderr);
    assert.equal(fs.existsSync(path.join(dir, 'a.log')), false, 'no log is created when nothing was written');
    const existing = path.join(dir, 'existing.log');
    fs.writeFileSync(existing, 'keep me\n');
    const refused = await runNode(WRITER, ['--socket', path.join(dir, 'nothing.sock'), '--log', existing]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.equal(fs.readFileSync(existing, 'utf8'), 'keep me\n');
  });
});
