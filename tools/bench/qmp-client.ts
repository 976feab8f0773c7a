// Minimal QEMU Machine Protocol client: line-delimited JSON over a unix socket.
import * as net from 'node:net';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

interface PendingCommand {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

interface EventWaiter {
  match: (event: QmpEvent) => 'resolve' | 'reject' | 'ignore';
  resolve: (event: QmpEvent) => void;
  reject: (error: Error) => void;
}

// One QMP session; commands are answered strictly in order, events are queued for waiters.
export class QmpClient {
  private buffer = '';
  private readonly pending: PendingCommand[] = [];
  private readonly events: QmpEvent[] = [];
  private readonly waiters: EventWaiter[] = [];
  private greeted: Promise<void>;
  private closedError: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    let onGreeting: () => void = () => undefined;
    this.greeted = new Promise((resolve) => {
      onGreeting = resolve;
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk, onGreeting));
    socket.on('close', () => this.failAll(new Error('QMP connection closed')));
    socket.on('error', (error) => this.failAll(error));
  }

  // Connects, waits for the greeting and leaves capabilities negotiation mode.
  static async connect(socketPath: string): Promise<QmpClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const candidate = net.connect(socketPath);
      candidate.once('connect', () => resolve(candidate));
      candidate.once('error', reject);
    });
    const client = new QmpClient(socket);
    await client.greeted;
    await client.execute('qmp_capabilities');
    return client;
  }

  // Sends one command and resolves with its "return" value (rejects on "error").
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  // Waits for an event the matcher accepts (or rejects on one it flags as a failure), including already-queued events.
  waitForEvent(match: EventWaiter['match'], timeoutMs: number, what: string): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter: EventWaiter = {
        match,
        resolve: (event) => {
          clearTimeout(timer);
          resolve(event);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      for (const queued of this.events.splice(0)) {
        const verdict = match(queued);
        if (verdict === 'resolve') return waiter.resolve(queued);
        if (verdict === 'reject') return waiter.reject(new Error(`QMP event ${JSON.stringify(queued)} while waiting for ${what}`));
      }
      if (this.closedError) return waiter.reject(this.closedError);
      this.waiters.push(waiter);
    });
  }

  // Closes the session; QEMU keeps running.
  close(): void {
    this.socket.destroy();
  }

  // Splits the stream into JSON lines and routes greeting, replies and events.
  private onData(chunk: string, onGreeting: () => void): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line.length === 0) continue;
      const message = JSON.parse(line) as Record<string, unknown>;
      if ('QMP' in message) onGreeting();
      else if ('event' in message) this.onEvent(message as unknown as QmpEvent);
      else if ('return' in message) this.pending.shift()?.resolve(message.return);
      else if ('error' in message) this.pending.shift()?.reject(new Error(`QMP error: ${JSON.stringify(message.error)}`));
    }
  }

  // Hands an event to the first interested waiter, or queues it.
  private onEvent(event: QmpEvent): void {
    for (const waiter of [...this.waiters]) {
      const verdict = waiter.match(event);
      if (verdict === 'ignore') continue;
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      if (verdict === 'resolve') waiter.resolve(event);
      else waiter.reject(new Error(`QMP event ${JSON.stringify(event)}`));
      return;
    }
    this.events.push(event);
  }

  // Rejects everything outstanding once the connection is gone.
  private failAll(error: Error): void {
    this.closedError ??= error;
    for (const command of this.pending.splice(0)) command.reject(error);
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }
}
