/**
 * Numbers of the blockmirror peer wire format, version 1 (spec: docs/wire-format.md).
 * All multi-byte integers on the wire are big-endian (network byte order).
 * Numbers are explicit and never reused: a retired number goes to RETIRED_MESSAGE_TYPES.
 */

/** Protocol version carried in the top 2 bits of byte 0 of every head. 0 is never valid. */
export const WIRE_VERSION = 1;
/** Highest protocol version this implementation speaks (advertised in HELLO). */
export const WIRE_VERSION_MAX = 1;

/** Every message starts with a head of exactly 128 bits. */
export const HEAD_BYTES = 16;
/** Head bytes covered by the head CRC (the CRC itself sits in bytes 12..15). */
export const HEAD_CRC_COVERED_BYTES = 12;
/** Offset of the CRC32C field in every head. */
export const HEAD_CRC_OFFSET = 12;

export const SECTOR_BYTES = 512;
export const SECTOR_SHIFT = 9;

/** Inline threshold used when HELLO does not lower it. */
export const INLINE_THRESHOLD_DEFAULT_BYTES = 32768;
/** Largest inline write the 8-bit "sectors minus 1" length field can express: 256 sectors. */
export const INLINE_SECTORS_MAX = 256;
export const INLINE_THRESHOLD_MAX_BYTES = INLINE_SECTORS_MAX * SECTOR_BYTES;
/** Smallest threshold a peer may negotiate: one sector. */
export const INLINE_THRESHOLD_MIN_BYTES = SECTOR_BYTES;

/** Largest body that may follow a head (HELLO with extensions, WRITE_META, TRIM, WRITE_ZEROES). */
export const BODY_BYTES_MAX = 4096;
/** Version-1 HELLO / HELLO_REPLY body; longer bodies carry extensions that v1 receivers ignore. */
export const HELLO_BODY_BYTES = 88;
/** Body of WRITE_META, TRIM, WRITE_ZEROES, HASH_REQUEST and READ_REQUEST. */
export const EXTENT_BODY_BYTES = 24;

/** Largest payload of one large write (WRITE_META lengthBytes); matches the NBD 32 MiB request cap. */
export const WRITE_PAYLOAD_BYTES_MAX = 32 * 1024 * 1024;
/** Largest range one READ_REQUEST may ask for (and so the largest READ_REPLY payload): the NBD request cap. */
export const READ_LENGTH_BYTES_MAX = WRITE_PAYLOAD_BYTES_MAX;
/** Largest TRIM / WRITE_ZEROES extent: the u32 length field rounded down to whole sectors. */
export const EXTENT_LENGTH_BYTES_MAX = 0xfffffe00;

/** Fixed part of a BITMAP body, before the bitmap bytes. */
export const BITMAP_FIXED_BODY_BYTES = 24;
/** Bitmap bytes one BITMAP chunk can carry: the body cap minus the fixed part. */
export const BITMAP_CHUNK_BYTES_MAX = BODY_BYTES_MAX - BITMAP_FIXED_BODY_BYTES;
/** Regions (bits) one BITMAP chunk can carry: 32576. */
export const BITMAP_CHUNK_REGIONS_MAX = BITMAP_CHUNK_BYTES_MAX * 8;
/** Smallest and largest bitmap granularity (power of two): one bit covers this many volume bytes. */
export const REGION_BYTES_MIN = 4096;
export const REGION_BYTES_MAX = 64 * 1024 * 1024;
/** Most regions a bitmap may have: firstRegion is a u32. */
export const BITMAP_TOTAL_REGIONS_MAX = 2 ** 32;
/** Largest range one HASH_REQUEST may ask for. */
export const HASH_LENGTH_BYTES_MAX = 64 * 1024 * 1024;
/** HASH_REPLY's range digest is 56 bits: the first 7 bytes of the range's SHA-256. */
export const RANGE_DIGEST_MAX = (1n << 56n) - 1n;

/** Tags are 16 bits: at most this many tagged requests can be in flight on one connection. */
export const TAG_COUNT = 65536;
export const TAG_MAX = 0xffff;

/** 48-bit sector address in WRITE_INLINE. */
export const SECTOR_ADDRESS_MAX = 2 ** 48 - 1;
/** 64-bit counters and byte offsets are JS numbers in this implementation: values above this are refused. */
export const U64_NUMBER_MAX = Number.MAX_SAFE_INTEGER;

export const BLOCK_SIZE_MIN_BYTES = 512;
export const BLOCK_SIZE_MAX_BYTES = 65536;

/** Message types: 6 bits, byte 0 low bits. 0 is never assigned so an all-zero head is rejected. */
export const MessageType = {
  Hello: 1,
  HelloReply: 2,
  WriteInline: 3,
  WriteNotify: 4,
  WriteMeta: 5,
  Ack: 6,
  WriteComplete: 7,
  Flush: 8,
  Trim: 9,
  WriteZeroes: 10,
  Ping: 11,
  Pong: 12,
  Bitmap: 13,
  HashRequest: 14,
  HashReply: 15,
  ResyncDone: 16,
  ResyncChannel: 17,
  ReadRequest: 18,
  ReadReply: 19,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** Numbers that were used by an earlier draft and must never be assigned again. */
export const RETIRED_MESSAGE_TYPES: readonly number[] = [];

/** Highest value the 6-bit type field can hold. */
export const MESSAGE_TYPE_FIELD_MAX = 63;

/** Write flags (byte 1) of WRITE_INLINE, WRITE_NOTIFY, TRIM, WRITE_ZEROES. Other bits are reserved (0). */
export const WriteFlag = {
  /** Force unit access: the secondary makes this write durable before acknowledging it. */
  Fua: 0x01,
  /** The write is resynchronisation traffic, not an application write. */
  Resync: 0x02,
} as const;
export const WRITE_FLAGS_KNOWN = WriteFlag.Fua | WriteFlag.Resync;

/** ACK status (byte 4). */
export const AckStatus = {
  Ok: 0,
  IoError: 1,
  NoSpace: 2,
  EpochRefused: 3,
  NotSupported: 4,
} as const;
export type AckStatus = (typeof AckStatus)[keyof typeof AckStatus];

/** HELLO_REPLY reason (byte 8): 0 accepts the connection, anything else refuses it. */
export const HelloReason = {
  Accepted: 0,
  VersionUnsupported: 1,
  VolumeSizeMismatch: 2,
  BlockSizeMismatch: 3,
  NodeIdMismatch: 4,
  StaleEpoch: 5,
  RoleConflict: 6,
  FeaturesRefused: 7,
  InlineThresholdInvalid: 8,
  Busy: 9,
  UnrelatedData: 10,
  /** Both nodes wrote since their last common generation: an operator must choose whose writes to discard. */
  SplitBrain: 11,
  /** The secondary holds writes the primary lacks (it was primary more recently): swap roles or discard them. */
  PrimaryOutdated: 12,
} as const;
export type HelloReason = (typeof HelloReason)[keyof typeof HelloReason];

/** HASH_REPLY status (byte 4). */
export const HashStatus = {
  Ok: 0,
  IoError: 1,
  /** The request's epoch is not the connection's current epoch: nothing was hashed. */
  EpochRefused: 2,
} as const;
export type HashStatus = (typeof HashStatus)[keyof typeof HashStatus];

/** READ_REPLY status (byte 4). */
export const ReadStatus = {
  Ok: 0,
  IoError: 1,
  /** The request's epoch is not the connection's current epoch: nothing was read. */
  EpochRefused: 2,
} as const;
export type ReadStatus = (typeof ReadStatus)[keyof typeof ReadStatus];

/** Flags (u32, body bytes 12..15) of a BITMAP chunk. Other bits are reserved (0). */
export const BitmapFlag = {
  /** The last chunk of the sender's bitmap: it ends at totalRegions. */
  Last: 0x1,
} as const;
export const BITMAP_FLAGS_KNOWN = BitmapFlag.Last;

/** Role byte of the HELLO body. */
export const Role = {
  Primary: 1,
  Secondary: 2,
} as const;
export type Role = (typeof Role)[keyof typeof Role];

/** Feature bits of the 64-bit HELLO features mask. Unknown bits are allowed and dropped by negotiation. */
export const Feature = {
  Trim: 1n << 0n,
  WriteZeroes: 1n << 1n,
  /** BITMAP exchange at connect, HASH_REQUEST / HASH_REPLY and RESYNC_DONE (section 8.1). */
  Resync: 1n << 2n,
  /** A second connection that carries a resync's region data (RESYNC_CHANNEL, docs/wire-format.md section 8.2). */
  ResyncChannel: 1n << 3n,
  /** READ_REQUEST / READ_REPLY: the primary reads from its peer what its own store failed to read (section 5.15). */
  PeerRead: 1n << 4n,
} as const;
export const FEATURES_KNOWN = Feature.Trim | Feature.WriteZeroes | Feature.Resync | Feature.ResyncChannel | Feature.PeerRead;

/** Byte offsets inside a head. */
export const HeadOffset = {
  VersionType: 0,
  Flags: 1,
  Tag: 2,
  BodyLength: 4,
  InlineLengthSectorsMinus1: 4,
  InlineEpochLow8: 5,
  InlineSectorAddress: 6,
  Status: 4,
  Reason: 8,
  U64: 4,
  Crc: 12,
} as const;

/** Byte offsets inside the extent body of WRITE_META, TRIM and WRITE_ZEROES. */
export const ExtentOffset = {
  OffsetBytes: 0,
  LengthBytes: 8,
  PayloadCrc: 12,
  Epoch: 16,
} as const;

/** Byte offsets inside the BITMAP body; the bitmap bytes start at Bits. */
export const BitmapOffset = {
  FirstRegion: 0,
  RegionCount: 4,
  RegionBytes: 8,
  Flags: 12,
  TotalRegions: 16,
  Bits: 24,
} as const;

/** Byte offsets inside a HASH_REPLY head. */
export const HashReplyOffset = {
  Status: 4,
  /** 7 bytes: 5..11. */
  RangeDigest: 5,
} as const;

/** Byte offsets inside a READ_REPLY head. */
export const ReadReplyOffset = {
  Status: 4,
  /** u32: payload bytes after the head (0 unless the status is OK). */
  LengthBytes: 8,
} as const;

/** Byte offsets inside the HELLO / HELLO_REPLY body. */
export const HelloOffset = {
  ProtocolVersionMax: 0,
  Role: 1,
  Reserved16: 2,
  BlockSizeBytes: 4,
  VolumeSizeBytes: 8,
  NodeId: 16,
  PeerNodeId: 24,
  CurrentGeneration: 32,
  BitmapGeneration: 40,
  HistoryGeneration0: 48,
  HistoryGeneration1: 56,
  Features: 64,
  Epoch: 72,
  InlineThresholdBytes: 80,
  Reserved32: 84,
} as const;

/** Compile-time and load-time guards: the format depends on these exact sizes. */
function assertLayout(): void {
  if (HEAD_BYTES !== 16 || HEAD_BYTES * 8 !== 128) throw new Error('wire: head must be 128 bits');
  if (HelloOffset.Reserved32 + 4 !== HELLO_BODY_BYTES) throw new Error('wire: HELLO body layout');
  if (ExtentOffset.Epoch + 8 !== EXTENT_BODY_BYTES) throw new Error('wire: extent body layout');
  if (INLINE_THRESHOLD_MAX_BYTES !== 131072) throw new Error('wire: inline max');
  if (BitmapOffset.Bits !== BITMAP_FIXED_BODY_BYTES || BITMAP_CHUNK_REGIONS_MAX % 8 !== 0) throw new Error('wire: BITMAP body layout');
  for (const t of Object.values(MessageType)) {
    if (t < 1 || t > MESSAGE_TYPE_FIELD_MAX || RETIRED_MESSAGE_TYPES.includes(t)) {
      throw new Error(`wire: message type ${t} is out of range or retired`);
    }
  }
}
assertLayout();
