/** Names of wire numbers for logs and tools (like DRBD's packet name function). */
import { AckStatus, BitmapFlag, HashStatus, HelloReason, MessageType, ReadStatus, Role, WriteFlag } from './constants';

function invert(table: Record<string, number>, style: (key: string) => string): Map<number, string> {
  const names = new Map<number, string>();
  for (const [key, value] of Object.entries(table)) names.set(value, style(key));
  return names;
}

/** 'WriteInline' → 'WRITE_INLINE'. */
function screamingSnake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

const TYPE_NAMES = invert(MessageType, screamingSnake);
const TYPE_NUMBERS = new Map<string, number>([...TYPE_NAMES].map(([n, s]) => [s, n]));
const STATUS_NAMES = invert(AckStatus, screamingSnake);
const REASON_NAMES = invert(HelloReason, screamingSnake);
const ROLE_NAMES = invert(Role, screamingSnake);
const HASH_STATUS_NAMES = invert(HashStatus, screamingSnake);
const READ_STATUS_NAMES = invert(ReadStatus, screamingSnake);

/** Name of a message type number, or UNKNOWN(n) so a log line never fails. */
export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `UNKNOWN(${type})`;
}

/** Alias kept for readers who know DRBD's cmdname()/opName(). */
export const opName = typeName;

/** Type number of a name produced by typeName, or undefined. */
export function typeFromName(name: string): number | undefined {
  return TYPE_NUMBERS.get(name);
}

/** True when `type` is a message type of this version. */
export function isKnownType(type: number): boolean {
  return TYPE_NAMES.has(type);
}

export function ackStatusName(status: number): string {
  return STATUS_NAMES.get(status) ?? `UNKNOWN(${status})`;
}

export function isKnownAckStatus(status: number): boolean {
  return STATUS_NAMES.has(status);
}

export function helloReasonName(reason: number): string {
  return REASON_NAMES.get(reason) ?? `UNKNOWN(${reason})`;
}

export function isKnownHelloReason(reason: number): boolean {
  return REASON_NAMES.has(reason);
}

export function roleName(role: number): string {
  return ROLE_NAMES.get(role) ?? `UNKNOWN(${role})`;
}

/** 'FUA|RESYNC', '-' for none, unknown bits as hex. */
export function writeFlagsName(flags: number): string {
  const parts: string[] = [];
  if (flags & WriteFlag.Fua) parts.push('FUA');
  if (flags & WriteFlag.Resync) parts.push('RESYNC');
  const rest = flags & ~(WriteFlag.Fua | WriteFlag.Resync);
  if (rest) parts.push(`0x${rest.toString(16).padStart(2, '0')}`);
  return parts.length ? parts.join('|') : '-';
}

/** Name of a HASH_REPLY status, or UNKNOWN(n). */
export function hashStatusName(status: number): string {
  return HASH_STATUS_NAMES.get(status) ?? `UNKNOWN(${status})`;
}

export function isKnownHashStatus(status: number): boolean {
  return HASH_STATUS_NAMES.has(status);
}

/** Name of a READ_REPLY status, or UNKNOWN(n). */
export function readStatusName(status: number): string {
  return READ_STATUS_NAMES.get(status) ?? `UNKNOWN(${status})`;
}

export function isKnownReadStatus(status: number): boolean {
  return READ_STATUS_NAMES.has(status);
}

/** 'LAST', '-' for none, unknown bits as hex (BITMAP chunk flags). */
export function bitmapFlagsName(flags: number): string {
  const parts: string[] = [];
  if (flags & BitmapFlag.Last) parts.push('LAST');
  const rest = (flags & ~BitmapFlag.Last) >>> 0;
  if (rest) parts.push(`0x${rest.toString(16).padStart(8, '0')}`);
  return parts.length ? parts.join('|') : '-';
}
