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
#include "resync_wire.h"
#include "thread_name.h"

namespace blockmirror {

namespace {

using namespace resync_wire;

// ACKs the receiver holds back while more frames are already waiting in the socket.
constexpr size_t kAckBatchMax = 64;

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
    // A libuv pool thread: named for the channel's lifetime, then given its own name back.
    char poolName[16] = "";
    pthread_getname_np(pthread_self(), poolName, sizeof poolName);
    NameThisThread("bm-resync-recv");
    Receive();
    NameThisThread(poolName);
  }

  void Receive() {
    int rc = SetBlocking(fd_);
    if (rc != 0) {
      reason_ = "setting up the channel socket: " + ErrnoText(-rc);
      return;
    }
    SetSocketBuffer(fd_, SO_RCVBUF);
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

Napi::Value ResyncReceive(const Napi::CallbackInfo& info, const std::shared_ptr<Store>& store) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t capacity = 0;
  uint64_t epoch = 0;
  if (info.Length() < 6 || !IsFd(info[0]) || !info[1].IsBuffer() || !GetBytes(info[1], &data, &capacity) ||
      !IsIntegerInRange(info[2], 0, kJsSafeIntegerMax) || !GetUint64BigInt(info[3], &epoch) || !info[4].IsTypedArray() ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[4].As<Napi::Float64Array>().ElementLength() < 2 || !info[5].IsFunction()) {
    ThrowArgError(env, "resyncReceive(fd, buffer, volumeBytes, epoch: bigint, counters: Float64Array(2), done) expected");
    return env.Undefined();
  }
  if (!AlignBuffer(&data, &capacity)) {
    ThrowArgError(env, "resyncReceive: the buffer holds no whole page");
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
      !IsIntegerInRange(info[4], 0, 0xffffffff) || !GetUint64BigInt(info[5], &epoch)) {
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
