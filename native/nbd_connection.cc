#include "nbd_connection.h"

#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "errors.h"
#include "js_args.h"
#include "thread_signals.h"
#include "thread_name.h"

namespace blockmirror {

namespace {

const char* EndReasonName(EndReason reason) {
  switch (reason) {
    case EndReason::Disconnect: return "disconnect";
    case EndReason::Eof: return "eof";
    case EndReason::Protocol: return "protocol";
    case EndReason::Error: return "error";
    case EndReason::Closed: return "closed";
  }
  return "error";
}

bool IsPeerGone(int errnum) { return errnum == ECONNRESET || errnum == EPIPE || errnum == ENOTCONN; }

}  // namespace

NbdConnection::NbdConnection(Options options, BufferPool* pool, std::shared_ptr<Logger> logger)
    : options_(std::move(options)), pool_(pool), logger_(std::move(logger)), fd_(options_.fd) {
  // The negotiation's leftover bytes are the first received bytes; the buffer always has room
  // for a batch of headers after them.
  rx_.assign(options_.initialBytes.begin(), options_.initialBytes.end());
  rxEnd_ = rx_.size();
  rx_.resize(rx_.size() + sizeof(nbd::WireRequest) * kHeadersPerReceiveMax);
  options_.initialBytes.clear();
}

NbdConnection::~NbdConnection() {
  End(EndReason::Closed, "connection object destroyed");
  JoinThreadsAndCloseFd();
  // JS can no longer call complete(): give back what it never completed.
  for (Request& request : table_) request.payload.Release();
  for (Reply& reply : replies_) reply.payload.Release();
}

bool NbdConnection::Start(Napi::Env env, Napi::Function onBatch, Napi::Function onClose, int* errnum) {
  onBatch_ = Napi::Persistent(onBatch);
  onClose_ = Napi::Persistent(onClose);
  state_ = &StateOf(env);
  // An open connection holds the event loop open, like a socket.
  wakeup_ = JsWakeup::Create(
      env, "blockmirror.nbdConnection", [this](napi_env e) { OnWake(e); }, true, shared_from_this());
  if (!wakeup_) {
    *errnum = ENOMEM;
    return false;
  }
  try {
    writer_ = std::thread([this] { WriterMain(); });
    reader_ = std::thread([this] { ReaderMain(); });
  } catch (const std::system_error& e) {
    *errnum = e.code().value();
    End(EndReason::Error, "cannot start threads");
    JoinThreadsAndCloseFd();
    wakeup_->Release();
    return false;
  }
  return true;
}

void NbdConnection::Log(LogLevel level, const std::string& message) {
  logger_->Log(level, "nbd connection " + options_.name + ": " + message);
}

// ---- reader thread ----

void NbdConnection::ReaderMain() {
  NameThisThread("bm-nbd-read");
  BlockAsyncSignalsInThisThread();
  while (!stop_.load()) {
    if (!ReadOneRequest()) return;
  }
}

NbdConnection::ReadStatus NbdConnection::Receive(struct iovec* iov, int iovCount, size_t* got) {
  while (true) {
    if (stop_.load()) return ReadStatus::Stopped;
    if (socketDrained_) {
      // The last receive emptied the socket: wait here rather than spend a recv on EAGAIN.
      struct pollfd pfd = {fd_, POLLIN, 0};
      if (poll(&pfd, 1, kSocketPollIntervalMs) == 0) continue;
      socketDrained_ = false;
    }
    struct msghdr message = {};
    message.msg_iov = iov;
    message.msg_iovlen = static_cast<size_t>(iovCount);
    ssize_t n = recvmsg(fd_, &message, MSG_DONTWAIT);
    if (n > 0) {
      size_t asked = 0;
      for (int i = 0; i < iovCount; i++) asked += iov[i].iov_len;
      socketDrained_ = static_cast<size_t>(n) < asked;
      *got = static_cast<size_t>(n);
      return ReadStatus::Ok;
    }
    if (n == 0) return stop_.load() ? ReadStatus::Stopped : ReadStatus::Eof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      socketDrained_ = true;
      continue;
    }
    if (stop_.load()) return ReadStatus::Stopped;
    int errnum = errno;
    if (IsPeerGone(errnum)) return ReadStatus::Eof;
    Log(LogLevel::Error, "recv failed: " + ErrnoText(errnum));
    errno = errnum;
    return ReadStatus::Error;
  }
}

NbdConnection::ReadStatus NbdConnection::ReadHeader(nbd::WireRequest* wire) {
  while (rxEnd_ - rxStart_ < sizeof(*wire)) {
    size_t have = rxEnd_ - rxStart_;
    memmove(rx_.data(), rx_.data() + rxStart_, have);
    rxStart_ = 0;
    rxEnd_ = have;
    size_t want = previousWasWrite_ ? sizeof(*wire) : sizeof(*wire) * kHeadersPerReceiveMax;
    struct iovec iov = {rx_.data() + rxEnd_, std::max(want, sizeof(*wire)) - have};
    size_t got = 0;
    ReadStatus status = Receive(&iov, 1, &got);
    if (status != ReadStatus::Ok) return status;
    rxEnd_ += got;
  }
  memcpy(wire, rx_.data() + rxStart_, sizeof(*wire));
  rxStart_ += sizeof(*wire);
  if (rxStart_ == rxEnd_) rxStart_ = rxEnd_ = 0;
  return ReadStatus::Ok;
}

NbdConnection::ReadStatus NbdConnection::ReadPayload(uint8_t* dst, size_t length) {
  size_t buffered = std::min(length, rxEnd_ - rxStart_);
  if (buffered > 0) {
    memcpy(dst, rx_.data() + rxStart_, buffered);  // arrived with earlier headers: the one copy
    copiedPayloadBytes_ += buffered;
    AddCopiedPayloadBytes(buffered);
    rxStart_ += buffered;
    if (rxStart_ == rxEnd_) rxStart_ = rxEnd_ = 0;
  }
  size_t done = buffered;
  while (done < length) {
    // rx_ is empty here: whatever the payload leaves in the buffer cannot be more than one header.
    struct iovec iov[2] = {{dst + done, length - done}, {rx_.data(), sizeof(nbd::WireRequest)}};
    size_t got = 0;
    ReadStatus status = Receive(iov, 2, &got);
    if (status != ReadStatus::Ok) return status;
    if (got > length - done) {
      rxStart_ = 0;
      rxEnd_ = got - (length - done);
      got = length - done;
    }
    done += got;
  }
  return ReadStatus::Ok;
}

void NbdConnection::EndAfterRead(ReadStatus status, const char* during) {
  switch (status) {
    case ReadStatus::Eof: End(EndReason::Eof, std::string("client closed the connection while ") + during); break;
    case ReadStatus::Error: End(EndReason::Error, std::string("receive failed while ") + during); break;
    case ReadStatus::Ok:
    case ReadStatus::Stopped: break;
  }
}

bool NbdConnection::WaitForCapacity() {
  std::unique_lock<std::mutex> lock(mutex_);
  stateChanged_.wait(lock, [this] { return stop_.load() || inFlight_ < kInFlightRequestsMax; });
  return !stop_.load();
}

bool NbdConnection::AcquirePayload(uint32_t length, PayloadBuffer* out) {
  if (pool_ != nullptr && length <= pool_->slotBytes()) {
    int slot = pool_->Acquire(&stop_);  // blocks while every slot is in use: backpressure
    if (slot < 0) return false;
    out->pool = pool_;
    out->slot = slot;
    return true;
  }
  LargeBuffer* large = LargeBuffer::Allocate(length);
  if (large == nullptr) {
    Log(LogLevel::Error, "cannot allocate a " + std::to_string(length) + "-byte payload buffer");
    End(EndReason::Error, "out of memory for a payload buffer");
    return false;
  }
  out->large = large;
  return true;
}

bool NbdConnection::ReadOneRequest() {
  nbd::WireRequest wire;
  ReadStatus status = ReadHeader(&wire);
  if (status != ReadStatus::Ok) {
    EndAfterRead(status, "reading a request header");
    return false;
  }
  uint32_t magic = be32toh(wire.magic);
  uint16_t flags = be16toh(wire.flags);
  uint16_t type = be16toh(wire.type);
  uint64_t offset = be64toh(wire.offset);
  uint32_t length = be32toh(wire.length);
  previousWasWrite_ = type == nbd::kCmdWrite;
  if (magic != nbd::kRequestMagic) {
    char text[96];
    snprintf(text, sizeof(text), "bad request magic 0x%08x, disconnecting", magic);
    Log(LogLevel::Error, text);
    End(EndReason::Protocol, text);
    return false;
  }
  if (type == nbd::kCmdDisc) {
    WaitForDisconnectDrain();
    return false;
  }
  if (type == nbd::kCmdWrite && length > options_.payloadBytesMax) {
    std::string text = "write of " + std::to_string(length) + " bytes exceeds the maximum of " +
                       std::to_string(options_.payloadBytesMax) + ", disconnecting";
    Log(LogLevel::Error, text);
    End(EndReason::Protocol, text);
    return false;
  }
  // Refused natively with EINVAL: offsets JS cannot represent, reads longer than the maximum.
  bool refuse = offset >= nbd::kJsSafeOffsetLimit || (type == nbd::kCmdRead && length > options_.payloadBytesMax);
  bool needsPayload = length > 0 && (type == nbd::kCmdWrite || (type == nbd::kCmdRead && !refuse));
  if (!WaitForCapacity()) return false;
  PayloadBuffer payload;
  if (needsPayload && !AcquirePayload(length, &payload)) return false;
  if (type == nbd::kCmdWrite && length > 0) {
    status = ReadPayload(payload.data(), length);
    if (status != ReadStatus::Ok) {
      payload.Release();  // a partial request is never delivered
      EndAfterRead(status, "reading a write payload");
      return false;
    }
    payloadBytesIn_ += length;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (ended_) {
    payload.Release();
    return false;
  }
  requests_++;
  if (refuse) {
    payload.Release();
    EnqueueReplyLocked(wire.cookie, nbd::kErrInval, PayloadBuffer(), 0);
    FlushLocked(lock);
    return true;
  }
  uint32_t tag = AllocateTagLocked();
  Request& request = table_[tag];
  request.active = true;
  request.delivered = false;
  request.type = type;
  request.flags = flags;
  request.cookie = wire.cookie;  // kept in wire order: echoed verbatim
  request.offset = offset;
  request.length = length;
  request.payload = payload;
  inFlight_++;
  undelivered_.push_back(tag);
  lock.unlock();
  wakeup_->Signal();
  return true;
}

void NbdConnection::WaitForDisconnectDrain() {
  std::unique_lock<std::mutex> lock(mutex_);
  stateChanged_.wait(lock, [this] { return stop_.load() || (inFlight_ == 0 && replies_.empty()); });
  EndLocked(EndReason::Disconnect, "client sent NBD_CMD_DISC");
}

// ---- state (mutex_ held) ----

uint32_t NbdConnection::AllocateTagLocked() {
  if (!freeTags_.empty()) {
    uint32_t tag = freeTags_.back();
    freeTags_.pop_back();
    return tag;
  }
  table_.emplace_back();
  return static_cast<uint32_t>(table_.size() - 1);
}

void NbdConnection::EndLocked(EndReason reason, const std::string& message) {
  if (ended_) return;
  ended_ = true;
  endReason_ = reason;
  endMessage_ = message;
  stop_ = true;
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
  // Requests JS has not seen are dropped; delivered ones stay until JS completes them.
  for (uint32_t tag : undelivered_) {
    Request& request = table_[tag];
    request.payload.Release();
    request.active = false;
    freeTags_.push_back(tag);
    inFlight_--;
  }
  undelivered_.clear();
  if (!sending_) {  // else the sender drops them when it takes the lock back
    for (Reply& reply : replies_) reply.payload.Release();
    replies_.clear();
  }
  if (pool_ != nullptr) pool_->WakeAll();
  writerWanted_.notify_all();
  stateChanged_.notify_all();
  if (wakeup_) wakeup_->Signal();
}

void NbdConnection::End(EndReason reason, const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  EndLocked(reason, message);
}

void NbdConnection::EnqueueReplyLocked(uint64_t cookie, uint32_t nbdError, PayloadBuffer payload,
                                       size_t payloadBytes) {
  Reply reply;
  reply.header.magic = htobe32(nbd::kSimpleReplyMagic);
  reply.header.error = htobe32(nbdError);
  reply.header.cookie = cookie;
  reply.payload = payload;
  reply.payloadBytes = payloadBytes;
  replies_.push_back(reply);
}

void NbdConnection::FlushLocked(std::unique_lock<std::mutex>& lock) {
  if (sending_ || writerOwns_ || ended_ || replies_.empty()) return;
  if (SendQueuedLocked(lock) != SendStatus::Again) return;
  writerOwns_ = true;
  writerWanted_.notify_one();
}

NbdConnection::SendStatus NbdConnection::SendQueuedLocked(std::unique_lock<std::mutex>& lock) {
  sending_ = true;
  SendStatus status = SendStatus::Drained;
  while (!replies_.empty() && !ended_) {
    struct iovec iov[kReplyIovecsMax * 2];
    size_t iovCount = 0;
    for (size_t i = 0; i < replies_.size() && iovCount + 2 <= kReplyIovecsMax * 2; i++) {
      Reply& reply = replies_[i];
      size_t skip = reply.sentBytes;
      if (skip < sizeof(reply.header)) {
        iov[iovCount++] = {reinterpret_cast<uint8_t*>(&reply.header) + skip, sizeof(reply.header) - skip};
        skip = 0;
      } else {
        skip -= sizeof(reply.header);
      }
      if (reply.payloadBytes > skip) iov[iovCount++] = {reply.payload.data() + skip, reply.payloadBytes - skip};
    }
    struct msghdr message = {};
    message.msg_iov = iov;
    message.msg_iovlen = iovCount;
    // Only the sender touches the front replies_ and their payloads; others only push_back.
    lock.unlock();
    ssize_t sent = sendmsg(fd_, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    int errnum = errno;
    lock.lock();
    if (ended_) break;
    if (sent < 0) {
      if (errnum == EINTR) continue;
      if (errnum == EAGAIN || errnum == EWOULDBLOCK) {
        status = SendStatus::Again;
        break;
      }
      if (!IsPeerGone(errnum)) Log(LogLevel::Error, "send failed: " + ErrnoText(errnum));
      sending_ = false;  // EndLocked drops the queue
      EndLocked(IsPeerGone(errnum) ? EndReason::Eof : EndReason::Error, "sending a reply failed: " + ErrnoText(errnum));
      return SendStatus::Failed;
    }
    size_t remaining = static_cast<size_t>(sent);
    while (remaining > 0 && !replies_.empty()) {
      Reply& reply = replies_.front();
      size_t left = reply.totalBytes() - reply.sentBytes;
      if (remaining < left) {
        reply.sentBytes += remaining;
        remaining = 0;
        break;
      }
      remaining -= left;
      payloadBytesOut_ += reply.payloadBytes;
      reply.payload.Release();
      replies_.pop_front();
    }
  }
  sending_ = false;
  if (ended_) {
    for (Reply& reply : replies_) reply.payload.Release();
    replies_.clear();
    status = SendStatus::Failed;
  }
  stateChanged_.notify_all();
  return status;
}

// ---- writer thread: finishes replies the nonblocking direct send could not ----

void NbdConnection::WriterMain() {
  NameThisThread("bm-nbd-write");
  BlockAsyncSignalsInThisThread();
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    writerWanted_.wait(lock, [this] { return stop_.load() || writerOwns_; });
    if (stop_.load()) return;
    lock.unlock();
    struct pollfd pfd = {fd_, POLLOUT, 0};
    poll(&pfd, 1, kSocketPollIntervalMs);
    lock.lock();
    if (stop_.load()) return;
    if (SendQueuedLocked(lock) != SendStatus::Again) writerOwns_ = false;
  }
}

// ---- JS thread ----

bool NbdConnection::Complete(Napi::Env env, uint32_t tag, uint32_t nbdError) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (tag >= table_.size() || !table_[tag].active || !table_[tag].delivered) {
    lock.unlock();
    ThrowErrno(env, EINVAL, "complete", "(tag " + std::to_string(tag) + " is not an in-flight request)");
    return false;
  }
  Request& request = table_[tag];
  PayloadBuffer payload = request.payload;
  request.payload = PayloadBuffer();
  request.active = false;
  freeTags_.push_back(tag);
  inFlight_--;
  stateChanged_.notify_all();
  if (ended_) {
    payload.Release();
    return true;
  }
  bool sendsData = request.type == nbd::kCmdRead && nbdError == 0 && request.length > 0;
  if (!sendsData) payload.Release();
  EnqueueReplyLocked(request.cookie, nbdError, sendsData ? payload : PayloadBuffer(), sendsData ? request.length : 0);
  if (state_->callbackDepth > 0) {
    // Inside a batch or completion callback: one send for all of its replies when it returns.
    if (!flushDeferred_) {
      flushDeferred_ = true;
      state_->deferredFlushes.push_back(shared_from_this());
    }
    return true;
  }
  FlushLocked(lock);
  return true;
}

void NbdConnection::FlushDeferred() {
  flushDeferred_ = false;
  std::unique_lock<std::mutex> lock(mutex_);
  FlushLocked(lock);
}

void NbdConnection::Close() {
  End(EndReason::Closed, "close() called");
  JoinThreadsAndCloseFd();
}

void NbdConnection::StopForTeardown() { Close(); }

void NbdConnection::JoinThreadsAndCloseFd() {
  if (reader_.joinable()) reader_.join();
  if (writer_.joinable()) writer_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ >= 0 && stop_.load()) {
    close(fd_);
    fd_ = -1;
  }
}

void NbdConnection::OnWake(napi_env rawEnv) {
  Napi::Env env(rawEnv);
  Napi::HandleScope scope(env);
  DeliverBatch(env);
  if (env.IsExceptionPending()) {
    wakeup_->Signal();  // let the exception surface, then come back for the rest
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!ended_ || closeDelivered_) return;
    closeDelivered_ = true;
  }
  JoinThreadsAndCloseFd();
  Napi::Object end = Napi::Object::New(env);
  end.Set("reason", Napi::String::New(env, EndReasonName(endReason_)));
  end.Set("message", Napi::String::New(env, endMessage_));
  Napi::FunctionReference onClose = std::move(onClose_);
  onBatch_.Reset();
  wakeup_->Release();  // no callback after onClose; lets the event loop go
  onClose.Call({end});
}

void NbdConnection::DeliverBatch(Napi::Env env) {
  struct Row {
    uint32_t tag;
    Request request;
  };
  std::vector<Row> rows;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ended_ || undelivered_.empty()) return;
    rows.reserve(undelivered_.size());
    for (uint32_t tag : undelivered_) {
      table_[tag].delivered = true;
      rows.push_back(Row{tag, table_[tag]});
    }
    undelivered_.clear();
  }
  size_t count = rows.size();
  Napi::Float64Array fields = Napi::Float64Array::New(env, count * 6);
  double* out = fields.Data();
  bool anyLarge = false;
  for (size_t i = 0; i < count; i++) {
    const Request& request = rows[i].request;
    out[i * 6 + 0] = rows[i].tag;
    out[i * 6 + 1] = request.type;
    out[i * 6 + 2] = request.flags;
    out[i * 6 + 3] = static_cast<double>(request.offset);
    out[i * 6 + 4] = request.length;
    out[i * 6 + 5] = request.payload.slot;
    if (request.payload.large != nullptr) anyLarge = true;
  }
  Napi::Value largeBuffers = env.Null();
  if (anyLarge) {
    Napi::Array array = Napi::Array::New(env, count);
    for (size_t i = 0; i < count; i++) {
      LargeBuffer* large = rows[i].request.payload.large;
      array.Set(static_cast<uint32_t>(i), large != nullptr ? Napi::Value(large->ToJsBuffer(env)) : env.Null());
    }
    largeBuffers = array;
  }
  Napi::Object batch = Napi::Object::New(env);
  batch.Set("count", Napi::Number::New(env, static_cast<double>(count)));
  batch.Set("rows", fields);
  batch.Set("largeBuffers", largeBuffers);
  batches_++;
  CallbackScope scope(*state_);
  onBatch_.Call({batch});
}

Napi::Object NbdConnection::Stats(Napi::Env env) {
  size_t inFlight;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inFlight = inFlight_;
  }
  Napi::Object stats = Napi::Object::New(env);
  stats.Set("requests", Napi::Number::New(env, static_cast<double>(requests_.load())));
  stats.Set("batches", Napi::Number::New(env, static_cast<double>(batches_.load())));
  stats.Set("payloadBytesIn", Napi::Number::New(env, static_cast<double>(payloadBytesIn_.load())));
  stats.Set("payloadBytesOut", Napi::Number::New(env, static_cast<double>(payloadBytesOut_.load())));
  stats.Set("copiedPayloadBytes", Napi::Number::New(env, static_cast<double>(copiedPayloadBytes_.load())));
  stats.Set("inFlight", Napi::Number::New(env, static_cast<double>(inFlight)));
  return stats;
}

// ---- JS class ----

namespace {

class ConnectionWrap : public Napi::ObjectWrap<ConnectionWrap> {
 public:
  explicit ConnectionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ConnectionWrap>(info) {
    // Only native code constructs these (it passes a token); JS `new` would leave core unset.
    if (info.Length() != 1 || !info[0].IsExternal()) ThrowArgError(info.Env(), "not constructible from JavaScript");
  }
  std::shared_ptr<NbdConnection> core;

  Napi::Value Complete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !IsIntegerInRange(info[0], 0, 4294967295.0) ||
        !IsIntegerInRange(info[1], 0, 4294967295.0)) {
      ThrowArgError(env, "complete(tag, nbdError): unsigned 32-bit integers expected");
      return env.Undefined();
    }
    core->Complete(env, info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value());
    return env.Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    core->Close();
    return info.Env().Undefined();
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) { return core->Stats(info.Env()); }
};

}  // namespace

void InitConnectionClass(Napi::Env env, AddonState& state) {
  Napi::Function cls = ConnectionWrap::DefineClass(env, "NativeNbdConnection",
                                                   {
                                                       ConnectionWrap::InstanceMethod("complete", &ConnectionWrap::Complete),
                                                       ConnectionWrap::InstanceMethod("close", &ConnectionWrap::Close),
                                                       ConnectionWrap::InstanceMethod("stats", &ConnectionWrap::Stats),
                                                   });
  state.connectionClass = Napi::Persistent(cls);
}

Napi::Value OpenConnection(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction()) {
    ThrowArgError(env, "openConnection(options, onBatch, onClose) expected");
    return env.Undefined();
  }
  Napi::Object options = info[0].As<Napi::Object>();
  Napi::Value fdValue = options.Get("fd");
  Napi::Value maxValue = options.Get("payloadBytesMax");
  Napi::Value nameValue = options.Get("name");
  Napi::Value initialValue = options.Get("initialBytes");
  if (!IsIntegerInRange(fdValue, 0, 2147483647.0) || !IsIntegerInRange(maxValue, 1, 4294967295.0) ||
      !nameValue.IsString()) {
    ThrowArgError(env, "openConnection: options {fd, payloadBytesMax, name} invalid");
    return env.Undefined();
  }
  NbdConnection::Options parsed;
  if (!initialValue.IsUndefined() && !initialValue.IsNull()) {
    uint8_t* data = nullptr;
    size_t length = 0;
    if (!GetBytes(initialValue, &data, &length)) {
      ThrowArgError(env, "openConnection: initialBytes must be a Buffer");
      return env.Undefined();
    }
    parsed.initialBytes.assign(data, data + length);
  }
  parsed.payloadBytesMax = maxValue.As<Napi::Number>().Uint32Value();
  parsed.name = nameValue.As<Napi::String>().Utf8Value();
  int callerFd = fdValue.As<Napi::Number>().Int32Value();
  struct stat st;
  if (fstat(callerFd, &st) != 0) {
    ThrowErrno(env, errno, "fstat", "fd " + std::to_string(callerFd));
    return env.Undefined();
  }
  if (!S_ISSOCK(st.st_mode)) {
    ThrowErrno(env, ENOTSOCK, "openConnection", "fd " + std::to_string(callerFd));
    return env.Undefined();
  }
  parsed.fd = fcntl(callerFd, F_DUPFD_CLOEXEC, 0);
  if (parsed.fd < 0) {
    ThrowErrno(env, errno, "dup", "fd " + std::to_string(callerFd));
    return env.Undefined();
  }
  AddonState& state = StateOf(env);
  auto core = std::make_shared<NbdConnection>(std::move(parsed), state.pool, state.logger);
  int errnum = 0;
  if (!core->Start(env, info[1].As<Napi::Function>(), info[2].As<Napi::Function>(), &errnum)) {
    ThrowErrno(env, errnum, "openConnection");
    return env.Undefined();
  }
  state.registry->Add(core);
  Napi::Object object = state.connectionClass.New({Napi::External<void>::New(env, nullptr)});
  ConnectionWrap::Unwrap(object)->core = core;
  return object;
}

}  // namespace blockmirror
