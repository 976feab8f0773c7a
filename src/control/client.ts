/** Control socket client: send one command to a running node and return its result. */
import * as net from 'node:net';
import type { ControlRequest, ControlResponse } from './protocol';

export class ControlError extends Error {
  override readonly name = 'ControlError';
}

/** Send one request and resolve with `result`, or reject with the node's error message. */
export function sendControlRequest(path: string, request: ControlRequest, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    let buffered = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ControlError(`no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      socket.end();
      let response: ControlResponse;
      try {
        response = JSON.parse(buffered.slice(0, newline)) as ControlResponse;
      } catch (error) {
        reject(new ControlError(`malformed answer from ${path}: ${(error as Error).message}`));
        return;
      }
      if (response.ok) resolve(response.result);
      else reject(new ControlError(response.error));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ControlError(`cannot reach node control socket ${path}: ${err.code ?? err.message}`));
    });
  });
}
