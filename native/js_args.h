// Small helpers to read JS arguments without copying byte data.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace blockmirror {

// Data pointer and length of a Buffer / TypedArray value (no copy); false if not a typed array.
bool GetBytes(Napi::Value value, uint8_t** data, size_t* length);

// Whether value is an integral number in [min, max].
bool IsIntegerInRange(Napi::Value value, double min, double max);

// Whether value can be a file descriptor (an integer in 0..2^31-1).
bool IsFd(Napi::Value value);

// A BigInt that fits in 64 unsigned bits; false otherwise.
bool GetUint64BigInt(Napi::Value value, uint64_t* out);

// Largest integer a double represents exactly (2^53 - 1).
constexpr double kJsSafeIntegerMax = 9007199254740991.0;

}  // namespace blockmirror
