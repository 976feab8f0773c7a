import type * as net from 'node:net';

/** The fd under a net.Socket (Node does not expose it publicly); throws if it has none. */
export function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) throw new Error('the socket has no file descriptor');
  return fd;
}
