#include "resync_runs.h"

#include <algorithm>

#include "errors.h"
#include "js_args.h"

namespace blockmirror {

namespace {

constexpr uint64_t kSectorBytes = 512;

class RunCollector {
 public:
  RunCollector(const uint8_t* bits, size_t bitBytes, const RunRequest& request)
      : bits_(bits), request_(request) {
    uint64_t regions = (request.volumeBytes + request.regionBytes - 1) / request.regionBytes;
    regionCount_ = std::min<uint64_t>(regions, static_cast<uint64_t>(bitBytes) * 8);
  }

  size_t Collect(double* runs, size_t capacity) {
    size_t count = 0;
    uint64_t bytes = 0;
    uint64_t spanStart = 0;
    uint64_t maxRuns = std::min<uint64_t>(request_.maxRuns, capacity);
    for (int64_t r = NextDirty(request_.fromRegion); r >= 0 && count < maxRuns; r = NextDirty(static_cast<uint64_t>(r) + 1)) {
      uint64_t region = static_cast<uint64_t>(r);
      uint64_t offset = RegionOffset(region);
      uint64_t end = RegionEnd(region);
      if (count == 0) spanStart = offset;
      else if (bytes >= request_.budgetBytes) break;
      if (!MapShowsData(offset, end)) break;  // a hole run, or beyond the map: the caller's
      uint64_t regions = DataRunRegions(region);
      uint64_t runEnd = RegionEnd(region + regions - 1);
      if (offset % kSectorBytes != 0 || runEnd % kSectorBytes != 0) break;
      if (count > 0 && runEnd - spanStart > request_.spanBytesMax) break;
      runs[2 * count] = static_cast<double>(offset);
      runs[2 * count + 1] = static_cast<double>(runEnd - offset);
      count++;
      bytes += runEnd - offset;
      r += static_cast<int64_t>(regions) - 1;
    }
    return count;
  }

 private:
  bool IsDirty(uint64_t region) const { return region < regionCount_ && (bits_[region >> 3] & (1u << (region & 7))) != 0; }

  int64_t NextDirty(uint64_t from) const {
    for (uint64_t r = from; r < regionCount_; r++) {
      if (bits_[r >> 3] == 0) {
        r |= 7;  // the rest of an empty byte
        continue;
      }
      if (IsDirty(r)) return static_cast<int64_t>(r);
    }
    return -1;
  }

  uint64_t RegionOffset(uint64_t region) const { return region * request_.regionBytes; }
  uint64_t RegionEnd(uint64_t region) const { return std::min(RegionOffset(region) + request_.regionBytes, request_.volumeBytes); }

  // The regions of the run from dirty region `region` that may hold data: adjacent dirty regions with
  // data, up to maxRunBytes, each ending on a sector boundary (a region that does not start and end on
  // one goes alone).
  uint64_t DataRunRegions(uint64_t region) const {
    uint64_t offset = RegionOffset(region);
    if (offset % kSectorBytes != 0 || RegionEnd(region) % kSectorBytes != 0) return 1;
    uint64_t regions = 1;
    for (uint64_t r = region + 1; IsDirty(r); r++) {
      uint64_t end = RegionEnd(r);
      if (end - offset > request_.maxRunBytes || end % kSectorBytes != 0) break;
      if (!MapShowsData(RegionOffset(r), end)) break;
      regions++;
    }
    return regions;
  }

  // Whether the map shows data in [offset, end): false for a hole, and for a range whose mapped part
  // holds none (the map cannot tell about the rest: the caller maps on and asks again).
  bool MapShowsData(uint64_t offset, uint64_t end) const {
    if (offset >= request_.volumeBytes || offset < request_.mapFrom) return false;
    const double* extents = request_.extents;
    size_t low = 0;
    size_t high = request_.extentCount;
    while (low < high) {  // the first extent that ends after offset
      size_t mid = low + (high - low) / 2;
      if (extents[2 * mid + 1] > static_cast<double>(offset)) high = mid;
      else low = mid + 1;
    }
    return low < request_.extentCount && extents[2 * low] < static_cast<double>(std::min(end, request_.mapTo));
  }

  const uint8_t* bits_;
  const RunRequest& request_;
  uint64_t regionCount_;
};

bool IsPowerOfTwo(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

}  // namespace

size_t CollectDataRuns(const uint8_t* bits, size_t bitBytes, const RunRequest& request, double* runs, size_t capacity) {
  if (!IsPowerOfTwo(request.regionBytes) || request.volumeBytes == 0) return 0;
  return RunCollector(bits, bitBytes, request).Collect(runs, capacity);
}

Napi::Value CollectDataRunsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "collectDataRuns(bits: Uint8Array, request: Float64Array, extents: Float64Array, runs: Float64Array)";
  if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray() || !info[3].IsTypedArray()) {
    ThrowArgError(env, usage);
    return env.Undefined();
  }
  auto bits = info[0].As<Napi::TypedArray>();
  auto request = info[1].As<Napi::TypedArray>();
  auto extents = info[2].As<Napi::TypedArray>();
  auto runs = info[3].As<Napi::TypedArray>();
  if (bits.TypedArrayType() != napi_uint8_array || request.TypedArrayType() != napi_float64_array ||
      extents.TypedArrayType() != napi_float64_array || runs.TypedArrayType() != napi_float64_array ||
      request.ElementLength() < kRunRequestFields) {
    ThrowArgError(env, usage);
    return env.Undefined();
  }
  const double* fields = request.As<Napi::Float64Array>().Data();
  for (int i = 0; i < kRunRequestFields; i++) {
    if (!(fields[i] >= 0 && fields[i] <= kJsSafeIntegerMax) || fields[i] != static_cast<double>(static_cast<uint64_t>(fields[i]))) {
      ThrowArgError(env, "collectDataRuns: every request field must be a non-negative safe integer");
      return env.Undefined();
    }
  }
  RunRequest r{};
  r.fromRegion = static_cast<uint64_t>(fields[kRunFromRegion]);
  r.regionBytes = static_cast<uint64_t>(fields[kRunRegionBytes]);
  r.volumeBytes = static_cast<uint64_t>(fields[kRunVolumeBytes]);
  r.maxRunBytes = static_cast<uint64_t>(fields[kRunMaxRunBytes]);
  r.maxRuns = static_cast<uint64_t>(fields[kRunMaxRuns]);
  r.spanBytesMax = static_cast<uint64_t>(fields[kRunSpanBytesMax]);
  r.budgetBytes = static_cast<uint64_t>(fields[kRunBudgetBytes]);
  r.mapFrom = static_cast<uint64_t>(fields[kRunMapFrom]);
  r.mapTo = static_cast<uint64_t>(fields[kRunMapTo]);
  r.extents = extents.As<Napi::Float64Array>().Data();
  r.extentCount = static_cast<size_t>(fields[kRunExtentCount]);
  if (r.extentCount * 2 > extents.ElementLength()) {
    ThrowArgError(env, "collectDataRuns: the extent count exceeds the extents array");
    return env.Undefined();
  }
  if (!IsPowerOfTwo(r.regionBytes)) {
    ThrowArgError(env, "collectDataRuns: the region size must be a power of two");
    return env.Undefined();
  }
  size_t count = CollectDataRuns(bits.As<Napi::Uint8Array>().Data(), bits.ElementLength(), r,
                                 runs.As<Napi::Float64Array>().Data(), runs.ElementLength() / 2);
  return Napi::Number::New(env, static_cast<double>(count));
}

}  // namespace blockmirror
