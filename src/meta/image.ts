/**
 * The whole metadata file (two slots, A at 0 and B at slotBytes) as bytes: building a fresh image,
 * and choosing the latest valid slot of an image read from disk, or saying precisely why there is
 * none. Pure functions over buffers so the torn-write property can run them on every byte boundary.
 */
import { MetadataError } from './errors';
import { FORMAT_VERSION, HEADER_BYTES, MAGIC, SLOT_ALIGN_BYTES, checkHeader, decodeSlot, encodeSlot, slotBytesFor, type MetadataState } from './layout';

export const SLOT_COUNT = 2;
export type SlotName = 'A' | 'B';
export const SLOT_NAMES: readonly SlotName[] = ['A', 'B'];

/** The slot a load chose. */
export interface ChosenSlot {
  state: MetadataState;
  /** 0 for A, 1 for B. */
  slotIndex: number;
  slotBytes: number;
}

/** A fresh file: both slots hold `state`, A with sequence state.sequence and B with the next one (B is the latest). */
export function encodeFreshImage(state: MetadataState): Buffer {
  const slotBytes = slotBytesFor(state.volumeSizeBytes, state.regionBytes);
  const image = Buffer.alloc(SLOT_COUNT * slotBytes);
  encodeSlot(state, image, 0);
  encodeSlot({ ...state, sequence: state.sequence + 1n }, image, slotBytes);
  return image;
}

/**
 * Picks the valid slot with the higher sequence from a file's bytes. Throws MetadataError:
 * META_TRUNCATED (shorter than the layout), META_FOREIGN (no magic anywhere), META_VERSION (a slot
 * of an unknown format version), META_CORRUPT (no valid slot, or longer than the layout).
 */
export function decodeImage(bytes: Uint8Array, path: string): ChosenSlot {
  const length = bytes.length;
  if (length < HEADER_BYTES) {
    if (length === 0) throw new MetadataError('META_TRUNCATED', path, 'the file is empty');
    const present = Math.min(length, MAGIC.length);
    const magicPrefix = Buffer.from(bytes.buffer, bytes.byteOffset, present).equals(MAGIC.subarray(0, present));
    if (!magicPrefix) throw new MetadataError('META_FOREIGN', path, `the file (${length} bytes) is not a blockmirror metadata file`);
    throw new MetadataError('META_TRUNCATED', path, `the file has only ${length} bytes, less than one slot header (${HEADER_BYTES})`);
  }
  // Slot A is at 0; slot B at slotBytes, which A's header gives, or half the file if A's header is damaged.
  const headerA = checkHeader(bytes, 0);
  const halfOffset = length % (2 * SLOT_ALIGN_BYTES) === 0 ? length / 2 : -1;
  const headerB = halfOffset > 0 ? checkHeader(bytes, halfOffset) : undefined;
  if (headerA.kind === 'unknownVersion' || headerB?.kind === 'unknownVersion') {
    const version = headerA.kind === 'unknownVersion' ? headerA.version : headerB?.kind === 'unknownVersion' ? headerB.version : 0;
    throw new MetadataError('META_VERSION', path, `a slot was written in format version ${version}; this program reads version ${FORMAT_VERSION} only (use the program that wrote it)`);
  }
  let slotBytes: number;
  if (headerA.kind === 'ok') slotBytes = headerA.slotBytes;
  else if (headerB?.kind === 'ok') slotBytes = headerB.slotBytes;
  else {
    const magicSeen = headerA.magicOk || headerB?.magicOk === true;
    if (!magicSeen) throw new MetadataError('META_FOREIGN', path, `neither slot starts with the magic BMIRMETA: not a blockmirror metadata file`);
    throw new MetadataError('META_CORRUPT', path, `no slot has a valid header (A: ${headerA.reason}; B: ${headerB?.reason ?? `not found, file length ${length} is not two aligned slots`})`);
  }
  if (slotBytes === 0 || slotBytes % SLOT_ALIGN_BYTES !== 0) {
    throw new MetadataError('META_CORRUPT', path, `slot size ${slotBytes} under a valid header checksum is impossible`);
  }
  if (length < SLOT_COUNT * slotBytes) {
    throw new MetadataError('META_TRUNCATED', path, `the file has ${length} bytes but its layout needs ${SLOT_COUNT * slotBytes} (two slots of ${slotBytes})`);
  }
  if (length > SLOT_COUNT * slotBytes) {
    throw new MetadataError('META_CORRUPT', path, `the file has ${length} bytes, more than its layout (${SLOT_COUNT * slotBytes}): something else wrote to it`);
  }
  const decoded = SLOT_NAMES.map((_, i) => decodeSlot(bytes, i * slotBytes, slotBytes));
  let chosen: ChosenSlot | undefined;
  decoded.forEach((slot, slotIndex) => {
    if (slot.kind !== 'valid') return;
    if (chosen === undefined || slot.state.sequence > chosen.state.sequence) chosen = { state: slot.state, slotIndex, slotBytes };
  });
  if (chosen === undefined) {
    const reasons = decoded.map((slot, i) => `${SLOT_NAMES[i]}: ${slot.kind === 'invalid' ? slot.reason : 'valid'}`).join('; ');
    throw new MetadataError('META_CORRUPT', path, `neither slot holds a valid copy (${reasons})`);
  }
  return chosen;
}
