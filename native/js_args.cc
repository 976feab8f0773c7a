#include "js_args.h"

#include <cmath>

namespace blockmirror {

bool GetBytes(Napi::Value value, uint8_t** data, size_t* length) {
  if (!value.IsTypedArray()) return false;
  napi_typedarray_type type;
  size_t elementCount = 0;
  void* raw = nullptr;
  napi_value arrayBuffer;
  size_t byteOffset = 0;
  if (napi_get_typedarray_info(value.Env(), value, &type, &elementCount, &raw, &arrayBuffer, &byteOffset) != napi_ok) {
    return false;
  }
  size_t elementBytes = 1;
  switch (type) {
    case napi_int16_array:
    case napi_uint16_array: elementBytes = 2; break;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: elementBytes = 4; break;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array: elementBytes = 8; break;
    default: elementBytes = 1; break;
  }
  *data = static_cast<uint8_t*>(raw);
  *length = elementCount * elementBytes;
  return true;
}

bool IsIntegerInRange(Napi::Value value, double min, double max) {
  if (!value.IsNumber()) return false;
  double d = value.As<Napi::Number>().DoubleValue();
  return std::isfinite(d) && std::floor(d) == d && d >= min && d <= max;
}

bool GetUint64BigInt(Napi::Value value, uint64_t* out) {
  if (!value.IsBigInt()) return false;
  bool lossless = false;
  *out = value.As<Napi::BigInt>().Uint64Value(&lossless);
  return lossless;
}

bool IsFd(Napi::Value value) { return IsIntegerInRange(value, 0, 2147483647.0); }

}  // namespace blockmirror
