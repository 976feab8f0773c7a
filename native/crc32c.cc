#include "crc32c.h"

#include <nmmintrin.h>

#include <cstring>

#include "errors.h"
#include "js_args.h"

namespace blockmirror {

namespace {

constexpr uint32_t kCastagnoliReflected = 0x82F63B78;

struct Crc32cTable {
  uint32_t entries[256];
  Crc32cTable() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t crc = i;
      for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ ((crc & 1) ? kCastagnoliReflected : 0);
      entries[i] = crc;
    }
  }
};

// Bytewise software CRC for CPUs without SSE4.2.
uint32_t UpdateSoftware(uint32_t state, const uint8_t* data, size_t length) {
  static const Crc32cTable table;
  for (size_t i = 0; i < length; i++) state = table.entries[(state ^ data[i]) & 0xff] ^ (state >> 8);
  return state;
}

// 8 bytes per instruction with the SSE4.2 crc32 instruction.
uint32_t UpdateHardware(uint32_t state, const uint8_t* data, size_t length) {
  uint64_t state64 = state;
  while (length >= 8) {
    uint64_t word;
    memcpy(&word, data, 8);  // unaligned load of checksum input, not a payload copy
    state64 = _mm_crc32_u64(state64, word);
    data += 8;
    length -= 8;
  }
  uint32_t state32 = static_cast<uint32_t>(state64);
  while (length > 0) {
    state32 = _mm_crc32_u8(state32, *data);
    data++;
    length--;
  }
  return state32;
}

bool HasSse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}

}  // namespace

uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t seed) {
  uint32_t state = ~seed;
  state = HasSse42() ? UpdateHardware(state, data, length) : UpdateSoftware(state, data, length);
  return ~state;
}

Napi::Value Crc32cJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t length = 0;
  if (info.Length() < 1 || !GetBytes(info[0], &data, &length)) {
    ThrowArgError(env, "crc32c(buf, seed?): buf must be a Buffer or Uint8Array");
    return env.Undefined();
  }
  uint32_t seed = 0;
  if (info.Length() >= 2 && !info[1].IsUndefined()) {
    if (!IsIntegerInRange(info[1], 0, 4294967295.0)) {
      ThrowArgError(env, "crc32c(buf, seed?): seed must be an unsigned 32-bit integer");
      return env.Undefined();
    }
    seed = static_cast<uint32_t>(info[1].As<Napi::Number>().Int64Value());
  }
  return Napi::Number::New(env, Crc32c(data, length, seed));
}

}  // namespace blockmirror
