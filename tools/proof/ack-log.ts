/**
 * The acknowledged-write log: what the writer was told is done, made durable before the writer
 * does anything else with the acknowledgement. Text lines, one record per line:
 *
 *   blockmirror-ack-log 1 run=<16 hex> block-bytes=<n> export-bytes=<n> area-bytes=<n> started=<ISO time> <crc>
 *   W <seq> <offset> <length> <fua 0|1> <crc>     a write the server acknowledged
 *   F <covered> <crc>                              a FLUSH the server acknowledged; it was sent after
 *                                                  the first <covered> W lines had been logged
 *
 * <crc> is the CRC32C (8 lowercase hex digits) of the line's text before " <crc>". A line is a
 * record only if it is complete (ends with "\n") and its CRC matches, so a torn last line (the
 * writer or its host died mid-append) or a zero-filled tail after a crash is simply not a record.
 * Text, because a few dozen bytes per acknowledged write cost nothing next to the fdatasync each
 * batch pays anyway, and a person can read, grep and diff the log during an investigation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32c } from '../../src/wire/crc32c';

export const ACK_LOG_MAGIC = 'blockmirror-ack-log';
export const ACK_LOG_VERSION = 1;

/** What the header line says about the run. */
export interface AckLogHeader {
  runId: bigint;
  blockBytes: number;
  exportBytes: number;
  areaBytes: number;
  startedAt: string;
}

/** One acknowledged write. */
export interface AckedWrite {
  seq: bigint;
  offset: number;
  lengthBytes: number;
  fua: boolean;
  /** Position among the W records of the log (0-based), i.e. the order acknowledgements were logged. */
  index: number;
}

/** The log as read back: header, records, and what had to be skipped. */
export interface ParsedAckLog {
  header: AckLogHeader;
  writes: AckedWrite[];
  /** Largest <covered> of all F records: the first this-many W records were flushed. */
  flushedWriteCount: number;
  flushCount: number;
  /** Invalid lines after the last valid record: a torn or zero-filled tail (expected after a crash). */
  tornTailLines: number;
  /** Invalid lines with valid records after them: the log itself is damaged, the proof is incomplete. */
  damagedLines: number[];
}

/** A log that cannot be used at all (missing header, wrong version). */
export class AckLogError extends Error {}

/** Appends " <crc>\n" to a record body. */
function sealLine(body: string): string {
  return `${body} ${crc32c(Buffer.from(body, 'utf8')).toString(16).padStart(8, '0')}\n`;
}

/** Returns the body of a sealed line (without "\n"), or undefined if its CRC does not match. */
function unsealLine(line: string): string | undefined {
  const space = line.lastIndexOf(' ');
  if (space <= 0) return undefined;
  const body = line.slice(0, space);
  const crcText = line.slice(space + 1);
  if (!/^[0-9a-f]{8}$/.test(crcText)) return undefined;
  return crc32c(Buffer.from(body, 'utf8')) === parseInt(crcText, 16) ? body : undefined;
}

/** Formats the header line body. */
function headerBody(header: AckLogHeader): string {
  return [
    ACK_LOG_MAGIC,
    ACK_LOG_VERSION,
    `run=${header.runId.toString(16).padStart(16, '0')}`,
    `block-bytes=${header.blockBytes}`,
    `export-bytes=${header.exportBytes}`,
    `area-bytes=${header.areaBytes}`,
    `started=${header.startedAt}`,
  ].join(' ');
}

/** Parses a header line body; throws AckLogError with the reason. */
function parseHeaderBody(body: string): AckLogHeader {
  const fields = body.split(' ');
  if (fields[0] !== ACK_LOG_MAGIC) throw new AckLogError(`not an acknowledged-write log (first line does not start with "${ACK_LOG_MAGIC}")`);
  if (fields[1] !== String(ACK_LOG_VERSION)) throw new AckLogError(`log version ${fields[1]} is not supported (this checker reads ${ACK_LOG_VERSION})`);
  const values = new Map<string, string>();
  for (const field of fields.slice(2)) {
    const eq = field.indexOf('=');
    if (eq > 0) values.set(field.slice(0, eq), field.slice(eq + 1));
  }
  const integer = (name: string): number => {
    const text = values.get(name);
    if (text === undefined || !/^\d+$/.test(text)) throw new AckLogError(`log header has no valid ${name}`);
    return Number(text);
  };
  const runText = values.get('run');
  if (runText === undefined || !/^[0-9a-f]{16}$/.test(runText)) throw new AckLogError('log header has no valid run id');
  return {
    runId: BigInt(`0x${runText}`),
    blockBytes: integer('block-bytes'),
    exportBytes: integer('export-bytes'),
    areaBytes: integer('area-bytes'),
    startedAt: values.get('started') ?? '',
  };
}

/** Appends records and makes them durable; one instance per writer run. */
export class AckLogWriter {
  private writeRecords = 0;

  private constructor(
    private readonly fd: number,
    readonly filePath: string,
  ) {}

  /** Creates a new log (never overwrites one: a lost proof log cannot be recreated) and makes the header durable. */
  static create(filePath: string, header: AckLogHeader): AckLogWriter {
    const fd = fs.openSync(filePath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_APPEND, 0o644);
    const log = new AckLogWriter(fd, filePath);
    fs.writeSync(fd, sealLine(headerBody(header)));
    fs.fdatasyncSync(fd);
    syncDirectory(path.dirname(path.resolve(filePath)));
    return log;
  }

  /** Number of W records written so far. */
  get writeCount(): number {
    return this.writeRecords;
  }

  /** Appends one batch of acknowledged writes and flushes, then returns; nothing is buffered across calls. */
  appendBatch(writes: readonly Omit<AckedWrite, 'index'>[], flushesCovering: readonly number[]): void {
    if (writes.length === 0 && flushesCovering.length === 0) return;
    let text = '';
    for (const w of writes) text += sealLine(`W ${w.seq} ${w.offset} ${w.lengthBytes} ${w.fua ? 1 : 0}`);
    for (const covered of flushesCovering) text += sealLine(`F ${covered}`);
    const bytes = Buffer.from(text, 'utf8');
    let written = 0;
    while (written < bytes.length) written += fs.writeSync(this.fd, bytes, written, bytes.length - written);
    fs.fdatasyncSync(this.fd);
    this.writeRecords += writes.length;
  }

  /** Closes the file (after a final fdatasync). */
  close(): void {
    fs.fdatasyncSync(this.fd);
    fs.closeSync(this.fd);
  }
}

/** fsync on the directory so a freshly created log survives a crash of the host. */
function syncDirectory(directory: string): void {
  const fd = fs.openSync(directory, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Parses a W or F record body into the accumulator; returns false if it is not one. */
function parseRecordBody(body: string, into: { writes: AckedWrite[]; flushedWriteCount: number; flushCount: number }): boolean {
  const w = /^W (\d+) (\d+) (\d+) ([01])$/.exec(body);
  if (w !== null) {
    const offset = Number(w[2]);
    const lengthBytes = Number(w[3]);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(lengthBytes)) return false;
    into.writes.push({ seq: BigInt(w[1]!), offset, lengthBytes, fua: w[4] === '1', index: into.writes.length });
    return true;
  }
  const f = /^F (\d+)$/.exec(body);
  if (f !== null) {
    into.flushedWriteCount = Math.max(into.flushedWriteCount, Number(f[1]));
    into.flushCount++;
    return true;
  }
  return false;
}

/** Parses a whole log text; tolerant of a torn tail, strict about the header. */
export function parseAckLog(text: string): ParsedAckLog {
  const lines = text.split('\n');
  lines.pop(); // the text after the last "\n": empty, or a torn last line that never completed
  const tornFragment = text.length > 0 && !text.endsWith('\n') ? 1 : 0;
  if (lines.length === 0) throw new AckLogError('the log has no complete header line');
  const headerLine = unsealLine(lines[0]!);
  if (headerLine === undefined) throw new AckLogError('the log header line is damaged (CRC mismatch)');
  const header = parseHeaderBody(headerLine);
  const acc = { writes: [] as AckedWrite[], flushedWriteCount: 0, flushCount: 0 };
  const invalid: number[] = [];
  let lastValidLine = 0;
  for (let i = 1; i < lines.length; i++) {
    const body = unsealLine(lines[i]!);
    if (body !== undefined && parseRecordBody(body, acc)) lastValidLine = i;
    else invalid.push(i + 1); // 1-based line numbers for messages
  }
  const damagedLines = invalid.filter((lineNumber) => lineNumber - 1 < lastValidLine);
  return {
    header,
    writes: acc.writes,
    flushedWriteCount: Math.min(acc.flushedWriteCount, acc.writes.length),
    flushCount: acc.flushCount,
    tornTailLines: invalid.length - damagedLines.length + tornFragment,
    damagedLines,
  };
}

/** Reads and parses a log file. */
export function readAckLog(filePath: string): ParsedAckLog {
  return parseAckLog(fs.readFileSync(filePath, 'utf8'));
}
