// Resync channel, primary end (docs/wire-format.md section 8.2): one native thread per channel that
// streams the runs JS queues, for as long as the channel lives. For each run, in queue order, it
// reads the range from the store. An all-zero range is not sent. Any other range goes as
// WRITE_NOTIFY + WRITE_META + payload with the RESYNC flag. Between runs, and whenever it has
// nothing to send, it reads the ACKs that have arrived. Outcomes reach JS in queue order, a batch
// per wake-up.
//
// Why a thread of its own: the earlier design made one libuv pool call per 8 MiB batch, each
// sending its batch and then waiting for the previous batch's ACKs. On two CPUs every call cost two
// thread hand-offs (queue to pool, pool to callback) during which nothing was read or sent
// (docs/bench.md). A queue the thread drains on its own has no such pause.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "addon_state.h"
#include "js_wakeup.h"
#include "store.h"

namespace blockmirror {

class ResyncSender : public Stoppable, public std::enable_shared_from_this<ResyncSender> {
 public:
  struct Run {
    uint64_t offset;
    uint32_t length;
  };
  // Outcomes of a run, as delivered to JS (negative: -errno the peer reported; settled failed);
  // ResyncSendOutcome in src/native.ts is the TypeScript twin.
  static constexpr int32_t kAcked = 1;
  static constexpr int32_t kZero = 2;

  ResyncSender(std::shared_ptr<Store> store, int fd, uint8_t* data, size_t capacity, uint64_t epoch, int timeoutMs)
      : store_(std::move(store)), fd_(fd), data_(data), capacity_(capacity), epoch_(epoch), timeoutMs_(timeoutMs) {}
  ~ResyncSender() override;

  // JS thread: start the thread. False with *error set (nothing started). The sender owns fd from
  // construction: it closes it when the channel ends, or when it is destroyed after a failed start.
  bool Start(Napi::Env env, Napi::Object buffer, Napi::Function onSettled, Napi::Function onEnd, std::string* error);
  // JS thread: queue runs behind those queued before.
  void Push(const std::vector<Run>& runs);
  // JS thread: end the channel now (its socket is shut down, so a blocked send returns at once).
  void Close();
  void StopForTeardown() override;

 private:
  // Sender thread.
  void Main();
  bool SendRun(const Run& run);
  bool ReadAcks();
  bool ApplyAck(const uint8_t* ack);
  void SettleFront();
  void Fail(const std::string& problem);
  // JS thread.
  void OnWake(napi_env env);

  std::shared_ptr<Store> store_;
  int fd_;
  uint8_t* data_;
  size_t capacity_;
  uint64_t epoch_;
  int timeoutMs_;
  int wakeFd_ = -1;  // eventfd: a push or a close for a thread waiting in poll
  std::thread thread_;
  std::shared_ptr<JsWakeup> wakeup_;

  // Sender thread only.
  std::deque<int32_t> order_;       // outcome of each run taken from the queue, oldest first; 0 = awaiting its ACK
  std::deque<size_t> awaiting_;     // positions in order_ (counted from orderBase_) of the sent runs, in seq order
  size_t orderBase_ = 0;
  uint64_t nextSeq_ = 1;
  uint8_t ackBytes_[16 * 64];
  size_t ackHave_ = 0;

  // Shared, under mutex_.
  std::mutex mutex_;
  std::string problem_;  // the first failure; empty after a clean close
  std::deque<Run> queued_;
  bool closeRequested_ = false;
  bool waiting_ = false;  // the thread found the queue empty and waits in poll (a push must wake it)
  std::vector<int32_t> settled_;  // outcomes not yet delivered to JS, in queue order
  bool ended_ = false;
  std::string endProblem_;

  // JS thread only.
  bool endDelivered_ = false;
  Napi::ObjectReference buffer_;
  Napi::FunctionReference onSettled_;
  Napi::FunctionReference onEnd_;
};

// store.openResyncSender(fd, buffer, epoch, timeoutMs, onSettled, onEnd) -> NativeResyncSender.
Napi::Value OpenResyncSender(const Napi::CallbackInfo& info, const std::shared_ptr<Store>& store);
void InitResyncSenderClass(Napi::Env env, AddonState& state);

}  // namespace blockmirror
