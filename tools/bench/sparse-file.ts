// Fresh sparse backing files for every measured case.
import * as fs from 'node:fs';

// Creates (or replaces) a sparse file of exactly sizeBytes.
export function createSparseFile(filePath: string, sizeBytes: number): void {
  fs.rmSync(filePath, { force: true });
  const fd = fs.openSync(filePath, 'w');
  try {
    fs.ftruncateSync(fd, sizeBytes);
  } finally {
    fs.closeSync(fd);
  }
}
