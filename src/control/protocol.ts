/**
 * Control socket protocol: one JSON object per line each way. A request is
 * {"command": NAME, ...args}; the answer is {"ok": true, "result": ...} or {"ok": false, "error": MESSAGE}.
 */
export interface ControlRequest {
  command: string;
  [arg: string]: unknown;
}

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string };

/** Longest request line accepted (a control request is small). */
export const CONTROL_LINE_BYTES_MAX = 64 * 1024;

/** Default control socket path: beside the store. */
export function defaultControlPath(storePath: string): string {
  return `${storePath}.ctl`;
}
