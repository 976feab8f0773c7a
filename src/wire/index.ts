/** The blockmirror peer wire format: the one module both ends of a mirror connection use. */
export * from './constants';
export * from './bitmap';
export * from './codec';
export * from './crc32c';
export * from './decode-stream';
export * from './frame-reader';
export * from './json';
export * from './names';
