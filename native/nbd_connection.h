// Native side of one NBD transmission phase: a reader thread parsing requests into pool slots, a
// batched hand-off to JS, and a nonblocking, order-preserving reply path.
#pragma once

#include <napi.h>
#include <sys/uio.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "addon_state.h"
#include "buffer_pool.h"
#include "js_wakeup.h"
#include "kernel_abi.h"
#include "logger.h"

namespace blockmirror {

// Requests parsed but not yet completed by JS, per connection; the reader waits above this.
constexpr size_t kInFlightRequestsMax = 4096;
// How often blocked reader/writer threads re-check for stop while waiting in poll().
constexpr int kSocketPollIntervalMs = 200;
// Replies gathered into one sendmsg() by the writer.
constexpr size_t kReplyIovecsMax = 64;
// After a request without payload the reader asks for up to this many headers in one recv (READs
// come in runs); after a WRITE it asks for exactly one header, read together with the payload.
constexpr size_t kHeadersPerReceiveMax = 16;

enum class EndReason { Disconnect, Eof, Protocol, Error, Closed };

class NbdConnection : public Stoppable, public DeferredFlush, public std::enable_shared_from_this<NbdConnection> {
 public:
  struct Options {
    int fd = -1;  // already dup()ed; owned by the connection
    uint32_t payloadBytesMax = 0;
    std::vector<uint8_t> initialBytes;
    std::string name;
  };

  NbdConnection(Options options, BufferPool* pool, std::shared_ptr<Logger> logger);
  ~NbdConnection() override;

  // JS thread: create the wake-up, keep the callbacks, start threads. False + errno on failure.
  bool Start(Napi::Env env, Napi::Function onBatch, Napi::Function onClose, int* errnum);
  // JS thread: reply for `tag` and release its buffer. False (with a JS exception) for an unknown tag.
  bool Complete(Napi::Env env, uint32_t tag, uint32_t nbdError);
  // JS thread: end with reason 'closed', join threads, close the fd; onClose follows asynchronously.
  void Close();
  Napi::Object Stats(Napi::Env env);
  void StopForTeardown() override;
  // JS thread: send the replies Complete() held back inside a CallbackScope.
  void FlushDeferred() override;

 private:
  enum class ReadStatus { Ok, Eof, Error, Stopped };

  struct Request {
    bool active = false;
    bool delivered = false;
    uint16_t type = 0;
    uint16_t flags = 0;
    uint64_t cookie = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
    PayloadBuffer payload;
  };

  struct Reply {
    nbd::WireSimpleReply header;
    size_t payloadBytes = 0;
    PayloadBuffer payload;  // holds the slot until the reply bytes are written
    size_t sentBytes = 0;
    size_t totalBytes() const { return sizeof(header) + payloadBytes; }
  };

  enum class SendStatus { Drained, Again, Failed };

  void ReaderMain();
  void WriterMain();
  // Reader: one request; false when the reader must stop.
  bool ReadOneRequest();
  // Next request header: from the receive buffer, else one recv into it.
  ReadStatus ReadHeader(nbd::WireRequest* wire);
  // A write payload: buffered bytes first (a counted copy), then recvmsg() straight into dst with
  // the next request header as a second iovec, so a stream of writes costs one recv per request.
  ReadStatus ReadPayload(uint8_t* dst, size_t length);
  // One recvmsg(MSG_DONTWAIT); polls first when the previous receive drained the socket.
  ReadStatus Receive(struct iovec* iov, int iovCount, size_t* got);
  void EndAfterRead(ReadStatus status, const char* during);
  void WaitForDisconnectDrain();
  bool WaitForCapacity();
  bool AcquirePayload(uint32_t length, PayloadBuffer* out);

  // mutex_ held:
  void EndLocked(EndReason reason, const std::string& message);
  uint32_t AllocateTagLocked();
  void EnqueueReplyLocked(uint64_t cookie, uint32_t nbdError, PayloadBuffer payload, size_t payloadBytes);
  // Send queued replies unless another thread is sending or the writer owns the queue (then it
  // picks them up); hands the rest to the writer thread when the socket is full.
  void FlushLocked(std::unique_lock<std::mutex>& lock);
  // Become the one sender: sendmsg() runs with mutex_ released, so the reader never waits on a send.
  SendStatus SendQueuedLocked(std::unique_lock<std::mutex>& lock);

  void End(EndReason reason, const std::string& message);
  void JoinThreadsAndCloseFd();
  void OnWake(napi_env env);
  void DeliverBatch(Napi::Env env);
  void Log(LogLevel level, const std::string& message);

  Options options_;
  BufferPool* pool_;
  std::shared_ptr<Logger> logger_;
  std::shared_ptr<JsWakeup> wakeup_;
  Napi::FunctionReference onBatch_;  // JS thread only
  Napi::FunctionReference onClose_;  // JS thread only
  AddonState* state_ = nullptr;       // JS thread only: callback scopes of our environment
  bool flushDeferred_ = false;        // JS thread only: registered in state_->deferredFlushes
  std::thread reader_;
  std::thread writer_;
  // Reader thread only: bytes received past the current request (initially the negotiation's
  // leftover bytes), at rx_[rxStart_, rxEnd_).
  std::vector<uint8_t> rx_;
  size_t rxStart_ = 0;
  size_t rxEnd_ = 0;
  bool socketDrained_ = false;     // the last recv got less than it asked for
  bool previousWasWrite_ = true;   // a client that starts writing never has payload over-read

  std::mutex mutex_;
  std::condition_variable stateChanged_;  // in-flight count / reply queue / end
  std::condition_variable writerWanted_;  // replies queued / end
  std::atomic<bool> stop_{false};
  bool ended_ = false;
  bool closeDelivered_ = false;
  EndReason endReason_ = EndReason::Closed;
  std::string endMessage_;
  std::vector<Request> table_;  // indexed by tag
  std::vector<uint32_t> freeTags_;
  size_t inFlight_ = 0;
  std::vector<uint32_t> undelivered_;
  std::deque<Reply> replies_;  // element references stay valid across push_back (sender relies on it)
  bool sending_ = false;       // a thread is in sendmsg() on the front of replies_
  bool writerOwns_ = false;    // the socket was full: only the writer thread sends until drained
  int fd_;

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> payloadBytesIn_{0};
  std::atomic<uint64_t> payloadBytesOut_{0};
  std::atomic<uint64_t> copiedPayloadBytes_{0};
};

// JS: openConnection(options, onBatch, onClose) -> NativeNbdConnection.
Napi::Value OpenConnection(const Napi::CallbackInfo& info);
// Register the JS class backing NativeNbdConnection objects.
void InitConnectionClass(Napi::Env env, AddonState& state);

}  // namespace blockmirror
