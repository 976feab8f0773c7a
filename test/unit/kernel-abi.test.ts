/**
 * The NBD numbers are written twice, once per language: native/kernel_abi.h (the transmission
 * phase and the kernel driver's ioctls) and the TypeScript protocol module (negotiation, replies,
 * request rows). This reads the header's constants and checks each against its TypeScript twin
 * and, where the kernel defines it, against the kernel's own UAPI header (/usr/include/linux/nbd.h,
 * from linux-libc-dev, which build-essential installs), so neither copy can drift unnoticed.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as P from '../../src/nbd/protocol';
import { NbdCommand } from '../../src/native';
import { REPO_ROOT } from '../helpers/node-process';

const KERNEL_HEADER = '/usr/include/linux/nbd.h';

/** Value of a constant expression as these headers write them: 0x.., decimal, `1 << n`, `_IO(type, nr)`. */
function evaluate(expression: string): bigint {
  const e = expression.replace(/[()\s]/g, ' ').trim();
  const io = /^_IO\s+(0x[0-9a-f]+|\d+)\s*,\s*(\d+)$/i.exec(e);
  if (io) return (BigInt(io[1]!) << 8n) | BigInt(io[2]!);
  const shift = /^(\d+)(?:ull|u)?\s*<<\s*(\d+)$/i.exec(e);
  if (shift) return BigInt(shift[1]!) << BigInt(shift[2]!);
  const literal = /^(0x[0-9a-f]+|\d+)$/i.exec(e);
  if (literal) return BigInt(literal[1]!);
  throw new Error(`cannot evaluate "${expression}"`);
}

/** `constexpr <type> kName = <expr>;` from native/kernel_abi.h. */
function nativeConstants(): Map<string, bigint> {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'native', 'kernel_abi.h'), 'utf8');
  const out = new Map<string, bigint>();
  for (const m of text.matchAll(/constexpr\s+[\w\s]+?\s+(k\w+)\s*=\s*([^;]+);/g)) out.set(m[1]!, evaluate(m[2]!));
  return out;
}

/** `#define NAME value` and `NAME = value` (enum members) from the kernel's nbd.h. */
function kernelConstants(): Map<string, bigint> {
  const text = fs.readFileSync(KERNEL_HEADER, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const out = new Map<string, bigint>();
  for (const m of text.matchAll(/^#define\s+(NBD_\w+)\s+(.+)$/gm)) {
    try {
      out.set(m[1]!, evaluate(m[2]!));
    } catch {
      // not a number (a macro of macros): not one we compare
    }
  }
  for (const m of text.matchAll(/\b(NBD_CMD_\w+)\s*=\s*(\d+)/g)) out.set(m[1]!, BigInt(m[2]!));
  return out;
}

// native name → [TypeScript value, kernel name (undefined when the kernel header does not define it the same way)]
const TWINS: Record<string, [number | undefined, string | undefined]> = {
  kRequestMagic: [undefined, 'NBD_REQUEST_MAGIC'],
  kSimpleReplyMagic: [undefined, 'NBD_REPLY_MAGIC'],
  kCmdRead: [NbdCommand.Read, 'NBD_CMD_READ'],
  kCmdWrite: [NbdCommand.Write, 'NBD_CMD_WRITE'],
  kCmdDisc: [NbdCommand.Disc, 'NBD_CMD_DISC'],
  kCmdFlush: [NbdCommand.Flush, 'NBD_CMD_FLUSH'],
  kCmdTrim: [NbdCommand.Trim, 'NBD_CMD_TRIM'],
  kCmdCache: [NbdCommand.Cache, undefined],
  kCmdWriteZeroes: [NbdCommand.WriteZeroes, undefined],
  kCmdBlockStatus: [NbdCommand.BlockStatus, undefined],
  // The kernel's NBD_CMD_FLAG_FUA is 1 << 16: it packs flags above the type in one word.
  kCmdFlagFua: [P.NBD_CMD_FLAG_FUA, undefined],
  kCmdFlagNoHole: [P.NBD_CMD_FLAG_NO_HOLE, undefined],
  kFlagHasFlags: [P.NBD_FLAG_HAS_FLAGS, 'NBD_FLAG_HAS_FLAGS'],
  kFlagReadOnly: [P.NBD_FLAG_READ_ONLY, 'NBD_FLAG_READ_ONLY'],
  kErrPerm: [P.NBD_EPERM, undefined],
  kErrIo: [P.NBD_EIO, undefined],
  kErrNoMem: [P.NBD_ENOMEM, undefined],
  kErrInval: [P.NBD_EINVAL, undefined],
  kErrNoSpc: [P.NBD_ENOSPC, undefined],
  kErrOverflow: [P.NBD_EOVERFLOW, undefined],
  kErrNotSup: [P.NBD_ENOTSUP, undefined],
  kErrShutdown: [P.NBD_ESHUTDOWN, undefined],
  kJsSafeOffsetLimit: [2 ** 53, undefined],
  kIoctlSetSock: [undefined, 'NBD_SET_SOCK'],
  kIoctlSetBlkSize: [undefined, 'NBD_SET_BLKSIZE'],
  kIoctlSetSize: [undefined, 'NBD_SET_SIZE'],
  kIoctlDoIt: [undefined, 'NBD_DO_IT'],
  kIoctlClearSock: [undefined, 'NBD_CLEAR_SOCK'],
  kIoctlClearQue: [undefined, 'NBD_CLEAR_QUE'],
  kIoctlPrintDebug: [undefined, 'NBD_PRINT_DEBUG'],
  kIoctlSetSizeBlocks: [undefined, 'NBD_SET_SIZE_BLOCKS'],
  kIoctlDisconnect: [undefined, 'NBD_DISCONNECT'],
  kIoctlSetTimeout: [undefined, 'NBD_SET_TIMEOUT'],
  kIoctlSetFlags: [undefined, 'NBD_SET_FLAGS'],
};

describe('kernel ABI: native/kernel_abi.h against the TypeScript constants and linux/nbd.h', () => {
  const native = nativeConstants();

  it('every native constant has its twin listed here, and every listed twin exists natively', () => {
    assert.deepEqual([...native.keys()].sort(), Object.keys(TWINS).sort());
  });

  it('each native constant equals its TypeScript twin', () => {
    for (const [name, [ts]] of Object.entries(TWINS)) {
      if (ts !== undefined) assert.equal(native.get(name), BigInt(ts), name);
    }
  });

  it('each native constant the kernel also defines equals the kernel header value', () => {
    assert.ok(fs.existsSync(KERNEL_HEADER), `${KERNEL_HEADER} is missing: install linux-libc-dev (build-essential brings it)`);
    const kernel = kernelConstants();
    let compared = 0;
    for (const [name, [, kernelName]] of Object.entries(TWINS)) {
      if (kernelName === undefined) continue;
      assert.ok(kernel.has(kernelName), `${kernelName} not found in ${KERNEL_HEADER}`);
      assert.equal(native.get(name), kernel.get(kernelName), `${name} vs ${kernelName}`);
      compared += 1;
    }
    assert.ok(compared >= 20, `compared ${compared} constants`);
  });
});
