// Kernel /dev/nbdN attach: configure the device over ioctls, hand it one end of a socketpair and
// run NBD_DO_IT on a native thread until the device is disconnected.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "addon_state.h"
#include "js_wakeup.h"
#include "logger.h"

namespace blockmirror {

class NbdDevice : public Stoppable, public std::enable_shared_from_this<NbdDevice> {
 public:
  struct Options {
    std::string devicePath;
    uint64_t sizeBytes = 0;
    uint32_t blockSizeBytes = 0;
    uint32_t flags = 0;
    uint32_t timeoutSeconds = 0;
  };

  NbdDevice(Options options, std::shared_ptr<Logger> logger) : options_(std::move(options)), logger_(std::move(logger)) {}
  ~NbdDevice() override;

  // JS thread: open and configure the device, start the DO_IT thread. On failure returns false with
  // *errnum and *syscall set and nothing left open.
  bool Attach(Napi::Env env, Napi::Function onExit, int* errnum, std::string* syscall);
  int userFd() const { return userFd_; }
  // JS thread: ask the kernel to disconnect; onExit follows when DO_IT returns.
  void Detach();
  void StopForTeardown() override;

 private:
  void DoItMain();
  void OnWake(napi_env env);
  void Log(LogLevel level, const std::string& message);

  Options options_;
  std::shared_ptr<Logger> logger_;
  std::shared_ptr<JsWakeup> wakeup_;
  Napi::FunctionReference onExit_;  // JS thread only
  std::thread doIt_;
  int deviceFd_ = -1;
  int kernelFd_ = -1;  // the socketpair end the kernel reads requests from
  int userFd_ = -1;    // our end, returned to JS (JS owns and closes it)

  std::mutex mutex_;
  bool exited_ = false;
  bool exitDelivered_ = false;
  bool detachRequested_ = false;
  int exitErrno_ = 0;
  std::string exitMessage_;
};

// JS: attachNbdDevice(options, onExit) -> NativeNbdDevice.
Napi::Value AttachNbdDevice(const Napi::CallbackInfo& info);
// JS: disconnectNbdDevice(devicePath).
Napi::Value DisconnectNbdDevice(const Napi::CallbackInfo& info);
void InitDeviceClass(Napi::Env env, AddonState& state);

}  // namespace blockmirror
