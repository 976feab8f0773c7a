/**
 * Where the checker reads blocks from: a replica's store file / block device, or an NBD export.
 */
import * as fs from 'node:fs';
import { NbdClient, type NbdAddress } from './nbd-client';

/** Reads whole blocks; a block past the end comes back short. */
export interface BlockSource {
  readonly description: string;
  /** Reads that may usefully be in flight at once. */
  readonly parallelReads: number;
  read(offset: number, lengthBytes: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** NBD reads kept in flight at once by the checker. */
export const NBD_PARALLEL_READS = 32;

/** A store file or block device opened read-only. */
export function openImageSource(imagePath: string): BlockSource {
  const fd = fs.openSync(imagePath, 'r');
  return {
    description: imagePath,
    parallelReads: 1,
    async read(offset, lengthBytes) {
      const block = Buffer.alloc(lengthBytes);
      let got = 0;
      while (got < lengthBytes) {
        const n = fs.readSync(fd, block, got, lengthBytes - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return block.subarray(0, got);
    },
    async close() {
      fs.closeSync(fd);
    },
  };
}

/** An NBD export; reads past the export size come back empty instead of failing. */
export async function openNbdSource(address: NbdAddress, description: string): Promise<BlockSource> {
  const client = await NbdClient.connect(address);
  return {
    description,
    parallelReads: NBD_PARALLEL_READS,
    async read(offset, lengthBytes) {
      if (offset >= client.exportSizeBytes) return Buffer.alloc(0);
      return client.read(offset, Math.min(lengthBytes, client.exportSizeBytes - offset));
    },
    close: () => client.disconnect(),
  };
}
