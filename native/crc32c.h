// CRC32C (Castagnoli), SSE4.2 accelerated with a table fallback for CPUs without it. Plain C++ with
// no Node headers: tools/bench/stream-floor.cc is built from it too (the addon exports it to JS as
// crc32c, in addon.cc).
#pragma once

#include <cstddef>
#include <cstdint>

namespace blockmirror {

// Standard CRC32C of data, continuing from `seed` (a previous result; 0 to start).
uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t seed);

}  // namespace blockmirror
