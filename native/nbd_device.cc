#include "nbd_device.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "js_args.h"
#include "kernel_abi.h"
#include "thread_signals.h"
#include "thread_name.h"

namespace blockmirror {

namespace {

// Kernel limits on the logical block size of an nbd device.
constexpr uint32_t kBlockSizeMinBytes = 512;
constexpr uint32_t kBlockSizeMaxBytes = 4096;

void CloseIfOpen(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

}  // namespace

NbdDevice::~NbdDevice() {
  Detach();
  if (doIt_.joinable()) doIt_.join();
  CloseIfOpen(&deviceFd_);
  CloseIfOpen(&kernelFd_);
}

void NbdDevice::Log(LogLevel level, const std::string& message) {
  logger_->Log(level, "nbd device " + options_.devicePath + ": " + message);
}

bool NbdDevice::Attach(Napi::Env env, Napi::Function onExit, int* errnum, std::string* syscall) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    *errnum = errno;
    *syscall = "socketpair";
    return false;
  }
  userFd_ = pair[0];
  kernelFd_ = pair[1];
  deviceFd_ = open(options_.devicePath.c_str(), O_RDWR | O_CLOEXEC);
  auto fail = [&](const char* what) {
    *errnum = errno;
    *syscall = what;
    CloseIfOpen(&deviceFd_);
    CloseIfOpen(&kernelFd_);
    CloseIfOpen(&userFd_);
    return false;
  };
  if (deviceFd_ < 0) return fail("open");
  ioctl(deviceFd_, nbd::kIoctlClearSock);  // stale configuration from a crashed run; errors are expected
  if (ioctl(deviceFd_, nbd::kIoctlSetBlkSize, static_cast<unsigned long>(options_.blockSizeBytes)) != 0) {
    return fail("ioctl NBD_SET_BLKSIZE");
  }
  unsigned long blocks = static_cast<unsigned long>(options_.sizeBytes / options_.blockSizeBytes);
  if (ioctl(deviceFd_, nbd::kIoctlSetSizeBlocks, blocks) != 0) return fail("ioctl NBD_SET_SIZE_BLOCKS");
  if (options_.timeoutSeconds > 0 &&
      ioctl(deviceFd_, nbd::kIoctlSetTimeout, static_cast<unsigned long>(options_.timeoutSeconds)) != 0) {
    return fail("ioctl NBD_SET_TIMEOUT");
  }
  if (ioctl(deviceFd_, nbd::kIoctlSetFlags, static_cast<unsigned long>(options_.flags | nbd::kFlagHasFlags)) != 0) {
    return fail("ioctl NBD_SET_FLAGS");
  }
  if (ioctl(deviceFd_, nbd::kIoctlSetSock, static_cast<unsigned long>(kernelFd_)) != 0) {
    return fail("ioctl NBD_SET_SOCK");
  }
  onExit_ = Napi::Persistent(onExit);
  // An attached device holds the event loop open until DO_IT returned and onExit ran.
  wakeup_ = JsWakeup::Create(
      env, "blockmirror.nbdDevice", [this](napi_env e) { OnWake(e); }, true, shared_from_this());
  if (wakeup_) {
    try {
      doIt_ = std::thread([this] { DoItMain(); });
      Log(LogLevel::Info, "attached (" + std::to_string(options_.sizeBytes) + " bytes)");
      return true;
    } catch (const std::system_error& e) {
      errno = e.code().value();
    }
  } else {
    errno = ENOMEM;
  }
  int savedErrno = errno;
  ioctl(deviceFd_, nbd::kIoctlClearSock);
  errno = savedErrno;
  if (wakeup_) wakeup_->Release();
  return fail("pthread_create");
}

void NbdDevice::DoItMain() {
  NameThisThread("bm-nbd-doit");
  BlockAsyncSignalsInThisThread();
  // Blocks until the kernel disconnects: NBD_DISCONNECT/CLEAR_SOCK, socket closed, or timeout.
  int rc = ioctl(deviceFd_, nbd::kIoctlDoIt);
  int errnum = rc == 0 ? 0 : errno;
  std::lock_guard<std::mutex> lock(mutex_);
  ioctl(deviceFd_, nbd::kIoctlClearQue);  // obsolete on new kernels (a no-op), needed on old ones
  ioctl(deviceFd_, nbd::kIoctlClearSock);
  CloseIfOpen(&kernelFd_);
  CloseIfOpen(&deviceFd_);
  exited_ = true;
  exitErrno_ = errnum;
  exitMessage_ = errnum == 0 ? "NBD_DO_IT returned" : "NBD_DO_IT failed: " + ErrnoText(errnum);
  Log(errnum == 0 || detachRequested_ ? LogLevel::Info : LogLevel::Warn, "detached: " + exitMessage_);
  if (wakeup_) wakeup_->Signal();
}

void NbdDevice::Detach() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (exited_ || deviceFd_ < 0 || detachRequested_) return;
  detachRequested_ = true;
  // DISCONNECT sends NBD_CMD_DISC to our server; CLEAR_SOCK shuts the socket down so DO_IT returns
  // even when the server never answers (what `nbd-client -d` does).
  if (ioctl(deviceFd_, nbd::kIoctlDisconnect) != 0) Log(LogLevel::Warn, "NBD_DISCONNECT: " + ErrnoText(errno));
  if (ioctl(deviceFd_, nbd::kIoctlClearSock) != 0) Log(LogLevel::Warn, "NBD_CLEAR_SOCK: " + ErrnoText(errno));
}

void NbdDevice::StopForTeardown() {
  Detach();
  if (doIt_.joinable()) doIt_.join();
}

void NbdDevice::OnWake(napi_env rawEnv) {
  Napi::Env env(rawEnv);
  Napi::HandleScope scope(env);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!exited_ || exitDelivered_) return;
    exitDelivered_ = true;
  }
  if (doIt_.joinable()) doIt_.join();
  Napi::FunctionReference onExit = std::move(onExit_);
  wakeup_->Release();
  onExit.Call({Napi::Number::New(env, exitErrno_), Napi::String::New(env, exitMessage_)});
}

// ---- JS surface ----

namespace {

class DeviceWrap : public Napi::ObjectWrap<DeviceWrap> {
 public:
  explicit DeviceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceWrap>(info) {
    // Only native code constructs these (it passes a token); JS `new` would leave core unset.
    if (info.Length() != 1 || !info[0].IsExternal()) ThrowArgError(info.Env(), "not constructible from JavaScript");
  }
  std::shared_ptr<NbdDevice> core;

  Napi::Value Detach(const Napi::CallbackInfo& info) {
    core->Detach();
    return info.Env().Undefined();
  }
};

}  // namespace

void InitDeviceClass(Napi::Env env, AddonState& state) {
  Napi::Function cls =
      DeviceWrap::DefineClass(env, "NativeNbdDevice", {DeviceWrap::InstanceMethod("detach", &DeviceWrap::Detach)});
  state.deviceClass = Napi::Persistent(cls);
}

Napi::Value AttachNbdDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
    ThrowArgError(env, "attachNbdDevice(options, onExit) expected");
    return env.Undefined();
  }
  Napi::Object options = info[0].As<Napi::Object>();
  Napi::Value path = options.Get("devicePath");
  Napi::Value size = options.Get("sizeBytes");
  Napi::Value block = options.Get("blockSizeBytes");
  Napi::Value flags = options.Get("flags");
  Napi::Value timeout = options.Get("timeoutSeconds");
  if (!path.IsString() || !IsIntegerInRange(size, 1, kJsSafeIntegerMax) ||
      !IsIntegerInRange(block, kBlockSizeMinBytes, kBlockSizeMaxBytes) || !IsIntegerInRange(flags, 0, 4294967295.0) ||
      !IsIntegerInRange(timeout, 0, 4294967295.0)) {
    ThrowArgError(env, "attachNbdDevice: options {devicePath, sizeBytes, blockSizeBytes, flags, timeoutSeconds} invalid");
    return env.Undefined();
  }
  NbdDevice::Options parsed;
  parsed.devicePath = path.As<Napi::String>().Utf8Value();
  parsed.sizeBytes = static_cast<uint64_t>(size.As<Napi::Number>().Int64Value());
  parsed.blockSizeBytes = block.As<Napi::Number>().Uint32Value();
  parsed.flags = flags.As<Napi::Number>().Uint32Value();
  parsed.timeoutSeconds = timeout.As<Napi::Number>().Uint32Value();
  if ((parsed.blockSizeBytes & (parsed.blockSizeBytes - 1)) != 0 || parsed.sizeBytes % parsed.blockSizeBytes != 0) {
    ThrowArgError(env, "attachNbdDevice: blockSizeBytes must be a power of two dividing sizeBytes");
    return env.Undefined();
  }
  AddonState& state = StateOf(env);
  auto core = std::make_shared<NbdDevice>(parsed, state.logger);
  int errnum = 0;
  std::string syscall;
  if (!core->Attach(env, info[1].As<Napi::Function>(), &errnum, &syscall)) {
    ThrowErrno(env, errnum, syscall, parsed.devicePath);
    return env.Undefined();
  }
  state.registry->Add(core);
  Napi::Object object = state.deviceClass.New({Napi::External<void>::New(env, nullptr)});
  DeviceWrap::Unwrap(object)->core = core;
  object.DefineProperty(Napi::PropertyDescriptor::Value("fd", Napi::Number::New(env, core->userFd()), napi_enumerable));
  return object;
}

Napi::Value DisconnectNbdDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowArgError(env, "disconnectNbdDevice(devicePath) expected");
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    ThrowErrno(env, errno, "open", path);
    return env.Undefined();
  }
  const char* failed = nullptr;
  if (ioctl(fd, nbd::kIoctlDisconnect) != 0) {
    failed = "ioctl NBD_DISCONNECT";
  } else if (ioctl(fd, nbd::kIoctlClearSock) != 0) {
    failed = "ioctl NBD_CLEAR_SOCK";
  }
  int errnum = errno;
  close(fd);
  if (failed != nullptr) ThrowErrno(env, errnum, failed, path);
  return env.Undefined();
}

}  // namespace blockmirror
