/** Claiming a unix socket path: remove a stale socket file, but never one a live process still listens on. */
import * as fs from 'node:fs';
import * as net from 'node:net';

export class SocketInUseError extends Error {
  override readonly name = 'SocketInUseError';
}

/** Throws if something listens on `path` or it is not a socket; removes a stale socket file. */
export async function claimSocketPath(path: string, what: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!st.isSocket()) throw new SocketInUseError(`${what} ${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new SocketInUseError(`${what} ${path} is in use by another process`);
  fs.unlinkSync(path);
}

/** Remove our own socket file at shutdown (only if it is a socket). */
export function removeSocketFile(path: string): void {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch {
    // already gone
  }
}
