/**
 * Decodes a whole byte string of frames (a captured stream, a test vector, a hex dump) into
 * messages with their payloads, checking everything a receiver checks. Never throws.
 */
import { decodeMessage, verifyInlineWrite, verifyMetaPayload, verifyReadReply, type DecodeResult, type WireMessage } from './codec';
import { MessageType } from './constants';
import { FrameReader } from './frame-reader';

export interface DecodedMessage {
  message: WireMessage;
  /** Payload of a WRITE_INLINE, WRITE_META or READ_REPLY, else null. */
  payload: Buffer | null;
}

/** Runs `bytes` through a FrameReader, decodes each message and verifies each payload. */
export function decodeStream(bytes: Uint8Array): DecodeResult<DecodedMessage[]> {
  const reader = new FrameReader();
  reader.push(bytes);
  const decoded: DecodedMessage[] = [];
  let lastHead: Buffer | null = null;
  for (let frame = reader.next(); frame; frame = reader.next()) {
    if (frame.kind === 'error') return { ok: false, reason: frame.reason };
    if (frame.kind === 'message') {
      const result = decodeMessage(frame.head, frame.body);
      if (!result.ok) return result;
      decoded.push({ message: result.value, payload: null });
      lastHead = frame.head;
      continue;
    }
    const owner = decoded[decoded.length - 1]!;
    const check =
      owner.message.type === MessageType.WriteInline
        ? verifyInlineWrite(lastHead!, frame.payload)
        : owner.message.type === MessageType.ReadReply
          ? verifyReadReply(lastHead!, frame.payload)
          : verifyMetaPayload(owner.message as Extract<WireMessage, { type: typeof MessageType.WriteMeta }>, frame.payload);
    if (!check.ok) return check;
    owner.payload = frame.payload;
  }
  const end = reader.end();
  if (!end.ok) return end;
  return { ok: true, value: decoded };
}
