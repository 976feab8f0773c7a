#include "resync_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "crc32c.h"
#include "errors.h"
#include "js_args.h"

namespace blockmirror {

namespace {

// Wire format numbers (docs/wire-format.md; src/wire/constants.ts is the TypeScript twin, and
// test/unit/resync-channel.test.ts checks that this encoder's bytes equal the codec's).
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
// ACKs the receiver holds back while more frames are already waiting in the socket.
constexpr size_t kAckBatchMax = 64;

// Outcomes of one region of a send batch (the results array).
constexpr int32_t kOutcomeNotSent = 0;
constexpr int32_t kOutcomeZero = 2;
constexpr int32_t kOutcomeSent = 3;
// Outcomes of the earlier writes whose ACKs a call reads (the ackResults array).
constexpr int32_t kAckNotRead = 0;
constexpr int32_t kAckedOk = 1;

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t Get32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
uint64_t Get64(const uint8_t* p) { return (static_cast<uint64_t>(Get32(p)) << 32) | Get32(p + 4); }

// A payload is all zeroes: one memcmp of the bytes against themselves shifted by one (vectorized
// by libc), instead of a byte loop, since a zero region is scanned to its end.
bool AllZeroPayload(const uint8_t* p, size_t n) { return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0); }

// Reserved head bytes [from, n) are zero.
bool AllZeroBytes(const uint8_t* p, size_t n, size_t from) {
  for (size_t i = from; i < n; i++) {
    if (p[i] != 0) return false;
  }
  return true;
}

// WRITE_NOTIFY head + WRITE_META (head and extent body) of one resync write, 56 bytes.
void EncodeWriteHeads(uint8_t* out, uint16_t tag, uint64_t seq, uint64_t offset, uint32_t length, uint32_t payloadCrc,
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

void EncodeAck(uint8_t* out, uint16_t tag, uint8_t status) {
  memset(out, 0, kHeadBytes);
  out[0] = static_cast<uint8_t>((kWireVersion << 6) | kTypeAck);
  Put16(out + 2, tag);
  out[4] = status;
  Put32(out + 12, Crc32c(out, kHeadCrcCovered, 0));
}

// A head's version/type check; empty when fine.
std::string HeadProblem(const uint8_t* head, uint8_t type, const char* name) {
  uint8_t version = head[0] >> 6;
  if (version != kWireVersion) return "unsupported protocol version " + std::to_string(version);
  uint8_t got = head[0] & 0x3f;
  if (got != type) return std::string("expected ") + name + ", got message type " + std::to_string(got);
  return "";
}

// Whole-buffer socket I/O on a blocking fd: 0, -errno, or 1 for end of stream before the first byte
// (read only, when `eofAtStartOk`).
int ReadAll(int fd, uint8_t* p, size_t n, bool eofAtStartOk = false) {
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

int WriteAll(int fd, struct iovec* iov, int count) {
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

int SetBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) return -errno;
  return 0;
}

bool GetEpoch(Napi::Value v, uint64_t* epoch) {
  if (!v.IsBigInt()) return false;
  bool lossless = false;
  *epoch = v.As<Napi::BigInt>().Uint64Value(&lossless);
  return lossless;
}

// ---- sender ----

class ResyncSendWorker : public Napi::AsyncWorker {
 public:
  ResyncSendWorker(Napi::Function done, std::shared_ptr<Store> store, int fd, Napi::Object buffer, uint8_t* data,
                   std::vector<std::pair<uint64_t, uint32_t>> regions, uint64_t firstSeq,
                   uint64_t epoch, int timeoutMs, Napi::Int32Array results, uint64_t ackFirstSeq, size_t acksToRead,
                   Napi::Int32Array ackResults)
      : Napi::AsyncWorker(done, "blockmirror:resyncSend"),
        store_(std::move(store)),
        fd_(fd),
        data_(data),
        regions_(std::move(regions)),
        firstSeq_(firstSeq),
        epoch_(epoch),
        timeoutMs_(timeoutMs),
        outcomes_(regions_.size(), kOutcomeNotSent),
        ackFirstSeq_(ackFirstSeq),
        ackOutcomes_(acksToRead, kAckNotRead) {
    buffer_ = Napi::Persistent(buffer);
    results_ = Napi::Persistent(results.As<Napi::Object>());
    ackResults_ = Napi::Persistent(ackResults.As<Napi::Object>());
  }

  void Execute() override {
    int rc = SetBlocking(fd_);
    if (rc == 0 && timeoutMs_ > 0) {
      struct timeval tv = {timeoutMs_ / 1000, (timeoutMs_ % 1000) * 1000};
      if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
          setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
        rc = -errno;
      }
    }
    if (rc != 0) {
      problem_ = "setting up the channel socket: " + ErrnoText(-rc);
      return;
    }
    // New writes first (the peer gets more to do at once), then the ACKs of writes sent by earlier
    // calls, in stream order; this call's own ACKs are read by the next call.
    uint8_t heads[kWriteHeadsBytes];
    for (size_t i = 0; i < regions_.size(); i++) {
      uint64_t offset = regions_[i].first;
      uint32_t length = regions_[i].second;
      rc = store_->io().Read(data_, length, offset);
      if (rc != 0) {
        problem_ = "reading " + std::to_string(length) + " bytes at " + std::to_string(offset) + ": " + ErrnoText(-rc);
        break;
      }
      if (AllZeroPayload(data_, length)) {
        outcomes_[i] = kOutcomeZero;
        continue;
      }
      uint64_t seq = firstSeq_ + sentCount_;
      EncodeWriteHeads(heads, static_cast<uint16_t>(seq), seq, offset, length, Crc32c(data_, length, 0), epoch_);
      struct iovec iov[2] = {{heads, kWriteHeadsBytes}, {data_, length}};
      rc = WriteAll(fd_, iov, 2);
      if (rc != 0) {
        problem_ = "sending: " + ErrnoText(-rc);
        break;
      }
      outcomes_[i] = kOutcomeSent;
      sentCount_++;
    }
    for (size_t k = 0; k < ackOutcomes_.size(); k++) {
      uint16_t expected = static_cast<uint16_t>(ackFirstSeq_ + k);
      uint8_t ack[kHeadBytes];
      rc = ReadAll(fd_, ack, kHeadBytes);
      if (rc != 0) {
        if (problem_.empty()) problem_ = "waiting for ACKs: " + ErrnoText(-rc);
        return;
      }
      std::string bad = HeadProblem(ack, kTypeAck, "ACK");
      if (bad.empty() && Get32(ack + 12) != Crc32c(ack, kHeadCrcCovered, 0)) bad = "ACK with a bad CRC32C";
      if (bad.empty() && (ack[1] != 0 || !AllZeroBytes(ack, 12, 5))) bad = "ACK with reserved bits set";
      if (bad.empty() && Get16(ack + 2) != expected) {
        bad = "ACK for tag " + std::to_string(Get16(ack + 2)) + ", expected " + std::to_string(expected);
      }
      if (!bad.empty()) {
        problem_ = "protocol error: " + bad;
        return;
      }
      uint8_t status = ack[4];
      if (status == kAckOk) {
        ackOutcomes_[k] = kAckedOk;
      } else {
        ackOutcomes_[k] = status == kAckNoSpace ? -ENOSPC : -EIO;
        if (problem_.empty()) problem_ = "the peer could not write region data (ACK status " + std::to_string(status) + ")";
      }
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Int32Array results = results_.Value().As<Napi::Int32Array>();
    for (size_t i = 0; i < outcomes_.size() && i < results.ElementLength(); i++) results[i] = outcomes_[i];
    Napi::Int32Array ackResults = ackResults_.Value().As<Napi::Int32Array>();
    for (size_t k = 0; k < ackOutcomes_.size() && k < ackResults.ElementLength(); k++) ackResults[k] = ackOutcomes_[k];
    Napi::Value problem = problem_.empty() ? env.Null() : Napi::String::New(env, problem_);
    Callback().Call({problem, Napi::Number::New(env, static_cast<double>(sentCount_))});
  }

 private:
  std::shared_ptr<Store> store_;
  int fd_;
  uint8_t* data_;
  std::vector<std::pair<uint64_t, uint32_t>> regions_;
  uint64_t firstSeq_;
  uint64_t epoch_;
  int timeoutMs_;
  std::vector<int32_t> outcomes_;
  uint64_t ackFirstSeq_;
  std::vector<int32_t> ackOutcomes_;
  size_t sentCount_ = 0;
  std::string problem_;
  Napi::ObjectReference buffer_;
  Napi::ObjectReference results_;
  Napi::ObjectReference ackResults_;
};

// ---- receiver ----

// Serves the channel on its pool thread alone: reads a write, checks all of it, writes it, and
// ACKs it. ACKs are held back while the next write is already waiting in the socket (up to
// kAckBatchMax), and sent before the thread would block. One thread rather than a reader and a
// writer: on a machine with few CPUs, handing each write from one thread to another cost more
// (a wake-up that waits for a CPU) than it overlapped (docs/bench.md).
class ResyncReceiveWorker : public Napi::AsyncWorker {
 public:
  ResyncReceiveWorker(Napi::Function done, std::shared_ptr<Store> store, int fd, Napi::Object buffer, uint8_t* data,
                      size_t capacity, uint64_t volumeBytes, uint64_t epoch, Napi::Float64Array counters)
      : Napi::AsyncWorker(done, "blockmirror:resyncReceive"),
        store_(std::move(store)),
        fd_(fd),
        data_(data),
        capacity_(capacity),
        volumeBytes_(volumeBytes),
        epoch_(epoch),
        counters_(counters.Data()) {
    buffer_ = Napi::Persistent(buffer);
    countersRef_ = Napi::Persistent(counters.As<Napi::Object>());
  }

  void Execute() override {
    int rc = SetBlocking(fd_);
    if (rc != 0) {
      reason_ = "setting up the channel socket: " + ErrnoText(-rc);
      return;
    }
    acks_.reserve(kAckBatchMax * kHeadBytes);
    uint64_t expectSeq = 1;
    for (;;) {
      // WRITE_NOTIFY and WRITE_META always travel together on the channel: one read for both when
      // they are there; the head is checked before waiting for more.
      uint8_t heads[kWriteHeadsBytes];
      size_t have = 0;
      rc = ReadHead(heads, &have);
      if (rc == 1) {
        clean_ = true;
        reason_ = "the primary closed the channel";
        break;
      }
      if (rc != 0) {
        if (reason_.empty()) reason_ = "receiving: " + ErrnoText(-rc);
        break;
      }
      const uint8_t* head = heads;
      const uint8_t* meta = heads + kHeadBytes;
      std::string bad = CheckNotify(head, expectSeq);
      if (bad.empty() && have < kWriteHeadsBytes) {
        rc = ReadAll(fd_, heads + have, kWriteHeadsBytes - have);
        if (rc != 0) {
          reason_ = "receiving: " + ErrnoText(-rc);
          break;
        }
      }
      if (bad.empty()) bad = CheckMeta(meta, Get16(head + 2));
      if (!bad.empty()) {
        reason_ = "protocol error: " + bad + "; nothing written";
        break;
      }
      const uint8_t* body = meta + kHeadBytes;
      uint16_t tag = Get16(head + 2);
      bool fua = (head[1] & kFlagFua) != 0;
      uint64_t offset = Get64(body);
      uint32_t length = Get32(body + 8);
      rc = ReadAll(fd_, data_, length);
      if (rc != 0) {
        reason_ = "receiving: " + ErrnoText(-rc);
        break;
      }
      if (Crc32c(data_, length, 0) != Get32(body + 12)) {
        reason_ = "protocol error: bad payload CRC32C of the resync write at " + std::to_string(offset) + "; nothing written";
        break;
      }
      expectSeq++;
      rc = store_->io().Write(data_, length, offset, fua);
      if (rc == 0) {
        // Aligned 8-byte stores: the JS thread reads whole values in status.
        __atomic_store_n(reinterpret_cast<uint64_t*>(&counters_[0]), Bits(counters_[0] + 1), __ATOMIC_RELAXED);
        __atomic_store_n(reinterpret_cast<uint64_t*>(&counters_[1]), Bits(counters_[1] + length), __ATOMIC_RELAXED);
      } else {
        failedWrites_++;
      }
      size_t at = acks_.size();
      acks_.resize(at + kHeadBytes);
      EncodeAck(acks_.data() + at, tag, rc == 0 ? kAckOk : rc == -ENOSPC ? kAckNoSpace : kAckIoError);
      if (acks_.size() >= kAckBatchMax * kHeadBytes && !SendAcks()) break;
    }
    // ACKs of writes done before the end still go out (the primary may be waiting for them).
    if (!acks_.empty()) SendAcks();
  }

  void OnOK() override {
    Napi::Env env = Env();
    close(fd_);
    Callback().Call({Napi::String::New(env, reason_), Napi::Boolean::New(env, clean_),
                     Napi::Number::New(env, static_cast<double>(failedWrites_))});
  }

 private:
  // At least the next write's head, and its WRITE_META too when it is already in the socket
  // (*have: the bytes read). Before the read would block, the held ACKs go out. 0, -errno, or 1
  // for a clean end before the first byte.
  int ReadHead(uint8_t* heads, size_t* have) {
    ssize_t got;
    do {
      got = recv(fd_, heads, kWriteHeadsBytes, MSG_DONTWAIT);
    } while (got < 0 && errno == EINTR);
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    *have = got > 0 ? static_cast<size_t>(got) : 0;
    if (*have >= kHeadBytes) return 0;
    if (!acks_.empty() && !SendAcks()) return -EPIPE;
    if (got == 0) return 1;
    int rc = ReadAll(fd_, heads + *have, kHeadBytes - *have, *have == 0);
    if (rc == 0) *have = kHeadBytes;
    return rc;
  }

  static uint64_t Bits(double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
  }

  bool SendAcks() {
    struct iovec iov = {acks_.data(), acks_.size()};
    int rc = WriteAll(fd_, &iov, 1);
    acks_.clear();
    if (rc != 0) {
      if (reason_.empty()) reason_ = "sending ACKs: " + ErrnoText(-rc);
      clean_ = false;
      return false;
    }
    return true;
  }

  std::string CheckNotify(const uint8_t* head, uint64_t expectSeq) const {
    std::string bad = HeadProblem(head, kTypeWriteNotify, "WRITE_NOTIFY");
    if (!bad.empty()) return bad;
    if (Get32(head + 12) != Crc32c(head, kHeadCrcCovered, 0)) return "WRITE_NOTIFY with a bad CRC32C";
    uint8_t flags = head[1];
    if ((flags & ~(kFlagFua | kFlagResync)) != 0) return "WRITE_NOTIFY with reserved flag bits set";
    if ((flags & kFlagResync) == 0) return "a write without the RESYNC flag on the resync channel";
    uint64_t seq = Get64(head + 4);
    if (seq != expectSeq) return "WRITE_NOTIFY seq " + std::to_string(seq) + ", expected " + std::to_string(expectSeq);
    return "";
  }

  std::string CheckMeta(const uint8_t* meta, uint16_t tag) const {
    std::string bad = HeadProblem(meta, kTypeWriteMeta, "WRITE_META");
    if (!bad.empty()) return bad;
    if (meta[1] != 0) return "WRITE_META with flag bits set";
    if (Get16(meta + 2) != tag) return "WRITE_META tag differs from its WRITE_NOTIFY tag";
    if (Get32(meta + 4) != kExtentBodyBytes) return "WRITE_META body length " + std::to_string(Get32(meta + 4)) + ", expected 24";
    if (!AllZeroBytes(meta, 12, 8)) return "WRITE_META reserved head bytes 8..11 are not zero";
    const uint8_t* body = meta + kHeadBytes;
    if (Get32(meta + 12) != Crc32c(body, kExtentBodyBytes, Crc32c(meta, kHeadCrcCovered, 0))) return "WRITE_META with a bad CRC32C";
    uint64_t offset = Get64(body);
    uint32_t length = Get32(body + 8);
    uint64_t epoch = Get64(body + 16);
    if (epoch != epoch_) return "write carries epoch " + std::to_string(epoch) + ", the connection's epoch is " + std::to_string(epoch_);
    size_t maxLength = std::min<uint64_t>(kWritePayloadBytesMax, capacity_);
    if (length < 1 || length > maxLength) {
      return "resync write length " + std::to_string(length) + " not in 1.." + std::to_string(maxLength);
    }
    if (offset > volumeBytes_ || length > volumeBytes_ - offset) {
      return "write " + std::to_string(offset) + "+" + std::to_string(length) + " beyond the volume (" + std::to_string(volumeBytes_) + " bytes)";
    }
    return "";
  }

  std::shared_ptr<Store> store_;
  int fd_;
  uint8_t* data_;
  size_t capacity_;
  uint64_t volumeBytes_;
  uint64_t epoch_;
  double* counters_;
  bool clean_ = false;
  double failedWrites_ = 0;
  std::string reason_;
  std::vector<uint8_t> acks_;
  Napi::ObjectReference buffer_;
  Napi::ObjectReference countersRef_;
};

}  // namespace

Napi::Value ResyncSendBatch(const Napi::CallbackInfo& info, const std::shared_ptr<Store>& store) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t capacity = 0;
  uint64_t epoch = 0;
  if (info.Length() < 10 || !IsFd(info[0]) || !info[1].IsBuffer() || !GetBytes(info[1], &data, &capacity) ||
      !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      !IsIntegerInRange(info[3], 1, kJsSafeIntegerMax) || !GetEpoch(info[4], &epoch) ||
      !IsIntegerInRange(info[5], 0, 3600000) || !info[6].IsTypedArray() ||
      info[6].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !IsIntegerInRange(info[7], 1, kJsSafeIntegerMax) ||
      !info[8].IsTypedArray() || info[8].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      !info[9].IsFunction()) {
    ThrowArgError(env, "resyncSend(fd, buffer, regions: Float64Array, firstSeq, epoch: bigint, timeoutMs, results: Int32Array, ackFirstSeq, ackResults: Int32Array, done) expected");
    return env.Undefined();
  }
  Napi::Float64Array list = info[2].As<Napi::Float64Array>();
  Napi::Int32Array results = info[6].As<Napi::Int32Array>();
  size_t count = list.ElementLength() / 2;
  if (list.ElementLength() % 2 != 0 || count > 65536 || results.ElementLength() < count) {
    ThrowArgError(env, "resyncSend: regions holds offset,length pairs (at most 65536), results one slot per region");
    return env.Undefined();
  }
  std::vector<std::pair<uint64_t, uint32_t>> regions;
  regions.reserve(count);
  for (size_t i = 0; i < count; i++) {
    double offset = list[2 * i];
    double length = list[2 * i + 1];
    if (!(offset >= 0 && offset <= kJsSafeIntegerMax && length >= 1 && length <= static_cast<double>(capacity) &&
          length <= static_cast<double>(kWritePayloadBytesMax))) {
      ThrowArgError(env, "resyncSend: region " + std::to_string(i) + " has a bad offset or a length beyond the buffer");
      return env.Undefined();
    }
    regions.emplace_back(static_cast<uint64_t>(offset), static_cast<uint32_t>(length));
  }
  if (store->closed()) {
    ThrowErrno(env, EBADF, "resyncSend", "store closed");
    return env.Undefined();
  }
  Napi::Int32Array ackResults = info[8].As<Napi::Int32Array>();
  if (ackResults.ElementLength() > 65536) {
    ThrowArgError(env, "resyncSend: at most 65536 ACKs per call");
    return env.Undefined();
  }
  auto* worker = new ResyncSendWorker(info[9].As<Napi::Function>(), store, info[0].As<Napi::Number>().Int32Value(),
                                      info[1].As<Napi::Object>(), data, std::move(regions),
                                      static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value()), epoch,
                                      info[5].As<Napi::Number>().Int32Value(), results,
                                      static_cast<uint64_t>(info[7].As<Napi::Number>().Int64Value()),
                                      ackResults.ElementLength(), ackResults);
  worker->Queue();
  return env.Undefined();
}

Napi::Value ResyncReceive(const Napi::CallbackInfo& info, const std::shared_ptr<Store>& store) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t capacity = 0;
  uint64_t epoch = 0;
  if (info.Length() < 6 || !IsFd(info[0]) || !info[1].IsBuffer() || !GetBytes(info[1], &data, &capacity) ||
      !IsIntegerInRange(info[2], 0, kJsSafeIntegerMax) || !GetEpoch(info[3], &epoch) || !info[4].IsTypedArray() ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[4].As<Napi::Float64Array>().ElementLength() < 2 || !info[5].IsFunction()) {
    ThrowArgError(env, "resyncReceive(fd, buffer, volumeBytes, epoch: bigint, counters: Float64Array(2), done) expected");
    return env.Undefined();
  }
  if (store->closed()) {
    ThrowErrno(env, EBADF, "resyncReceive", "store closed");
    return env.Undefined();
  }
  auto* worker = new ResyncReceiveWorker(info[5].As<Napi::Function>(), store, info[0].As<Napi::Number>().Int32Value(),
                                         info[1].As<Napi::Object>(), data, capacity,
                                         static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()), epoch,
                                         info[4].As<Napi::Float64Array>());
  worker->Queue();
  return env.Undefined();
}

namespace {

// The fd argument of a one-fd call, or -1 with a JS exception.
int FdArgument(const Napi::CallbackInfo& info, const char* usage) {
  if (info.Length() < 1 || !IsFd(info[0])) {
    ThrowArgError(info.Env(), usage);
    return -1;
  }
  return info[0].As<Napi::Number>().Int32Value();
}

}  // namespace

Napi::Value ShutdownSocket(const Napi::CallbackInfo& info) {
  int fd = FdArgument(info, "shutdownSocket(fd) expected");
  if (fd >= 0) shutdown(fd, SHUT_RDWR);  // ENOTCONN after the peer left is fine
  return info.Env().Undefined();
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = FdArgument(info, "closeFd(fd) expected");
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

Napi::Value EncodeResyncWriteHeads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t epoch = 0;
  if (info.Length() < 6 || !IsIntegerInRange(info[0], 0, 0xffff) || !IsIntegerInRange(info[1], 1, kJsSafeIntegerMax) ||
      !IsIntegerInRange(info[2], 0, kJsSafeIntegerMax) || !IsIntegerInRange(info[3], 1, 0xffffffff) ||
      !IsIntegerInRange(info[4], 0, 0xffffffff) || !GetEpoch(info[5], &epoch)) {
    ThrowArgError(env, "encodeResyncWriteHeads(tag, seq, offset, length, payloadCrc, epoch: bigint) expected");
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, kWriteHeadsBytes);
  EncodeWriteHeads(out.Data(), static_cast<uint16_t>(info[0].As<Napi::Number>().Uint32Value()),
                   static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()),
                   static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()), info[3].As<Napi::Number>().Uint32Value(),
                   info[4].As<Napi::Number>().Uint32Value(), epoch);
  return out;
}

}  // namespace blockmirror
