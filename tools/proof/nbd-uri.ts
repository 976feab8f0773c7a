/**
 * Parses the NBD URI forms the proof tools accept (the subset of the NBD URI standard that
 * nbdinfo and fio use): nbd+unix:///EXPORT?socket=PATH and nbd://HOST[:PORT]/EXPORT.
 */
import type { NbdAddress } from './nbd-client';

/** IANA port for NBD, used when an nbd:// URI names no port. */
export const NBD_DEFAULT_PORT = 10809;

/** Turns an NBD URI into an address; throws with a readable reason for anything else. */
export function parseNbdUri(uri: string): NbdAddress {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new Error(`not a URI: "${uri}"`);
  }
  const exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (url.protocol === 'nbd+unix:') {
    const socketPath = url.searchParams.get('socket');
    if (socketPath === null || socketPath === '') throw new Error(`"${uri}" has no ?socket=PATH`);
    return { kind: 'unix', socketPath, exportName };
  }
  if (url.protocol === 'nbd:') {
    if (url.hostname === '') throw new Error(`"${uri}" has no host`);
    const port = url.port === '' ? NBD_DEFAULT_PORT : Number(url.port);
    return { kind: 'tcp', host: url.hostname.replace(/^\[|\]$/g, ''), port, exportName };
  }
  throw new Error(`unsupported NBD URI scheme "${url.protocol}" (use nbd+unix:///?socket=PATH or nbd://HOST:PORT/)`);
}

/** The address from either --uri or --socket (exactly one must be given). */
export function nbdAddressFromOptions(uri: string | undefined, socketPath: string | undefined): NbdAddress {
  if (uri !== undefined && socketPath !== undefined) throw new Error('give either --uri or --socket, not both');
  if (uri !== undefined) return parseNbdUri(uri);
  if (socketPath !== undefined) return { kind: 'unix', socketPath, exportName: '' };
  throw new Error('missing --uri nbd+unix:///?socket=PATH (or --socket PATH)');
}

/** A short description for messages. */
export function describeNbdAddress(address: NbdAddress): string {
  const name = address.exportName === '' ? '' : ` export "${address.exportName}"`;
  return address.kind === 'unix' ? `unix socket ${address.socketPath}${name}` : `${address.host}:${address.port}${name}`;
}
