/**
 * Exit codes of the proof tools, in one place so scripts and failure tests can rely on them.
 */

/** writer: ran to --duration (or SIGINT/SIGTERM) and disconnected cleanly. checker: every acknowledged write is there. */
export const EXIT_OK = 0;
/** checker: at least one acknowledged write is missing or corrupt. */
export const EXIT_CHECK_FAILED = 1;
/** both: bad command line (or the writer's log file already exists). */
export const EXIT_USAGE = 2;
/** writer: the server went away mid-run (kill -9, link cut); the log holds every acknowledged write. */
export const EXIT_SERVER_LOST = 3;
/** writer: the server answered a request with an NBD error; the writer stopped. */
export const EXIT_SERVER_ERROR = 4;
/** writer: could not connect or negotiate at start (nothing was written). checker: the NBD export is unreachable. */
export const EXIT_CONNECT_FAILED = 5;
/** checker: the log or the image cannot be read, or the log is damaged before its end (the proof is incomplete). */
export const EXIT_INPUT_UNUSABLE = 6;
/** both: an unexpected internal failure (e.g. the log cannot be written). */
export const EXIT_INTERNAL = 7;
