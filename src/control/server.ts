/** Control socket server: answers status and administrative commands for one running node. */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { claimSocketPath, removeSocketFile } from '../util/socket-path';
import { CONTROL_LINE_BYTES_MAX, type ControlRequest, type ControlResponse } from './protocol';
import type { Logger } from '../util/log';

export type ControlHandler = (request: ControlRequest) => Promise<unknown> | unknown;

export class ControlServer {
  private server: net.Server | undefined;
  private readonly handlers = new Map<string, ControlHandler>();
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly path: string,
    private readonly log: Logger,
  ) {}

  /** Register the handler of one command name. */
  on(command: string, handler: ControlHandler): void {
    this.handlers.set(command, handler);
  }

  async listen(): Promise<void> {
    await claimSocketPath(this.path, 'control socket');
    const server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => resolve());
    });
    fs.chmodSync(this.path, 0o600);
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server === undefined) return; // never listened: the path is not ours to remove
    await new Promise<void>((resolve) => server.close(() => resolve()));
    removeSocketFile(this.path);
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      pending += chunk;
      if (pending.length > CONTROL_LINE_BYTES_MAX) {
        this.reply(socket, { ok: false, error: `request longer than ${CONTROL_LINE_BYTES_MAX} bytes` });
        socket.end();
        return;
      }
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        void this.dispatch(socket, line);
      }
    });
  }

  private async dispatch(socket: net.Socket, line: string): Promise<void> {
    let request: ControlRequest;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== 'object' || parsed === null || typeof (parsed as ControlRequest).command !== 'string') {
        throw new Error('request must be a JSON object with a string "command"');
      }
      request = parsed as ControlRequest;
    } catch (error) {
      this.reply(socket, { ok: false, error: `bad control request: ${(error as Error).message}` });
      return;
    }
    const handler = this.handlers.get(request.command);
    if (handler === undefined) {
      this.reply(socket, { ok: false, error: `unknown command "${request.command}"; known: ${[...this.handlers.keys()].join(', ')}` });
      return;
    }
    try {
      this.reply(socket, { ok: true, result: await handler(request) });
    } catch (error) {
      this.log.warn(`control ${request.command} failed: ${(error as Error).message}`);
      this.reply(socket, { ok: false, error: (error as Error).message });
    }
  }

  private reply(socket: net.Socket, response: ControlResponse): void {
    if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
  }
}

