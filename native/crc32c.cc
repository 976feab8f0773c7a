#include "crc32c.h"

#include <nmmintrin.h>

#include <cstring>


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

// 8 bytes per instruction with the SSE4.2 crc32 instruction, one dependency chain.
uint32_t UpdateHardwareSerial(uint32_t state, const uint8_t* data, size_t length) {
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

// The crc32 instruction has a latency of about 3 cycles but issues every cycle, so long inputs are
// split into three lanes checksummed side by side and joined. The raw CRC state update is linear:
// update(s, A||B) = shift(update(s, A), |B|) ^ update(0, B), where shift(s, n) = update(s, n zero
// bytes) is itself linear in s and so a lookup of each of its four bytes in a precomputed table.
constexpr size_t kLaneBytes = 2048;

struct LaneShift {
  uint32_t byByte[4][256];
  LaneShift() {
    static const uint8_t zeros[kLaneBytes] = {};
    uint32_t basis[32];
    for (int bit = 0; bit < 32; bit++) basis[bit] = UpdateHardwareSerial(1u << bit, zeros, kLaneBytes);
    for (int byte = 0; byte < 4; byte++) {
      for (uint32_t value = 0; value < 256; value++) {
        uint32_t shifted = 0;
        for (int bit = 0; bit < 8; bit++) {
          if (value & (1u << bit)) shifted ^= basis[byte * 8 + bit];
        }
        byByte[byte][value] = shifted;
      }
    }
  }
  uint32_t Apply(uint32_t state) const {
    return byByte[0][state & 0xff] ^ byByte[1][(state >> 8) & 0xff] ^ byByte[2][(state >> 16) & 0xff] ^
           byByte[3][state >> 24];
  }
};

uint32_t UpdateHardware(uint32_t state, const uint8_t* data, size_t length) {
  static const LaneShift shift;
  while (length >= 3 * kLaneBytes) {
    uint64_t a = state, b = 0, c = 0;
    for (size_t i = 0; i < kLaneBytes; i += 8) {
      uint64_t wa, wb, wc;
      memcpy(&wa, data + i, 8);  // unaligned loads of checksum input, not payload copies
      memcpy(&wb, data + kLaneBytes + i, 8);
      memcpy(&wc, data + 2 * kLaneBytes + i, 8);
      a = _mm_crc32_u64(a, wa);
      b = _mm_crc32_u64(b, wb);
      c = _mm_crc32_u64(c, wc);
    }
    state = shift.Apply(shift.Apply(static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^ static_cast<uint32_t>(c);
    data += 3 * kLaneBytes;
    length -= 3 * kLaneBytes;
  }
  return UpdateHardwareSerial(state, data, length);
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

}  // namespace blockmirror
