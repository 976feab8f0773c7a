/**
 * The proof tools' formats without processes: self-describing blocks, the acknowledged-write log
 * (torn tail vs. damage in the middle), NBD URIs, and the checker's classification of blocks.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ACK_LOG_MAGIC, AckLogError, AckLogWriter, parseAckLog } from '../../tools/proof/ack-log';
import type { BlockSource } from '../../tools/proof/block-source';
import { checkReplica } from '../../tools/proof/check';
import { parseNbdUri } from '../../tools/proof/nbd-uri';
import { buildProofBlock, decodeProofBlock } from '../../tools/proof/proof-block';

const BLOCK_BYTES = 4096;
const RUN_ID = 0x0123456789abcdefn;

/** A replica held in memory, for the check engine. */
function memorySource(image: Buffer): BlockSource {
  return {
    description: 'memory',
    parallelReads: 4,
    read: async (offset, lengthBytes) => image.subarray(offset, Math.min(image.length, offset + lengthBytes)),
    close: async () => undefined,
  };
}

/** Writes a real log through AckLogWriter and returns its text. */
function makeLog(writes: { seq: bigint; offset: number; fua?: boolean }[], flushesAfter: Map<number, number> = new Map()): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proof-format-'));
  const file = path.join(dir, 'ack.log');
  try {
    const log = AckLogWriter.create(file, { runId: RUN_ID, blockBytes: BLOCK_BYTES, exportBytes: 1 << 20, areaBytes: 1 << 20, startedAt: 'now' });
    writes.forEach((w, i) => {
      log.appendBatch([{ seq: w.seq, offset: w.offset, lengthBytes: BLOCK_BYTES, fua: w.fua ?? false }], []);
      const covered = flushesAfter.get(i);
      if (covered !== undefined) log.appendBatch([], [covered]);
    });
    log.close();
    return fs.readFileSync(file, 'utf8');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('proof block format', () => {
  it('round-trips and is deterministic in (run id, seq, offset)', () => {
    const a = buildProofBlock(RUN_ID, 7n, 8192, BLOCK_BYTES);
    assert.deepEqual(a, buildProofBlock(RUN_ID, 7n, 8192, BLOCK_BYTES));
    assert.notDeepEqual(a.subarray(64), buildProofBlock(RUN_ID, 8n, 8192, BLOCK_BYTES).subarray(64));
    assert.notDeepEqual(a.subarray(64), buildProofBlock(RUN_ID, 7n, 12288, BLOCK_BYTES).subarray(64));
    assert.deepEqual(decodeProofBlock(a, BLOCK_BYTES), { kind: 'header', offset: 8192, seq: 7n, runId: RUN_ID, blockBytes: BLOCK_BYTES, bodyValid: true });
  });

  it('tells zero, foreign, short and damaged-body blocks apart', () => {
    assert.equal(decodeProofBlock(Buffer.alloc(BLOCK_BYTES), BLOCK_BYTES).kind, 'zero');
    assert.equal(decodeProofBlock(Buffer.alloc(BLOCK_BYTES, 1), BLOCK_BYTES).kind, 'foreign');
    assert.equal(decodeProofBlock(Buffer.alloc(100), BLOCK_BYTES).kind, 'short');
    const body = buildProofBlock(RUN_ID, 3n, 0, BLOCK_BYTES);
    body[BLOCK_BYTES - 1]! ^= 1;
    assert.deepEqual(decodeProofBlock(body, BLOCK_BYTES), { kind: 'header', offset: 0, seq: 3n, runId: RUN_ID, blockBytes: BLOCK_BYTES, bodyValid: false });
    const header = buildProofBlock(RUN_ID, 3n, 0, BLOCK_BYTES);
    header[20]! ^= 1; // inside seq: the header CRC no longer matches
    assert.equal(decodeProofBlock(header, BLOCK_BYTES).kind, 'foreign');
  });
});

describe('acknowledged-write log', () => {
  const writes = [
    { seq: 1n, offset: 0 },
    { seq: 2n, offset: 4096, fua: true },
    { seq: 3n, offset: 0 },
  ];

  it('reads back what the writer appended, including flushes', () => {
    const log = parseAckLog(makeLog(writes, new Map([[1, 2]])));
    assert.equal(log.header.runId, RUN_ID);
    assert.equal(log.header.blockBytes, BLOCK_BYTES);
    assert.deepEqual(
      log.writes.map((w) => [w.seq, w.offset, w.fua, w.index]),
      [
        [1n, 0, false, 0],
        [2n, 4096, true, 1],
        [3n, 0, false, 2],
      ],
    );
    assert.equal(log.flushedWriteCount, 2);
    assert.equal(log.tornTailLines, 0);
    assert.deepEqual(log.damagedLines, []);
  });

  it('drops a torn last line or a zero-filled tail, and flags damage in the middle', () => {
    const text = makeLog(writes);
    for (let cut = text.lastIndexOf('\n', text.length - 2) + 1; cut < text.length; cut++) {
      const torn = parseAckLog(text.slice(0, cut));
      assert.equal(torn.writes.length, 2, `cut at ${cut}`);
      assert.deepEqual(torn.damagedLines, []);
    }
    const zeroTail = parseAckLog(text + '\0'.repeat(300) + '\n' + '\0'.repeat(20));
    assert.equal(zeroTail.writes.length, 3);
    assert.equal(zeroTail.tornTailLines, 2);
    const lines = text.split('\n');
    lines[2] = lines[2]!.replace('4096', '4097'); // the CRC no longer matches
    const damaged = parseAckLog(lines.join('\n'));
    assert.deepEqual(damaged.damagedLines, [3]);
    assert.equal(damaged.writes.length, 2);
  });

  it('refuses a file that is not a log', () => {
    assert.throws(() => parseAckLog('hello\n'), AckLogError);
    assert.throws(() => parseAckLog(''), AckLogError);
    assert.throws(() => parseAckLog(`${ACK_LOG_MAGIC} 1 run=00`), AckLogError); // header never completed
  });
});

describe('NBD URIs', () => {
  it('parses the unix and tcp forms', () => {
    assert.deepEqual(parseNbdUri('nbd+unix:///?socket=/run/a.sock'), { kind: 'unix', socketPath: '/run/a.sock', exportName: '' });
    assert.deepEqual(parseNbdUri('nbd+unix:///disk?socket=x.sock'), { kind: 'unix', socketPath: 'x.sock', exportName: 'disk' });
    assert.deepEqual(parseNbdUri('nbd://127.0.0.1:10810/'), { kind: 'tcp', host: '127.0.0.1', port: 10810, exportName: '' });
    assert.deepEqual(parseNbdUri('nbd://[::1]/e'), { kind: 'tcp', host: '::1', port: 10809, exportName: 'e' });
    assert.throws(() => parseNbdUri('nbd+unix:///'));
    assert.throws(() => parseNbdUri('http://x/'));
  });
});

describe('checker classification', () => {
  /** An image holding the given blocks. */
  function image(blocks: { seq: bigint; offset: number; runId?: bigint }[]): Buffer {
    const out = Buffer.alloc(4 * BLOCK_BYTES);
    for (const b of blocks) buildProofBlock(b.runId ?? RUN_ID, b.seq, b.offset, BLOCK_BYTES).copy(out, b.offset);
    return out;
  }

  it('accepts the latest acknowledged write or a later one, rejects older, foreign-run and missing', async () => {
    const log = parseAckLog(
      makeLog([
        { seq: 1n, offset: 0 },
        { seq: 4n, offset: 0 },
        { seq: 2n, offset: 4096 },
        { seq: 3n, offset: 8192 },
        { seq: 5n, offset: 12288 },
      ]),
    );
    const replica = image([
      { seq: 4n, offset: 0 }, // exactly the latest acknowledged
      { seq: 9n, offset: 4096 }, // a later, unacknowledged write landed: fine
      { seq: 1n, offset: 8192 }, // older than acknowledged: lost
      { seq: 5n, offset: 12288, runId: 42n }, // another run's data: lost
    ]);
    const report = await checkReplica(log, memorySource(replica), 'acknowledged');
    assert.equal(report.blocksChecked, 4);
    assert.equal(report.blocksOk, 2);
    assert.equal(report.blocksNewer, 1);
    assert.deepEqual(report.lost.map((f) => f.offset), [8192, 12288]);
    assert.deepEqual(report.corrupt, []);
    assert.equal(report.passed, false);
  });

  it('durable mode demands only FUA writes and writes covered by a later flush', async () => {
    const log = parseAckLog(
      makeLog(
        [
          { seq: 1n, offset: 0 },
          { seq: 2n, offset: 4096 },
          { seq: 3n, offset: 8192, fua: true },
          { seq: 4n, offset: 12288 },
        ],
        new Map([[1, 2]]), // a FLUSH sent after the first two acknowledgements
      ),
    );
    const replica = image([
      { seq: 1n, offset: 0 },
      { seq: 2n, offset: 4096 },
      { seq: 3n, offset: 8192 },
    ]); // seq 4 (acknowledged, never flushed) did not survive
    assert.equal((await checkReplica(log, memorySource(replica), 'durable')).passed, true);
    const strict = await checkReplica(log, memorySource(replica), 'acknowledged');
    assert.deepEqual(strict.lost.map((f) => f.offset), [12288]);
  });

  it('reports a torn later write as allowed, a damaged acknowledged one as corrupt', async () => {
    const log = parseAckLog(
      makeLog([
        { seq: 1n, offset: 0 },
        { seq: 2n, offset: 4096 },
      ]),
    );
    const replica = image([
      { seq: 7n, offset: 0 },
      { seq: 2n, offset: 4096 },
    ]);
    replica[BLOCK_BYTES - 10]! ^= 0xff; // tears the later write at offset 0
    replica[2 * BLOCK_BYTES - 10]! ^= 0xff; // damages the acknowledged write at 4096
    const report = await checkReplica(log, memorySource(replica), 'acknowledged');
    assert.deepEqual(report.tornUnacknowledged.map((f) => f.offset), [0]);
    assert.deepEqual(report.corrupt.map((f) => f.offset), [4096]);
    assert.equal(report.passed, false);
  });
});
