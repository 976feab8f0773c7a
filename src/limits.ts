/** Every limit of a node in one place, with the relations between them checked at load. */
import { assert } from './util/assert';

/** Largest NBD request payload accepted (NBD's recommended maximum is 32 MiB). */
export const NBD_PAYLOAD_BYTES_MAX = 32 * 1024 * 1024;
/** Payloads up to this size land in a pool slot; larger ones get a dedicated native buffer. */
export const POOL_SLOT_BYTES = 1024 * 1024;
/** Number of pool slots: the number of requests that can be in flight across all connections. */
export const POOL_SLOT_COUNT = 256;
/** Block size advertised to clients (minimum, preferred). */
export const BLOCK_SIZE_MIN_BYTES = 1;
export const BLOCK_SIZE_PREFERRED_BYTES = 4096;
/**
 * Minimum block size advertised for a store opened with O_DIRECT (--direct): O_DIRECT I/O needs
 * offsets and lengths aligned to the device's logical block (512 or 4096 bytes; a file's
 * filesystem block), and 4096 satisfies both, so clients that honour it never get EINVAL.
 */
export const DIRECT_BLOCK_SIZE_MIN_BYTES = 4096;
/** Writes up to this size on a non-O_DIRECT store run synchronously on the JS thread (page cache). */
export const SYNC_IO_BYTES_MAX = 128 * 1024;
/** NBD negotiation: largest option payload we read, and how long a client may take to negotiate. */
export const NBD_OPTION_BYTES_MAX = 64 * 1024;
export const NBD_NEGOTIATION_TIMEOUT_MS = 30_000;
export const NBD_OPTIONS_PER_CONNECTION_MAX = 256;
/** Simultaneous NBD client connections per node. */
export const NBD_CONNECTIONS_MAX = 64;
/** Kernel NBD device: block size and request timeout. */
export const KERNEL_BLOCK_SIZE_BYTES = 4096;
export const KERNEL_REQUEST_TIMEOUT_SECONDS = 30;
/** Mirror timing (DRBD-like): ping every second, give up after a few. */
export const KEEPALIVE_INTERVAL_MS_DEFAULT = 1000;
export const KEEPALIVE_TIMEOUT_MS_DEFAULT = 5000;
/**
 * A degraded primary retries its peer this often: a refused or unreachable connect costs next to
 * nothing, and every retry saved shortens the time the pair runs without a second copy.
 */
export const RECONNECT_DELAY_MS = 250;
/**
 * Resyncs that keep ending unfinished (the secondary's disk is full, the link fails again and
 * again) double that delay each time, up to this: a peer that cannot take the data is retried
 * every few seconds rather than four times a second, and one finished resync restores the 250 ms.
 */
export const RECONNECT_BACKOFF_MAX_MS = 8000;
/** Largest volume we serve: offsets must stay exact in a JS number. */
export const VOLUME_BYTES_MAX = 2 ** 50;

assert(POOL_SLOT_BYTES % 4096 === 0, 'pool slots must be page multiples for O_DIRECT');
assert(NBD_PAYLOAD_BYTES_MAX >= POOL_SLOT_BYTES, 'payload cap must cover a slot');
assert(SYNC_IO_BYTES_MAX <= POOL_SLOT_BYTES, 'sync I/O only from pool slots');
