// stream-floor: the least work a resync of scattered regions has to do, with nothing else around it.
//
//   stream-floor send HOST PORT SOURCE VOLUME_BYTES REGION_BYTES COUNT SEED
//   stream-floor receive HOST PORT TARGET VOLUME_BYTES
//
// `send` creates SOURCE as a sparse file of VOLUME_BYTES, writes COUNT distinct regions of it (chosen
// by SEED) with pseudo-random bytes, so that they sit in the page cache like a primary's freshly
// written dirty regions, and then, timed: reads each region (pread), CRC32Cs it and sends it with the
// resync channel's own heads (WRITE_NOTIFY + WRITE_META, native/resync_wire.h), in volume order, with
// at most 16 MiB unacknowledged (the resync's CHANNEL_WINDOW_BYTES). It prints one JSON line:
// {"bytes": B, "seconds": S, "writes": N}.
//
// `receive` creates TARGET as a fresh sparse file of VOLUME_BYTES, accepts one connection, and for
// each write reads its heads and payload, checks the payload's CRC32C, writes it (pwrite) and ACKs
// it, holding ACKs while the next write is already waiting (up to 64), as the secondary's channel
// thread does. It exits 0 at the sender's end of stream, 1 on any error.
//
// No JavaScript, no write gates, no bitmap, no metadata, no status: the bench sets what this moves
// beside what the resync moves over the same veth (docs/bench.md). Built from this file and
// native/crc32c.cc only (tools/bench/stream-floor.ts).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "crc32c.h"
#include "resync_wire.h"

using namespace blockmirror;
using namespace blockmirror::resync_wire;

namespace {

constexpr uint64_t kWindowBytes = 16ull * 1024 * 1024;
constexpr size_t kAckBatchMax = 64;
constexpr int kConnectAttempts = 200;  // 10 ms apart: the receiver may still be starting
constexpr uint64_t kEpoch = 1;
constexpr int kAcceptTimeoutMs = 60000;  // a sender that failed early must not leave the receiver waiting

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "stream-floor: %s\n", what.c_str());
  exit(1);
}

[[noreturn]] void DieErrno(const std::string& what, int errnum) { Die(what + ": " + strerror(errnum)); }

uint64_t ParseNumber(const char* text, const char* name) {
  char* end = nullptr;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') Die(std::string("bad ") + name + ": " + text);
  return value;
}

sockaddr_in Address(const char* host, const char* port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(ParseNumber(port, "port")));
  if (inet_pton(AF_INET, host, &address.sin_addr) != 1) Die(std::string("bad IPv4 address: ") + host);
  return address;
}

double NowSeconds() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// A fresh sparse file of `bytes` (an old one is replaced).
int CreateSparse(const char* path, uint64_t bytes) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) DieErrno(std::string("creating ") + path, errno);
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) DieErrno("sizing the file", errno);
  return fd;
}

// xorshift64*: reproducible region choice and region contents from one seed.
struct Random {
  uint64_t state;
  uint64_t Next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dull;
  }
};

// COUNT distinct region indexes below `regions`, ascending (a resync walks its bitmap in order).
std::vector<uint64_t> ChooseRegions(Random& random, uint64_t regions, uint64_t count) {
  if (count > regions) Die("more regions asked for than the volume holds");
  std::vector<bool> chosen(regions, false);
  std::vector<uint64_t> out;
  out.reserve(count);
  while (out.size() < count) {
    uint64_t region = random.Next() % regions;
    if (chosen[region]) continue;
    chosen[region] = true;
    out.push_back(region);
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint8_t* PageAligned(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, bytes) != 0) Die("out of memory");
  return static_cast<uint8_t*>(p);
}

// Every ACK already received (blocking for at least one when `wait`); returns the count.
size_t ReadAcks(int fd, uint8_t* carry, size_t* carried, bool wait) {
  uint8_t bytes[kHeadBytes * kAckBatchMax];
  memcpy(bytes, carry, *carried);
  ssize_t got;
  do {
    got = recv(fd, bytes + *carried, sizeof bytes - *carried, wait ? 0 : MSG_DONTWAIT);
  } while (got < 0 && errno == EINTR);
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  if (got < 0) DieErrno("receiving ACKs", errno);
  if (got == 0) Die("the receiver closed the connection");
  size_t have = *carried + static_cast<size_t>(got);
  size_t acks = have / kHeadBytes;
  for (size_t i = 0; i < acks; i++) {
    const uint8_t* ack = bytes + i * kHeadBytes;
    if (!HeadProblem(ack, kTypeAck, "ACK").empty() || ack[4] != kAckOk) Die("the receiver failed a write");
  }
  *carried = have - acks * kHeadBytes;
  memcpy(carry, bytes + acks * kHeadBytes, *carried);
  return acks;
}

int Send(char** argv) {
  sockaddr_in address = Address(argv[2], argv[3]);
  uint64_t volumeBytes = ParseNumber(argv[5], "volume bytes");
  uint64_t regionBytes = ParseNumber(argv[6], "region bytes");
  uint64_t count = ParseNumber(argv[7], "count");
  Random random{ParseNumber(argv[8], "seed") | 1};
  if (regionBytes == 0 || regionBytes % 8 != 0 || regionBytes > kWritePayloadBytesMax) Die("bad region size");
  std::vector<uint64_t> regions = ChooseRegions(random, volumeBytes / regionBytes, count);
  uint8_t* data = PageAligned(regionBytes);

  // Untimed: the source's regions, written so that they are in the page cache.
  int source = CreateSparse(argv[4], volumeBytes);
  for (uint64_t region : regions) {
    for (size_t i = 0; i < regionBytes; i += 8) {
      uint64_t word = random.Next();
      memcpy(data + i, &word, 8);
    }
    if (pwrite(source, data, regionBytes, static_cast<off_t>(region * regionBytes)) != static_cast<ssize_t>(regionBytes)) {
      DieErrno("writing the source", errno);
    }
  }

  int fd = -1;
  for (int attempt = 0; fd < 0; attempt++) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) DieErrno("socket", errno);
    SetSocketBuffer(fd, SO_SNDBUF);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) break;
    int problem = errno;
    close(fd);
    fd = -1;
    if (attempt + 1 >= kConnectAttempts) DieErrno("connecting", problem);
    usleep(10000);
  }

  double start = NowSeconds();
  std::deque<uint64_t> unacked;  // lengths of the writes sent and not yet ACKed
  uint64_t unackedBytes = 0;
  uint8_t carry[kHeadBytes];
  size_t carried = 0;
  auto settle = [&](size_t acks) {
    for (; acks > 0; acks--) {
      if (unacked.empty()) Die("an ACK for no write");
      unackedBytes -= unacked.front();
      unacked.pop_front();
    }
  };
  uint64_t seq = 1;
  for (uint64_t region : regions) {
    while (unackedBytes + regionBytes > kWindowBytes) settle(ReadAcks(fd, carry, &carried, true));
    uint64_t offset = region * regionBytes;
    if (pread(source, data, regionBytes, static_cast<off_t>(offset)) != static_cast<ssize_t>(regionBytes)) {
      DieErrno("reading the source", errno);
    }
    uint8_t heads[kWriteHeadsBytes];
    EncodeWriteHeads(heads, static_cast<uint16_t>(seq), seq, offset, static_cast<uint32_t>(regionBytes), Crc32c(data, regionBytes, 0),
                     kEpoch);
    seq++;
    iovec iov[2] = {{heads, kWriteHeadsBytes}, {data, regionBytes}};
    int rc = WriteAll(fd, iov, 2);
    if (rc != 0) DieErrno("sending", -rc);
    unacked.push_back(regionBytes);
    unackedBytes += regionBytes;
    settle(ReadAcks(fd, carry, &carried, false));
  }
  while (!unacked.empty()) settle(ReadAcks(fd, carry, &carried, true));
  double seconds = NowSeconds() - start;
  shutdown(fd, SHUT_WR);
  printf("{\"bytes\": %llu, \"seconds\": %.6f, \"writes\": %llu}\n", static_cast<unsigned long long>(count * regionBytes), seconds,
         static_cast<unsigned long long>(count));
  close(fd);
  close(source);
  return 0;
}

int Receive(char** argv) {
  sockaddr_in address = Address(argv[2], argv[3]);
  uint64_t volumeBytes = ParseNumber(argv[5], "volume bytes");
  int target = CreateSparse(argv[4], volumeBytes);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) DieErrno("socket", errno);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) DieErrno("bind", errno);
  if (listen(listener, 1) != 0) DieErrno("listen", errno);
  pollfd waitFor = {listener, POLLIN, 0};
  if (poll(&waitFor, 1, kAcceptTimeoutMs) != 1) Die("no sender connected within " + std::to_string(kAcceptTimeoutMs) + " ms");
  int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) DieErrno("accept", errno);
  close(listener);
  SetSocketBuffer(fd, SO_RCVBUF);
  uint8_t* data = PageAligned(kWritePayloadBytesMax);
  std::vector<uint8_t> acks;
  auto sendAcks = [&]() {
    if (acks.empty()) return;
    iovec iov = {acks.data(), acks.size()};
    int rc = WriteAll(fd, &iov, 1);
    if (rc != 0) DieErrno("sending ACKs", -rc);
    acks.clear();
  };
  for (;;) {
    uint8_t heads[kWriteHeadsBytes];
    ssize_t got;
    do {
      got = recv(fd, heads, sizeof heads, MSG_DONTWAIT);
    } while (got < 0 && errno == EINTR);
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) DieErrno("receiving", errno);
    size_t have = got > 0 ? static_cast<size_t>(got) : 0;
    if (have < sizeof heads) {
      sendAcks();  // about to wait: the held ACKs go first
      if (got == 0) break;
      int rc = ReadAll(fd, heads + have, sizeof heads - have, have == 0);
      if (rc == 1) break;
      if (rc != 0) DieErrno("receiving", -rc);
    }
    const uint8_t* body = heads + kHeadBytes + kHeadBytes;
    if (!HeadProblem(heads, kTypeWriteNotify, "WRITE_NOTIFY").empty() || !HeadProblem(heads + kHeadBytes, kTypeWriteMeta, "WRITE_META").empty()) {
      Die("not a resync write");
    }
    uint64_t offset = Get64(body);
    uint32_t length = Get32(body + 8);
    if (length == 0 || length > kWritePayloadBytesMax || offset > volumeBytes || length > volumeBytes - offset) Die("a write beyond the volume");
    int rc = ReadAll(fd, data, length);
    if (rc != 0) DieErrno("receiving", -rc);
    if (Crc32c(data, length, 0) != Get32(body + 12)) Die("bad payload CRC32C");
    if (pwrite(target, data, length, static_cast<off_t>(offset)) != static_cast<ssize_t>(length)) DieErrno("writing the target", errno);
    size_t at = acks.size();
    acks.resize(at + kHeadBytes);
    EncodeAck(acks.data() + at, Get16(heads + 2), kAckOk);
    if (acks.size() >= kAckBatchMax * kHeadBytes) sendAcks();
  }
  close(fd);
  if (close(target) != 0) DieErrno("closing the target", errno);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 9 && strcmp(argv[1], "send") == 0) return Send(argv);
  if (argc == 6 && strcmp(argv[1], "receive") == 0) return Receive(argv);
  fprintf(stderr,
          "usage: stream-floor send HOST PORT SOURCE VOLUME_BYTES REGION_BYTES COUNT SEED\n"
          "       stream-floor receive HOST PORT TARGET VOLUME_BYTES\n");
  return 2;
}
