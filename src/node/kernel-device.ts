/**
 * Kernel front end: attach /dev/nbdN to a socketpair whose other end runs the same native
 * transmission phase as NBD clients; requests go to the same controller.
 */
import * as fs from 'node:fs';
import { loadNative, type NativeNbdConnection, type NativeNbdDevice } from '../native';
import type { Controller, RequestSource } from '../controller';
import type { BufferPool } from '../buffer-pool';
import { KERNEL_BLOCK_SIZE_BYTES, KERNEL_REQUEST_TIMEOUT_SECONDS, NBD_PAYLOAD_BYTES_MAX } from '../limits';
import type { Logger } from '../util/log';

export class KernelDevice implements RequestSource {
  readonly name: string;
  private device: NativeNbdDevice | undefined;
  private connection: NativeNbdConnection | undefined;
  private readonly exited: Promise<void>;
  private resolveExited!: () => void;

  constructor(
    readonly devicePath: string,
    private readonly controller: Controller,
    private readonly pool: BufferPool,
    private readonly transmissionFlags: number,
    private readonly log: Logger,
    private readonly onUnexpectedExit: (message: string) => void,
  ) {
    this.name = devicePath;
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
  }

  /** Configure the device and start serving it; throws BlockError-like errors (code/errno) on failure. */
  attach(): void {
    const native = loadNative();
    let detaching = false;
    this.device = native.attachNbdDevice(
      {
        devicePath: this.devicePath,
        sizeBytes: this.controller.sizeBytes,
        blockSizeBytes: KERNEL_BLOCK_SIZE_BYTES,
        flags: this.transmissionFlags,
        timeoutSeconds: KERNEL_REQUEST_TIMEOUT_SECONDS,
      },
      (errno, message) => {
        this.log.info(`${this.devicePath}: NBD_DO_IT returned (${errno === 0 ? 'ok' : `errno ${errno}`}${message ? `: ${message}` : ''})`);
        this.connection?.close();
        this.resolveExited();
        if (!detaching) this.onUnexpectedExit(`${this.devicePath} was disconnected`);
      },
    );
    const originalDetach = this.device.detach.bind(this.device);
    this.device = { fd: this.device.fd, detach: () => { detaching = true; originalDetach(); } };
    this.connection = native.openConnection(
      { fd: this.device.fd, payloadBytesMax: NBD_PAYLOAD_BYTES_MAX, name: this.devicePath },
      (batch) => this.controller.handleBatch(this, batch),
      (end) => this.log.info(`${this.devicePath}: transmission ended (${end.reason}${end.message ? `: ${end.message}` : ''})`),
    );
    fs.closeSync(this.device.fd); // the connection holds its own dup of our socketpair end
    this.log.info(`${this.devicePath}: attached (${this.controller.sizeBytes} bytes)`);
  }

  complete(tag: number, nbdError: number): void {
    this.connection?.complete(tag, nbdError);
  }

  slotBuffer(slot: number): Buffer {
    return this.pool.slot(slot);
  }

  stats(): ReturnType<NativeNbdConnection['stats']> | undefined {
    return this.connection?.stats();
  }

  /** Wait for in-flight requests, then NBD_DISCONNECT and wait for DO_IT to return. */
  async detach(): Promise<void> {
    if (this.device === undefined) return;
    await this.controller.whenIdle();
    this.device.detach();
    await this.exited;
  }
}
