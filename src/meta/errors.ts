/** The one error type the metadata file throws for anything the user (not the program) must fix. */

/** What is wrong with a metadata file; docs/metadata.md says what to do about each. */
export type MetadataErrorCode =
  /** Neither slot holds a valid copy (checksums, or impossible values under a valid checksum). */
  | 'META_CORRUPT'
  /** The file is shorter than its own layout (empty, or cut short). */
  | 'META_TRUNCATED'
  /** The file does not start with our magic in either slot: it is not a blockmirror metadata file. */
  | 'META_FOREIGN'
  /** A slot was written by a format version this program does not know. */
  | 'META_VERSION'
  /** The file describes a volume of another size than the store it is opened for. */
  | 'META_SIZE_MISMATCH'
  /** The file was made with another bitmap or activity-log granularity than the one asked for. */
  | 'META_REGION_MISMATCH'
  /** The file belongs to another store (store kind or inode differs, or the store was just created). */
  | 'META_STORE_MISMATCH'
  /** The store exists and may hold data, but its metadata file does not exist. */
  | 'META_MISSING'
  /** Geometry that cannot be represented (region size, bitmap too large). */
  | 'META_GEOMETRY'
  /** A write or fdatasync of the file failed; the node must stop (the last durable copy is intact). */
  | 'META_WRITE_FAILED';

export class MetadataError extends Error {
  override readonly name = 'MetadataError';

  constructor(
    readonly code: MetadataErrorCode,
    /** The metadata file the error is about. */
    readonly path: string,
    detail: string,
  ) {
    super(`metadata file ${path}: ${detail} [${code}]`);
  }
}
