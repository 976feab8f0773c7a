/**
 * The receive side of a peer socket: created before the socket, so that Node reads the socket
 * straight into this receiver's slabs (`onread`), where the frame reader cuts frames as views.
 * Sockets come from `connect` (the primary dialling its secondary) or `adopt` (the secondary
 * taking over a connection its listener accepted paused).
 */
import * as net from 'node:net';
import { FrameReader } from '../wire';
import { ReceiveSlabs } from './receive-slabs';
import { loadNative } from '../native';
import { socketFd } from '../util/socket-fd';

export class PeerReceiver {
  readonly reader = new FrameReader();
  readonly slabs = new ReceiveSlabs(this.reader);
  /** Runs after every read, with the new bytes already pushed to `reader`. */
  onReceived: (() => void) | undefined;

  private readonly readOptions: net.OnReadOpts = {
    buffer: () => this.slabs.readTarget(),
    callback: (n: number) => {
      this.reader.push(this.slabs.received(n));
      this.onReceived?.();
      return true;
    },
  };

  /** A TCP connection to host:port whose bytes land in this receiver. */
  connect(host: string, port: number): net.Socket {
    return net.createConnection({ host, port, onread: this.readOptions });
  }

  /**
   * Takes over a socket that a server accepted with `pauseOnConnect` (so nothing was read from it
   * yet): returns a socket on a duplicate of its fd whose bytes land in this receiver, and destroys
   * the original.
   */
  adopt(accepted: net.Socket): net.Socket {
    const copy = loadNative().duplicateFd(socketFd(accepted));
    accepted.destroy();
    const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = { fd: copy, readable: true, writable: true, onread: this.readOptions };
    return new net.Socket(options);
  }
}
