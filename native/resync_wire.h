// The resync channel's wire details shared by its two native ends (resync_sender.cc, the primary's;
// resync_channel.cc, the secondary's): message numbers, the encoders of a resync write's heads and of
// an ACK, head checks, and whole-buffer socket I/O. docs/wire-format.md is the spec; src/wire is the
// TypeScript twin, and test/unit/resync-channel.test.ts checks that the encoders' bytes equal it.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "crc32c.h"

namespace blockmirror {
namespace resync_wire {

// Wire format numbers (docs/wire-format.md; src/wire/constants.ts is the TypeScript twin).
constexpr uint8_t kWireVersion = 1;
constexpr uint8_t kTypeWriteNotify = 4;
constexpr uint8_t kTypeWriteMeta = 5;
constexpr uint8_t kTypeAck = 6;
constexpr uint8_t kFlagFua = 0x01;
constexpr uint8_t kFlagResync = 0x02;
constexpr size_t kHeadBytes = 16;
constexpr size_t kHeadCrcCovered = 12;
constexpr size_t kExtentBodyBytes = 24;
constexpr size_t kMetaBytes = kHeadBytes + kExtentBodyBytes;
constexpr size_t kWriteHeadsBytes = kHeadBytes + kMetaBytes;
constexpr uint64_t kWritePayloadBytesMax = 32ull * 1024 * 1024;
constexpr uint8_t kAckOk = 0;
constexpr uint8_t kAckIoError = 1;
constexpr uint8_t kAckNoSpace = 2;

inline void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void Put32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void Put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Get32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline uint64_t Get64(const uint8_t* p) { return (static_cast<uint64_t>(Get32(p)) << 32) | Get32(p + 4); }

// A payload is all zeroes: one memcmp of the bytes against themselves shifted by one (vectorized
// by libc), instead of a byte loop, since a zero region is scanned to its end.
inline bool AllZeroPayload(const uint8_t* p, size_t n) { return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0); }

// Reserved head bytes [from, n) are zero.
inline bool AllZeroBytes(const uint8_t* p, size_t n, size_t from) {
  for (size_t i = from; i < n; i++) {
    if (p[i] != 0) return false;
  }
  return true;
}

// WRITE_NOTIFY head + WRITE_META (head and extent body) of one resync write, 56 bytes.
inline void EncodeWriteHeads(uint8_t* out, uint16_t tag, uint64_t seq, uint64_t offset, uint32_t length, uint32_t payloadCrc,
                      uint64_t epoch) {
  uint8_t* notify = out;
  notify[0] = static_cast<uint8_t>((kWireVersion << 6) | kTypeWriteNotify);
  notify[1] = kFlagResync;
  Put16(notify + 2, tag);
  Put64(notify + 4, seq);
  Put32(notify + 12, Crc32c(notify, kHeadCrcCovered, 0));
  uint8_t* meta = out + kHeadBytes;
  meta[0] = static_cast<uint8_t>((kWireVersion << 6) | kTypeWriteMeta);
  meta[1] = 0;
  Put16(meta + 2, tag);
  Put32(meta + 4, kExtentBodyBytes);
  Put32(meta + 8, 0);
  uint8_t* body = meta + kHeadBytes;
  Put64(body, offset);
  Put32(body + 8, length);
  Put32(body + 12, payloadCrc);
  Put64(body + 16, epoch);
  Put32(meta + 12, Crc32c(body, kExtentBodyBytes, Crc32c(meta, kHeadCrcCovered, 0)));
}

inline void EncodeAck(uint8_t* out, uint16_t tag, uint8_t status) {
  memset(out, 0, kHeadBytes);
  out[0] = static_cast<uint8_t>((kWireVersion << 6) | kTypeAck);
  Put16(out + 2, tag);
  out[4] = status;
  Put32(out + 12, Crc32c(out, kHeadCrcCovered, 0));
}

// A head's version/type check; empty when fine.
inline std::string HeadProblem(const uint8_t* head, uint8_t type, const char* name) {
  uint8_t version = head[0] >> 6;
  if (version != kWireVersion) return "unsupported protocol version " + std::to_string(version);
  uint8_t got = head[0] & 0x3f;
  if (got != type) return std::string("expected ") + name + ", got message type " + std::to_string(got);
  return "";
}

// Whole-buffer socket I/O on a blocking fd: 0, -errno, or 1 for end of stream before the first byte
// (read only, when `eofAtStartOk`).
inline int ReadAll(int fd, uint8_t* p, size_t n, bool eofAtStartOk = false) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = read(fd, p + done, n - done);
    if (r > 0) {
      done += static_cast<size_t>(r);
    } else if (r == 0) {
      return done == 0 && eofAtStartOk ? 1 : -EPIPE;
    } else if (errno != EINTR) {
      return -errno;
    }
  }
  return 0;
}

inline int WriteAll(int fd, struct iovec* iov, int count) {
  while (count > 0) {
    ssize_t w = writev(fd, iov, count);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    size_t left = static_cast<size_t>(w);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      count--;
    }
    if (count > 0) {
      iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

// A channel end's data buffer starts at the first page boundary of the memory JS handed over, so
// that a store opened with O_DIRECT reads and writes it in place; StoreIo would otherwise move every
// run through its bounce buffer (a copy). JS adds a page of slack.
constexpr size_t kBufferAlignBytes = 4096;
inline bool AlignBuffer(uint8_t** data, size_t* capacity) {
  size_t skip = (kBufferAlignBytes - reinterpret_cast<uintptr_t>(*data) % kBufferAlignBytes) % kBufferAlignBytes;
  if (skip >= *capacity) return false;
  *data += skip;
  *capacity -= skip;
  return true;
}

// Socket buffer asked for at each end of a channel (SO_SNDBUF at the sender, SO_RCVBUF at the
// receiver; the kernel caps it at net.core.wmem_max / rmem_max and doubles it). Autotuning starts
// small and grew too slowly within a resync: on two CPUs the sender, waiting for a CPU after the
// receiver freed space, let the receiver run dry. Fixed 4 MiB buffers resynced 10-20% faster
// (docs/bench.md); 8 and 16 MiB were no better.
constexpr int kChannelSocketBufferBytes = 4 * 1024 * 1024;

// Best effort: a refused size leaves the kernel's autotuning in charge.
inline void SetSocketBuffer(int fd, int option) {
  int bytes = kChannelSocketBufferBytes;
  setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof bytes);
}

inline int SetBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) return -errno;
  return 0;
}

}  // namespace resync_wire
}  // namespace blockmirror
