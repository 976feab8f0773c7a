// Wire and ioctl constants of the NBD transmission phase and the Linux nbd driver.
// Values checked against the NBD protocol document (doc/proto.md of NetworkBlockDevice/nbd)
// and include/uapi/linux/nbd.h; written out here so the build does not depend on kernel headers.
// test/unit/kernel-abi.test.ts compares each one with its TypeScript twin and with linux/nbd.h.
#pragma once

#include <cstdint>
#include <sys/ioctl.h>

namespace blockmirror {
namespace nbd {

// Magic numbers (big-endian on the wire).
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;

// Request types (NBD_CMD_*).
constexpr uint16_t kCmdRead = 0;
constexpr uint16_t kCmdWrite = 1;
constexpr uint16_t kCmdDisc = 2;
constexpr uint16_t kCmdFlush = 3;
constexpr uint16_t kCmdTrim = 4;
constexpr uint16_t kCmdCache = 5;
constexpr uint16_t kCmdWriteZeroes = 6;
constexpr uint16_t kCmdBlockStatus = 7;

// Command flags (NBD_CMD_FLAG_*), 16 bits in the request.
constexpr uint16_t kCmdFlagFua = 1 << 0;
constexpr uint16_t kCmdFlagNoHole = 1 << 1;

// Transmission flags (NBD_FLAG_*) handed to the kernel with NBD_SET_FLAGS.
constexpr uint32_t kFlagHasFlags = 1 << 0;
constexpr uint32_t kFlagReadOnly = 1 << 1;

// Error numbers carried in replies (protocol values, not host errno).
constexpr uint32_t kErrPerm = 1;
constexpr uint32_t kErrIo = 5;
constexpr uint32_t kErrNoMem = 12;
constexpr uint32_t kErrInval = 22;
constexpr uint32_t kErrNoSpc = 28;
constexpr uint32_t kErrOverflow = 75;
constexpr uint32_t kErrNotSup = 95;
constexpr uint32_t kErrShutdown = 108;

// Largest offset JavaScript numbers represent exactly (2^53); larger offsets are refused natively.
constexpr uint64_t kJsSafeOffsetLimit = 1ull << 53;

// Request header as laid out on the wire: all fields big-endian.
#pragma pack(push, 1)
struct WireRequest {
  uint32_t magic;
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;
  uint32_t length;
};

// Simple reply header as laid out on the wire: all fields big-endian.
struct WireSimpleReply {
  uint32_t magic;
  uint32_t error;
  uint64_t cookie;
};
#pragma pack(pop)

static_assert(sizeof(WireRequest) == 28, "NBD request header is 28 bytes");
static_assert(sizeof(WireSimpleReply) == 16, "NBD simple reply header is 16 bytes");

// ioctls of /dev/nbdN (type 0xab).
constexpr unsigned long kIoctlSetSock = _IO(0xab, 0);
constexpr unsigned long kIoctlSetBlkSize = _IO(0xab, 1);
constexpr unsigned long kIoctlSetSize = _IO(0xab, 2);
constexpr unsigned long kIoctlDoIt = _IO(0xab, 3);
constexpr unsigned long kIoctlClearSock = _IO(0xab, 4);
constexpr unsigned long kIoctlClearQue = _IO(0xab, 5);
constexpr unsigned long kIoctlPrintDebug = _IO(0xab, 6);
constexpr unsigned long kIoctlSetSizeBlocks = _IO(0xab, 7);
constexpr unsigned long kIoctlDisconnect = _IO(0xab, 8);
constexpr unsigned long kIoctlSetTimeout = _IO(0xab, 9);
constexpr unsigned long kIoctlSetFlags = _IO(0xab, 10);

}  // namespace nbd
}  // namespace blockmirror
