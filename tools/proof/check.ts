/**
 * The checker's engine: for every block offset in the log, finds the latest acknowledged write
 * (highest seq) and verifies the replica holds it, or a later write of the same run.
 */
import type { ParsedAckLog } from './ack-log';
import type { BlockSource } from './block-source';
import { decodeProofBlock } from './proof-block';

/** acknowledged: every acknowledged write must be there (process crash, failover to a live replica).
 *  durable: only writes made durable by FUA or a later acknowledged FLUSH (power loss of the replica's host). */
export type CheckMode = 'acknowledged' | 'durable';

/** One block whose acknowledged write is not (correctly) on the replica, or that needs a note. */
export interface BlockFinding {
  offset: number;
  acknowledgedSeq: string;
  foundSeq?: string;
  reason: string;
}

export interface CheckReport {
  mode: CheckMode;
  runId: string;
  blockBytes: number;
  writesInLog: number;
  flushesInLog: number;
  /** Writes the check demands (all of them in acknowledged mode). */
  writesRequired: number;
  blocksChecked: number;
  blocksOk: number;
  /** Blocks holding a later, unacknowledged write of the run (fine: the writer may die after sending). */
  blocksNewer: number;
  lost: BlockFinding[];
  corrupt: BlockFinding[];
  /** A later write of the run whose header is intact but body is not: a torn write that was never acknowledged. */
  tornUnacknowledged: BlockFinding[];
  logTornTailLines: number;
  logDamagedLines: number[];
  passed: boolean;
}

/** The highest-seq required write per block offset. */
function requiredSeqByOffset(log: ParsedAckLog, mode: CheckMode): { required: Map<number, bigint>; writesRequired: number } {
  const blockBytes = log.header.blockBytes;
  const required = new Map<number, bigint>();
  let writesRequired = 0;
  for (const write of log.writes) {
    if (mode === 'durable' && !write.fua && write.index >= log.flushedWriteCount) continue;
    writesRequired++;
    for (let at = write.offset; at < write.offset + write.lengthBytes; at += blockBytes) {
      const previous = required.get(at);
      if (previous === undefined || write.seq > previous) required.set(at, write.seq);
    }
  }
  return { required, writesRequired };
}

/** Classifies one block read from the replica against the seq that must be there (or later). */
function classifyBlock(
  report: CheckReport,
  runId: bigint,
  offset: number,
  acknowledgedSeq: bigint,
  block: Buffer,
): void {
  const decoded = decodeProofBlock(block, report.blockBytes);
  const finding = (reason: string, foundSeq?: bigint): BlockFinding => ({
    offset,
    acknowledgedSeq: acknowledgedSeq.toString(),
    ...(foundSeq === undefined ? {} : { foundSeq: foundSeq.toString() }),
    reason,
  });
  switch (decoded.kind) {
    case 'short':
      report.lost.push(finding('the replica ends before this block'));
      return;
    case 'zero':
      report.lost.push(finding('block is all zeroes: the write never reached the replica'));
      return;
    case 'foreign':
      report.corrupt.push(finding('no valid proof header (data damaged or overwritten by something else)'));
      return;
    case 'header':
      break;
  }
  if (decoded.runId !== runId) {
    report.lost.push(finding(`block holds a write of another run (${decoded.runId.toString(16).padStart(16, '0')})`, decoded.seq));
    return;
  }
  if (decoded.offset !== offset) {
    report.corrupt.push(finding(`block holds the write meant for offset ${decoded.offset} (misdirected write)`, decoded.seq));
    return;
  }
  if (decoded.seq < acknowledgedSeq) {
    report.lost.push(finding('block holds an older write: the acknowledged one was lost', decoded.seq));
    return;
  }
  if (!decoded.bodyValid) {
    if (decoded.seq === acknowledgedSeq) report.corrupt.push(finding('header is right but the data does not match (CRC or payload)', decoded.seq));
    else report.tornUnacknowledged.push(finding('a later unacknowledged write is torn (allowed: it was never acknowledged)', decoded.seq));
    return;
  }
  report.blocksOk++;
  if (decoded.seq > acknowledgedSeq) report.blocksNewer++;
}

/** Runs the whole check against a block source. */
export async function checkReplica(log: ParsedAckLog, source: BlockSource, mode: CheckMode): Promise<CheckReport> {
  const { required, writesRequired } = requiredSeqByOffset(log, mode);
  const report: CheckReport = {
    mode,
    runId: log.header.runId.toString(16).padStart(16, '0'),
    blockBytes: log.header.blockBytes,
    writesInLog: log.writes.length,
    flushesInLog: log.flushCount,
    writesRequired,
    blocksChecked: 0,
    blocksOk: 0,
    blocksNewer: 0,
    lost: [],
    corrupt: [],
    tornUnacknowledged: [],
    logTornTailLines: log.tornTailLines,
    logDamagedLines: log.damagedLines,
    passed: false,
  };
  const offsets = [...required.keys()].sort((a, b) => a - b);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < offsets.length) {
      const offset = offsets[next++]!;
      const block = await source.read(offset, report.blockBytes);
      classifyBlock(report, log.header.runId, offset, required.get(offset)!, block);
      report.blocksChecked++;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, source.parallelReads) }, worker));
  const byOffset = (a: BlockFinding, b: BlockFinding): number => a.offset - b.offset;
  report.lost.sort(byOffset);
  report.corrupt.sort(byOffset);
  report.tornUnacknowledged.sort(byOffset);
  report.passed = report.lost.length === 0 && report.corrupt.length === 0 && report.logDamagedLines.length === 0;
  return report;
}
