// Collecting a resync batch's data runs from the dirty-region bitmap and a map of where the store holds
// data, on the JS thread: the loop the resync engine ran in JavaScript once per dirty region
// (src/mirror/resync.ts, ResyncEngine.collectBatch, says what it answers and what it leaves to JS).
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace blockmirror {

// Positions in the request array of collectDataRuns (src/native.ts, RunRequest, is its twin).
enum RunRequestField : int {
  kRunFromRegion = 0,    // first dirty region to look at
  kRunRegionBytes,       // region size (a power of two)
  kRunVolumeBytes,       // volume size; the last region may be shorter than the others
  kRunMaxRunBytes,       // longest run (adjacent dirty regions with data) that one write may carry
  kRunMaxRuns,           // runs in a batch at most
  kRunSpanBytesMax,      // from the first run's start to the last run's end, at most
  kRunBudgetBytes,       // bytes of runs after which the batch ends (a run may cross it)
  kRunMapFrom,           // the data map covers [mapFrom, mapTo): its extents are all the data there
  kRunMapTo,
  kRunExtentCount,       // extents in the extents array ([start, end) pairs, sorted, disjoint)
  kRunRequestFields,
};

struct RunRequest {
  uint64_t fromRegion;
  uint64_t regionBytes;
  uint64_t volumeBytes;
  uint64_t maxRunBytes;
  uint64_t maxRuns;
  uint64_t spanBytesMax;
  uint64_t budgetBytes;
  uint64_t mapFrom;
  uint64_t mapTo;
  const double* extents;
  size_t extentCount;
};

// The runs of one batch: writes [offsetBytes, lengthBytes] pairs to `runs` (room for `capacity` runs)
// and returns how many. Pure: reads the bitmap and the map, changes nothing.
size_t CollectDataRuns(const uint8_t* bits, size_t bitBytes, const RunRequest& request, double* runs, size_t capacity);

// JS: collectDataRuns(bits: Uint8Array, request: Float64Array, extents: Float64Array, runs: Float64Array) -> count.
Napi::Value CollectDataRunsJs(const Napi::CallbackInfo& info);

}  // namespace blockmirror
