// Resync data channel: a resync's region data on a TCP connection of its own, moved by native code
// at each end (docs/wire-format.md section 8.2), so a region costs the JS threads nothing but its
// bookkeeping. The primary's end is resync_sender.h; this is the secondary's.
//
// Receiver (secondary): one call serves a channel until it ends, on a libuv pool thread: verifies
// every message (head and payload CRC32C, sequence, tag, epoch, range) before writing anything,
// writes, ACKs.
#pragma once

#include <napi.h>

#include <memory>

#include "store.h"

namespace blockmirror {

// store.resyncReceive(fd, buffer, volumeBytes, epoch, counters, done): one write at a time is read
// into the buffer, checked, written and ACKed; a write may fill the buffer.
Napi::Value ResyncReceive(const Napi::CallbackInfo& info, const std::shared_ptr<Store>& store);
// shutdownSocket(fd): wake a channel's blocked reads and writes (both directions shut down).
Napi::Value ShutdownSocket(const Napi::CallbackInfo& info);
// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info);
// encodeResyncWriteHeads(tag, seq, offset, length, payloadCrc, epoch) -> Buffer of 56 bytes
// (WRITE_NOTIFY head + WRITE_META): the native encoder, exposed so tests compare it with the codec.
Napi::Value EncodeResyncWriteHeads(const Napi::CallbackInfo& info);

}  // namespace blockmirror
