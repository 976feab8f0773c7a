#include "resync_sender.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "crc32c.h"
#include "errors.h"
#include "js_args.h"
#include "resync_wire.h"
#include "thread_signals.h"
#include "thread_name.h"

namespace blockmirror {

using namespace resync_wire;

ResyncSender::~ResyncSender() {
  if (thread_.joinable()) thread_.join();
  if (wakeFd_ >= 0) close(wakeFd_);
  if (fd_ >= 0) close(fd_);
}

bool ResyncSender::Start(Napi::Env env, Napi::Object buffer, Napi::Function onSettled, Napi::Function onEnd,
                         std::string* error) {
  wakeFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeFd_ < 0) {
    *error = "eventfd: " + ErrnoText(errno);
    return false;
  }
  int rc = SetBlocking(fd_);
  if (rc == 0 && timeoutMs_ > 0) {
    struct timeval tv = {timeoutMs_ / 1000, (timeoutMs_ % 1000) * 1000};
    if (setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) rc = -errno;
  }
  if (rc != 0) {
    *error = "setting up the channel socket: " + ErrnoText(-rc);
    return false;
  }
  SetSocketBuffer(fd_, SO_SNDBUF);
  // The channel holds the event loop open until onEnd has run, like a socket.
  wakeup_ = JsWakeup::Create(
      env, "blockmirror.resyncSender", [this](napi_env e) { OnWake(e); }, true, shared_from_this());
  if (!wakeup_) {
    *error = "creating the wake-up of the JS thread failed";
    return false;
  }
  buffer_ = Napi::Persistent(buffer);
  onSettled_ = Napi::Persistent(onSettled);
  onEnd_ = Napi::Persistent(onEnd);
  try {
    thread_ = std::thread([this] { Main(); });
  } catch (const std::system_error& e) {
    *error = "starting the sender thread: " + ErrnoText(e.code().value());
    wakeup_->Release();
    return false;
  }
  return true;
}

void ResyncSender::Push(const std::vector<Run>& runs) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closeRequested_ || ended_) return;  // JS fails them when onEnd reports the end
    queued_.insert(queued_.end(), runs.begin(), runs.end());
    if (!waiting_) return;  // a busy thread takes them from the queue before it waits
  }
  uint64_t one = 1;
  ssize_t ignored = write(wakeFd_, &one, sizeof one);
  (void)ignored;  // a full eventfd counter still wakes the thread
}

void ResyncSender::Close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closeRequested_ || ended_) return;
    closeRequested_ = true;
  }
  shutdown(fd_, SHUT_RDWR);  // a blocked send or poll returns at once
  uint64_t one = 1;
  ssize_t ignored = write(wakeFd_, &one, sizeof one);
  (void)ignored;
}

void ResyncSender::StopForTeardown() {
  Close();
  if (thread_.joinable()) thread_.join();
}

void ResyncSender::Fail(const std::string& problem) {
  std::lock_guard<std::mutex> lock(mutex_);
  // What goes wrong after a close (the socket shut down under a send) is the close, not a problem.
  if (problem_.empty() && !closeRequested_) problem_ = problem;
}

void ResyncSender::Main() {
  NameThisThread("bm-resync-send");
  BlockAsyncSignalsInThisThread();
  for (;;) {
    if (!ReadAcks()) break;
    SettleFront();
    Run run{};
    bool have = false;
    bool closing = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closing = closeRequested_;
      if (!closing && !problem_.empty()) break;
      if (!closing && !queued_.empty()) {
        run = queued_.front();
        queued_.pop_front();
        have = true;
      }
      // About to wait: a push from now on must wake the thread.
      waiting_ = !have && !closing;
    }
    if (closing) break;
    if (have) {
      if (!SendRun(run)) break;
      continue;
    }
    // Nothing to send: wait for a push or a close, and for ACKs while any are due.
    struct pollfd fds[2] = {{wakeFd_, POLLIN, 0}, {fd_, POLLIN, 0}};
    bool acksDue = !awaiting_.empty();
    int rc = poll(fds, acksDue ? 2 : 1, acksDue && timeoutMs_ > 0 ? timeoutMs_ : -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      Fail("waiting for ACKs: " + ErrnoText(errno));
      break;
    }
    if (rc == 0) {
      Fail("no ACK from the secondary within " + std::to_string(timeoutMs_) + " ms");
      break;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t count;
      ssize_t ignored = read(wakeFd_, &count, sizeof count);
      (void)ignored;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    waiting_ = false;
  }
  SettleFront();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ended_ = true;
  }
  wakeup_->Signal();
}

bool ResyncSender::SendRun(const Run& run) {
  int rc = store_->io().Read(data_, run.length, run.offset);
  if (rc != 0) {
    Fail("reading " + std::to_string(run.length) + " bytes at " + std::to_string(run.offset) + ": " + ErrnoText(-rc));
    return false;
  }
  if (AllZeroPayload(data_, run.length)) {
    order_.push_back(kZero);
    SettleFront();
    return true;
  }
  uint64_t seq = nextSeq_++;
  uint8_t heads[kWriteHeadsBytes];
  EncodeWriteHeads(heads, static_cast<uint16_t>(seq), seq, run.offset, run.length, Crc32c(data_, run.length, 0), epoch_);
  struct iovec iov[2] = {{heads, kWriteHeadsBytes}, {data_, run.length}};
  awaiting_.push_back(orderBase_ + order_.size());
  order_.push_back(0);
  rc = WriteAll(fd_, iov, 2);
  if (rc != 0) {
    Fail(rc == -EAGAIN ? "no progress sending for " + std::to_string(timeoutMs_) + " ms" : "sending: " + ErrnoText(-rc));
    return false;
  }
  return true;
}

// Every ACK already received, without blocking. False once the channel failed.
bool ResyncSender::ReadAcks() {
  for (;;) {
    ssize_t got = recv(fd_, ackBytes_ + ackHave_, sizeof ackBytes_ - ackHave_, MSG_DONTWAIT);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      Fail("receiving ACKs: " + ErrnoText(errno));
      return false;
    }
    if (got == 0) {
      Fail("the secondary closed the channel");
      return false;
    }
    ackHave_ += static_cast<size_t>(got);
    size_t used = 0;
    for (; ackHave_ - used >= kHeadBytes; used += kHeadBytes) {
      if (!ApplyAck(ackBytes_ + used)) return false;
    }
    memmove(ackBytes_, ackBytes_ + used, ackHave_ - used);
    ackHave_ -= used;
  }
}

bool ResyncSender::ApplyAck(const uint8_t* ack) {
  std::string bad = HeadProblem(ack, kTypeAck, "ACK");
  if (bad.empty() && Get32(ack + 12) != Crc32c(ack, kHeadCrcCovered, 0)) bad = "ACK with a bad CRC32C";
  if (bad.empty() && (ack[1] != 0 || !AllZeroBytes(ack, 12, 5))) bad = "ACK with reserved bits set";
  if (bad.empty() && awaiting_.empty()) bad = "ACK for tag " + std::to_string(Get16(ack + 2)) + " with no write awaiting one";
  uint16_t expected = static_cast<uint16_t>(nextSeq_ - awaiting_.size());
  if (bad.empty() && Get16(ack + 2) != expected) {
    bad = "ACK for tag " + std::to_string(Get16(ack + 2)) + ", expected " + std::to_string(expected);
  }
  if (!bad.empty()) {
    Fail("protocol error: " + bad);
    return false;
  }
  size_t position = awaiting_.front() - orderBase_;
  awaiting_.pop_front();
  uint8_t status = ack[4];
  if (status == kAckOk) {
    order_[position] = kAcked;
    return true;
  }
  order_[position] = status == kAckNoSpace ? -ENOSPC : -EIO;
  Fail("the peer could not write region data (ACK status " + std::to_string(status) + ")");
  return false;
}

// Hand the outcomes settled at the front of the queue order to JS.
void ResyncSender::SettleFront() {
  size_t ready = 0;
  while (ready < order_.size() && order_[ready] != 0) ready++;
  if (ready == 0) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    settled_.insert(settled_.end(), order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(ready));
  }
  order_.erase(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(ready));
  orderBase_ += ready;
  wakeup_->Signal();
}

void ResyncSender::OnWake(napi_env rawEnv) {
  Napi::Env env(rawEnv);
  Napi::HandleScope scope(env);
  std::vector<int32_t> outcomes;
  bool ended = false;
  std::string problem;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    outcomes.swap(settled_);
    ended = ended_;
    problem = problem_;
  }
  CallbackScope callbacks(StateOf(env));
  if (!outcomes.empty() && !onSettled_.IsEmpty()) {
    Napi::Int32Array array = Napi::Int32Array::New(env, outcomes.size());
    memcpy(array.Data(), outcomes.data(), outcomes.size() * sizeof(int32_t));
    onSettled_.Call({array});
  }
  if (!ended || endDelivered_) return;
  endDelivered_ = true;
  if (thread_.joinable()) thread_.join();
  close(fd_);
  fd_ = -1;
  close(wakeFd_);
  wakeFd_ = -1;
  Napi::FunctionReference onEnd = std::move(onEnd_);
  onSettled_.Reset();
  buffer_.Reset();
  wakeup_->Release();
  onEnd.Call({problem.empty() ? env.Null() : Napi::String::New(env, problem)});
}

// ---- JS surface ----

namespace {

class ResyncSenderWrap : public Napi::ObjectWrap<ResyncSenderWrap> {
 public:
  explicit ResyncSenderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ResyncSenderWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) ThrowArgError(info.Env(), "not constructible from JavaScript");
  }
  std::shared_ptr<ResyncSender> core;
  size_t capacity = 0;

  Napi::Value Push(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      ThrowArgError(env, "push(runs: Float64Array of offset, length pairs) expected");
      return env.Undefined();
    }
    Napi::Float64Array list = info[0].As<Napi::Float64Array>();
    if (list.ElementLength() % 2 != 0) {
      ThrowArgError(env, "push: runs holds offset, length pairs");
      return env.Undefined();
    }
    std::vector<ResyncSender::Run> runs;
    runs.reserve(list.ElementLength() / 2);
    for (size_t i = 0; i < list.ElementLength(); i += 2) {
      double offset = list[i];
      double length = list[i + 1];
      if (!(offset >= 0 && offset <= kJsSafeIntegerMax && offset == static_cast<double>(static_cast<uint64_t>(offset)) &&
            length >= 1 && length <= static_cast<double>(capacity) && length <= static_cast<double>(kWritePayloadBytesMax) &&
            length == static_cast<double>(static_cast<uint32_t>(length)))) {
        ThrowArgError(env, "push: run " + std::to_string(i / 2) + " has a bad offset or a length beyond the buffer");
        return env.Undefined();
      }
      runs.push_back({static_cast<uint64_t>(offset), static_cast<uint32_t>(length)});
    }
    core->Push(runs);
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    core->Close();
    return info.Env().Undefined();
  }
};

}  // namespace

void InitResyncSenderClass(Napi::Env env, AddonState& state) {
  Napi::Function cls = ResyncSenderWrap::DefineClass(env, "NativeResyncSender",
                                                     {ResyncSenderWrap::InstanceMethod("push", &ResyncSenderWrap::Push),
                                                      ResyncSenderWrap::InstanceMethod("close", &ResyncSenderWrap::Close)});
  state.resyncSenderClass = Napi::Persistent(cls);
}

Napi::Value OpenResyncSender(const Napi::CallbackInfo& info, const std::shared_ptr<Store>& store) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t capacity = 0;
  uint64_t epoch = 0;
  if (info.Length() < 6 || !IsFd(info[0]) || !info[1].IsBuffer() || !GetBytes(info[1], &data, &capacity) || capacity == 0 ||
      !GetUint64BigInt(info[2], &epoch) || !IsIntegerInRange(info[3], 0, 3600000) || !info[4].IsFunction() ||
      !info[5].IsFunction()) {
    ThrowArgError(env, "openResyncSender(fd, buffer, epoch: bigint, timeoutMs, onSettled, onEnd) expected");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (!AlignBuffer(&data, &capacity)) {
    close(fd);
    ThrowArgError(env, "openResyncSender: the buffer holds no whole page");
    return env.Undefined();
  }
  auto core = std::make_shared<ResyncSender>(store, fd, data, capacity, epoch, info[3].As<Napi::Number>().Int32Value());
  std::string error;
  if (!core->Start(env, info[1].As<Napi::Object>(), info[4].As<Napi::Function>(), info[5].As<Napi::Function>(), &error)) {
    ThrowErrno(env, EIO, "openResyncSender", error);
    return env.Undefined();
  }
  AddonState& state = StateOf(env);
  state.registry->Add(core);
  Napi::Object object = state.resyncSenderClass.New({Napi::External<void>::New(env, nullptr)});
  ResyncSenderWrap* wrap = ResyncSenderWrap::Unwrap(object);
  wrap->core = core;
  wrap->capacity = capacity;
  return object;
}

}  // namespace blockmirror
