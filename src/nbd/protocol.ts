/**
 * NBD protocol constants (fixed newstyle negotiation and transmission), as in the NBD protocol
 * document (doc/proto.md of the NBD project). Byte order on the wire: big-endian everywhere.
 */

export const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const NBD_IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const NBD_OPTION_REPLY_MAGIC = 0x3e889045565a9n;

/** Handshake flags (server → client, u16). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Client flags (client → server, u32). */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;
export const NBD_CLIENT_FLAGS_KNOWN = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/** Transmission flags (u16). */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

/** Options (client → server). */
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

/** Option reply types. */
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
const NBD_REP_FLAG_ERROR = 2 ** 31;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
export const NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR + 4;
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7;
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9;

/** NBD_REP_INFO item types. */
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

/** Command flags. */
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

/** Error values in simple replies (NBD numbers, not the host's errno). */
export const NBD_OK = 0;
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** Map a host -errno (from the store) to the NBD error number the protocol allows (one table, like nbdkit). */
export function nbdErrorFromErrno(negativeErrno: number): number {
  const errno = -negativeErrno;
  switch (errno) {
    case 0:
      return NBD_OK;
    case 1: // EPERM
    case 13: // EACCES
    case 30: // EROFS
      return NBD_EPERM;
    case 12: // ENOMEM
      return NBD_ENOMEM;
    case 22: // EINVAL
      return NBD_EINVAL;
    case 28: // ENOSPC
    case 27: // EFBIG
    case 122: // EDQUOT
      return NBD_ENOSPC;
    case 75: // EOVERFLOW
      return NBD_EOVERFLOW;
    case 95: // EOPNOTSUPP
      return NBD_ENOTSUP;
    case 108: // ESHUTDOWN
      return NBD_ESHUTDOWN;
    default:
      return NBD_EIO;
  }
}

/** Option name for log lines. */
export function optionName(option: number): string {
  const names: Record<number, string> = {
    [NBD_OPT_EXPORT_NAME]: 'EXPORT_NAME',
    [NBD_OPT_ABORT]: 'ABORT',
    [NBD_OPT_LIST]: 'LIST',
    [NBD_OPT_STARTTLS]: 'STARTTLS',
    [NBD_OPT_INFO]: 'INFO',
    [NBD_OPT_GO]: 'GO',
    [NBD_OPT_STRUCTURED_REPLY]: 'STRUCTURED_REPLY',
    [NBD_OPT_LIST_META_CONTEXT]: 'LIST_META_CONTEXT',
    [NBD_OPT_SET_META_CONTEXT]: 'SET_META_CONTEXT',
    [NBD_OPT_EXTENDED_HEADERS]: 'EXTENDED_HEADERS',
  };
  return names[option] ?? `UNKNOWN(${option})`;
}
