// CRC32C (Castagnoli), SSE4.2 accelerated with a table fallback for CPUs without it.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace blockmirror {

// Standard CRC32C of data, continuing from `seed` (a previous result; 0 to start).
uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t seed);

// JS: crc32c(buf, seed = 0) -> unsigned 32-bit number.
Napi::Value Crc32cJs(const Napi::CallbackInfo& info);

}  // namespace blockmirror
