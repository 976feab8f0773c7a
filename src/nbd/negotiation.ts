/**
 * Server side of the NBD fixed-newstyle handshake and option haggling, in TypeScript. It ends either
 * with the socket ready for the transmission phase (handed to native) or with a clean close.
 */
import type { Socket } from 'node:net';
import * as P from './protocol';
import { SocketReader } from './socket-reader';
import { NBD_OPTION_BYTES_MAX, NBD_OPTIONS_PER_CONNECTION_MAX } from '../limits';
import type { Logger } from '../util/log';

/** What the server exports (one export per node). */
export interface ExportDescription {
  name: string;
  description: string;
  sizeBytes: number;
  transmissionFlags: number;
  blockSizeMinBytes: number;
  blockSizePreferredBytes: number;
  blockSizeMaxBytes: number;
}

export type NegotiationOutcome =
  | { kind: 'transmission'; exportName: string; initialBytes: Buffer }
  | { kind: 'closed'; reason: string };

/** Options haggling state that lasts for one connection. */
interface Session {
  socket: Socket;
  reader: SocketReader;
  noZeroes: boolean;
}

/** Run the handshake on a freshly accepted socket; never throws for client misbehaviour. */
export async function negotiate(socket: Socket, exported: ExportDescription, log: Logger): Promise<NegotiationOutcome> {
  const reader = new SocketReader(socket);
  const session: Session = { socket, reader, noZeroes: false };
  try {
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(P.NBD_MAGIC, 0);
    greeting.writeBigUInt64BE(P.NBD_IHAVEOPT, 8);
    greeting.writeUInt16BE(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES, 16);
    socket.write(greeting);

    const clientFlags = (await reader.read(4)).readUInt32BE(0);
    if ((clientFlags & ~P.NBD_CLIENT_FLAGS_KNOWN) !== 0) {
      return close(session, `client flags 0x${clientFlags.toString(16)} contain unknown bits`);
    }
    session.noZeroes = (clientFlags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
    const fixedNewstyle = (clientFlags & P.NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;

    for (let optionCount = 0; optionCount < NBD_OPTIONS_PER_CONNECTION_MAX + 1; optionCount++) {
      if (optionCount >= NBD_OPTIONS_PER_CONNECTION_MAX) {
        return close(session, `more than ${NBD_OPTIONS_PER_CONNECTION_MAX} options`);
      }
      const header = await reader.read(16);
      if (header.readBigUInt64BE(0) !== P.NBD_IHAVEOPT) {
        return close(session, 'bad option magic (expected IHAVEOPT)');
      }
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > NBD_OPTION_BYTES_MAX) {
        return close(session, `option ${P.optionName(option)} length ${length} exceeds ${NBD_OPTION_BYTES_MAX}`);
      }
      const data = length > 0 ? await reader.read(length) : Buffer.alloc(0);
      log.debug(`option ${P.optionName(option)} (${length} bytes)`);
      if (!fixedNewstyle && option !== P.NBD_OPT_EXPORT_NAME) {
        return close(session, `client is not fixed-newstyle and sent ${P.optionName(option)}`);
      }
      switch (option) {
        case P.NBD_OPT_EXPORT_NAME: {
          const name = data.toString('utf8');
          if (!exportMatches(name, exported)) return close(session, `unknown export "${name}" (EXPORT_NAME)`);
          const reply = Buffer.alloc(session.noZeroes ? 10 : 134);
          reply.writeBigUInt64BE(BigInt(exported.sizeBytes), 0);
          reply.writeUInt16BE(exported.transmissionFlags, 8);
          return await enterTransmission(session, reply, name);
        }
        case P.NBD_OPT_ABORT:
          await writeOptionReply(session, option, P.NBD_REP_ACK, Buffer.alloc(0));
          return close(session, 'client sent NBD_OPT_ABORT');
        case P.NBD_OPT_LIST: {
          if (length !== 0) {
            await writeError(session, option, P.NBD_REP_ERR_INVALID, 'LIST takes no data');
            break;
          }
          const name = Buffer.from(exported.name, 'utf8');
          const body = Buffer.alloc(4 + name.length);
          body.writeUInt32BE(name.length, 0);
          name.copy(body, 4);
          await writeOptionReply(session, option, P.NBD_REP_SERVER, body);
          await writeOptionReply(session, option, P.NBD_REP_ACK, Buffer.alloc(0));
          break;
        }
        case P.NBD_OPT_INFO:
        case P.NBD_OPT_GO: {
          const request = parseInfoRequest(data);
          if (typeof request === 'string') {
            await writeError(session, option, P.NBD_REP_ERR_INVALID, request);
            break;
          }
          if (!exportMatches(request.name, exported)) {
            await writeError(session, option, P.NBD_REP_ERR_UNKNOWN, `unknown export "${request.name}"`);
            break;
          }
          await writeInfoReplies(session, option, exported, request.infoTypes);
          if (option === P.NBD_OPT_INFO) {
            await writeOptionReply(session, option, P.NBD_REP_ACK, Buffer.alloc(0));
            break;
          }
          return await enterTransmission(session, optionReply(option, P.NBD_REP_ACK, Buffer.alloc(0)), request.name);
        }
        default:
          await writeError(session, option, P.NBD_REP_ERR_UNSUP, `option ${P.optionName(option)} is not supported`);
          break;
      }
    }
    return close(session, 'option loop limit reached');
  } catch (error) {
    socket.destroy();
    return { kind: 'closed', reason: (error as Error).message };
  }
}

/** A name matches if it is the configured one, or empty (the default export). */
function exportMatches(name: string, exported: ExportDescription): boolean {
  return name === '' || name === exported.name;
}

/** Parse the data of NBD_OPT_INFO / NBD_OPT_GO; a string is the reason it is malformed. */
function parseInfoRequest(data: Buffer): { name: string; infoTypes: number[] } | string {
  if (data.length < 6) return 'INFO/GO data shorter than 6 bytes';
  const nameBytes = data.readUInt32BE(0);
  if (4 + nameBytes + 2 > data.length) return 'INFO/GO export name length exceeds option length';
  const name = data.toString('utf8', 4, 4 + nameBytes);
  const count = data.readUInt16BE(4 + nameBytes);
  const expected = 4 + nameBytes + 2 + count * 2;
  if (expected !== data.length) return `INFO/GO option length ${data.length} does not match ${expected}`;
  const infoTypes: number[] = [];
  for (let i = 0; i < count; i++) infoTypes.push(data.readUInt16BE(4 + nameBytes + 2 + i * 2));
  return { name, infoTypes };
}

/** Send NBD_REP_INFO items: EXPORT always, BLOCK_SIZE always (min 1 is no constraint), NAME/DESCRIPTION when asked. */
async function writeInfoReplies(session: Session, option: number, exported: ExportDescription, infoTypes: number[]): Promise<void> {
  const exportInfo = Buffer.alloc(12);
  exportInfo.writeUInt16BE(P.NBD_INFO_EXPORT, 0);
  exportInfo.writeBigUInt64BE(BigInt(exported.sizeBytes), 2);
  exportInfo.writeUInt16BE(exported.transmissionFlags, 10);
  await writeOptionReply(session, option, P.NBD_REP_INFO, exportInfo);

  const blockInfo = Buffer.alloc(14);
  blockInfo.writeUInt16BE(P.NBD_INFO_BLOCK_SIZE, 0);
  blockInfo.writeUInt32BE(exported.blockSizeMinBytes, 2);
  blockInfo.writeUInt32BE(exported.blockSizePreferredBytes, 6);
  blockInfo.writeUInt32BE(exported.blockSizeMaxBytes, 10);
  await writeOptionReply(session, option, P.NBD_REP_INFO, blockInfo);

  if (infoTypes.includes(P.NBD_INFO_NAME)) {
    const name = Buffer.from(exported.name, 'utf8');
    await writeOptionReply(session, option, P.NBD_REP_INFO, Buffer.concat([u16(P.NBD_INFO_NAME), name]));
  }
  if (infoTypes.includes(P.NBD_INFO_DESCRIPTION)) {
    const description = Buffer.from(exported.description, 'utf8');
    await writeOptionReply(session, option, P.NBD_REP_INFO, Buffer.concat([u16(P.NBD_INFO_DESCRIPTION), description]));
  }
}

function u16(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value, 0);
  return b;
}

/** Build one option reply: magic, option, reply type, length, data. */
function optionReply(option: number, replyType: number, data: Buffer): Buffer {
  const header = Buffer.alloc(20 + data.length);
  header.writeBigUInt64BE(P.NBD_OPTION_REPLY_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(replyType, 12);
  header.writeUInt32BE(data.length, 16);
  data.copy(header, 20);
  return header;
}

function writeOptionReply(session: Session, option: number, replyType: number, data: Buffer): Promise<void> {
  return writeAll(session.socket, optionReply(option, replyType, data));
}

/** Error replies carry a human-readable message, which clients such as nbdinfo print. */
function writeError(session: Session, option: number, replyType: number, message: string): Promise<void> {
  return writeOptionReply(session, option, replyType, Buffer.from(message, 'utf8'));
}

function writeAll(socket: Socket, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Stop JS reads before the last reply (the client sends nothing until it has it), write it, and
 * return whatever bytes were already buffered so native can continue the stream exactly.
 */
async function enterTransmission(session: Session, finalReply: Buffer, exportName: string): Promise<NegotiationOutcome> {
  session.socket.pause();
  await writeAll(session.socket, finalReply);
  const initialBytes = session.reader.detach();
  return { kind: 'transmission', exportName, initialBytes };
}

function close(session: Session, reason: string): NegotiationOutcome {
  session.socket.end();
  session.socket.destroySoon();
  return { kind: 'closed', reason };
}
