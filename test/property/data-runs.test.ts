/**
 * collectDataRuns (native/resync_runs.cc), the resync's batch collector, against a model written
 * from its rules: for random bitmaps, data maps and limits, the same runs. The rules: from the first
 * dirty region at or after the start, each run is a dirty region with data plus the adjacent dirty
 * regions with data after it, up to the longest run, each ending on a sector boundary; the batch ends
 * at its run count, once its bytes reach the budget, before a run that would take it past its span,
 * and before a region that is hole by the map, not covered by the map, or not sector-aligned.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { loadNative, RunRequest } from '../../src/native';

const SECTOR = 512;

interface Case {
  regionBytes: number;
  volumeBytes: number;
  bits: Uint8Array;
  fromRegion: number;
  maxRunBytes: number;
  maxRuns: number;
  spanBytesMax: number;
  budgetBytes: number;
  mapFrom: number;
  mapTo: number;
  extents: number[]; // [start, end) pairs, sorted, disjoint, within [mapFrom, mapTo)
}

/** The rules, one region at a time, with linear searches. */
function model(c: Case): [number, number][] {
  const regionCount = Math.ceil(c.volumeBytes / c.regionBytes);
  const dirty = (r: number): boolean => r < regionCount && (c.bits[r >> 3]! & (1 << (r & 7))) !== 0;
  const offsetOf = (r: number): number => r * c.regionBytes;
  const endOf = (r: number): number => Math.min((r + 1) * c.regionBytes, c.volumeBytes);
  // Data shown by the map: none for a hole, and none where the map does not reach.
  const mapShowsData = (o: number, e: number): boolean => {
    if (o >= c.volumeBytes || o < c.mapFrom) return false;
    for (let i = 0; i < c.extents.length; i += 2) if (c.extents[i]! < Math.min(e, c.mapTo) && c.extents[i + 1]! > o) return true;
    return false;
  };
  const runs: [number, number][] = [];
  let bytes = 0;
  let spanStart = 0;
  let r = c.fromRegion;
  while (r < regionCount && !dirty(r)) r++;
  while (r < regionCount && runs.length < c.maxRuns) {
    if (runs.length === 0) spanStart = offsetOf(r);
    else if (bytes >= c.budgetBytes) break;
    if (!mapShowsData(offsetOf(r), endOf(r))) break;
    let regions = 1;
    if (offsetOf(r) % SECTOR === 0 && endOf(r) % SECTOR === 0) {
      while (dirty(r + regions)) {
        const end = endOf(r + regions);
        if (end - offsetOf(r) > c.maxRunBytes || end % SECTOR !== 0) break;
        if (!mapShowsData(offsetOf(r + regions), end)) break;
        regions++;
      }
    }
    const runEnd = endOf(r + regions - 1);
    if (offsetOf(r) % SECTOR !== 0 || runEnd % SECTOR !== 0) break;
    if (runs.length > 0 && runEnd - spanStart > c.spanBytesMax) break;
    runs.push([r, regions]);
    bytes += runEnd - offsetOf(r);
    r += regions;
    while (r < regionCount && !dirty(r)) r++;
  }
  return runs;
}

function collect(c: Case): [number, number][] {
  const request = new Float64Array(RunRequest.Fields);
  request[RunRequest.FromRegion] = c.fromRegion;
  request[RunRequest.RegionBytes] = c.regionBytes;
  request[RunRequest.VolumeBytes] = c.volumeBytes;
  request[RunRequest.MaxRunBytes] = c.maxRunBytes;
  request[RunRequest.MaxRuns] = c.maxRuns;
  request[RunRequest.SpanBytesMax] = c.spanBytesMax;
  request[RunRequest.BudgetBytes] = c.budgetBytes;
  request[RunRequest.MapFrom] = c.mapFrom;
  request[RunRequest.MapTo] = c.mapTo;
  request[RunRequest.ExtentCount] = c.extents.length / 2;
  const runs = new Float64Array(2 * 64);
  const count = loadNative().collectDataRuns(c.bits, request, Float64Array.from(c.extents), runs);
  // As [first region, regions], the model's terms; the native answer is [offset, length] pairs.
  return Array.from({ length: count }, (_, i) => {
    const offset = runs[2 * i]!;
    const end = offset + runs[2 * i + 1]!;
    assert.equal(offset % c.regionBytes, 0, 'a run starts at a region');
    assert.ok(end === c.volumeBytes || end % c.regionBytes === 0, 'a run ends at a region boundary or the volume end');
    return [offset / c.regionBytes, Math.ceil((end - offset) / c.regionBytes)] as [number, number];
  });
}

const caseArbitrary: fc.Arbitrary<Case> = fc
  .record({
    regionShift: fc.integer({ min: 9, max: 16 }),
    regionCount: fc.integer({ min: 1, max: 300 }),
    tail: fc.integer({ min: -4096, max: 0 }), // the last region shorter, maybe not on a sector boundary
    density: fc.double({ min: 0, max: 1, noNaN: true }),
    seedBits: fc.uint8Array({ minLength: 38, maxLength: 38 }),
    fromFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    maxRunRegions: fc.integer({ min: 1, max: 20 }),
    maxRuns: fc.integer({ min: 1, max: 40 }),
    spanRegions: fc.integer({ min: 1, max: 200 }),
    budgetRegions: fc.integer({ min: 0, max: 200 }),
    mapFromFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    mapToFraction: fc.oneof(fc.constant(1), fc.double({ min: 0, max: 1, noNaN: true })),
    allData: fc.boolean(),
    cuts: fc.uniqueArray(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }),
  })
  .map((g) => {
    const regionBytes = 2 ** g.regionShift;
    const volumeBytes = Math.max(1, g.regionCount * regionBytes + Math.max(g.tail, 1 - regionBytes));
    const regionCount = Math.ceil(volumeBytes / regionBytes);
    const bits = new Uint8Array(Math.ceil(regionCount / 8));
    for (let r = 0; r < regionCount; r++) {
      const noise = g.seedBits[r % g.seedBits.length]! ^ ((r * 131) & 0xff);
      if (noise / 256 < g.density) bits[r >> 3]! |= 1 << (r & 7);
    }
    const fromRegion = Math.floor(g.fromFraction * regionCount);
    const mapFrom = Math.min(Math.floor(g.mapFromFraction * g.mapFromFraction * fromRegion) * regionBytes, volumeBytes);
    const mapTo = Math.max(mapFrom, Math.min(Math.floor(mapFrom + g.mapToFraction * (volumeBytes - mapFrom)), volumeBytes));
    // Extents: alternate data and hole between sorted cut points of [mapFrom, mapTo), at byte granularity.
    // Or all of it data, the common case of a resync of written regions.
    const points = [...new Set(g.cuts.map((x) => mapFrom + Math.floor(x * (mapTo - mapFrom))))].sort((a, b) => a - b);
    const extents: number[] = [];
    if (g.allData) {
      if (mapFrom < mapTo) extents.push(mapFrom, mapTo);
    } else {
      for (let i = 0; i + 1 < points.length; i += 2) if (points[i]! < points[i + 1]!) extents.push(points[i]!, points[i + 1]!);
    }
    return {
      regionBytes, volumeBytes, bits, fromRegion,
      maxRunBytes: g.maxRunRegions * regionBytes, maxRuns: g.maxRuns,
      spanBytesMax: g.spanRegions * regionBytes, budgetBytes: g.budgetRegions * regionBytes,
      mapFrom, mapTo, extents,
    };
  });

describe('collectDataRuns: the resync batch collector against its rules', function () {
  this.timeout(60000);

  it('collects the same runs as the model for random bitmaps, maps and limits', function () {
    fc.assert(fc.property(caseArbitrary, (c) => assert.deepEqual(collect(c), model(c))), { numRuns: 3000 });
  });

  it('merges adjacent dirty regions with data, stops at a hole, and never reads past the volume', function () {
    const regionBytes = 64 * 1024;
    const bits = new Uint8Array([0b1110_1111, 0b0000_0001]); // regions 0-3, 5-7 and 8 dirty
    const c: Case = {
      regionBytes, volumeBytes: 9 * regionBytes, bits, fromRegion: 0, maxRunBytes: 2 * regionBytes, maxRuns: 16,
      spanBytesMax: 64 * regionBytes, budgetBytes: 64 * regionBytes, mapFrom: 0, mapTo: 9 * regionBytes,
      extents: [0, 6 * regionBytes, 6 * regionBytes + 4096, 9 * regionBytes], // data everywhere
    };
    assert.deepEqual(collect(c), [[0, 2], [2, 2], [5, 2], [7, 2]]);
    // Region 6 a hole: the batch ends before it, after the run of region 5 alone.
    assert.deepEqual(collect({ ...c, extents: [0, 6 * regionBytes, 7 * regionBytes, 9 * regionBytes] }), [[0, 2], [2, 2], [5, 1]]);
    // The map ends inside region 2, which holds data there: region 2 goes alone, and the batch ends
    // before region 3, which the map does not cover (the caller maps on and asks again).
    assert.deepEqual(collect({ ...c, mapTo: 2 * regionBytes + 100, extents: [0, 2 * regionBytes + 100] }), [[0, 2], [2, 1]]);
  });

  it('refuses malformed requests with a clear error', function () {
    const native = loadNative();
    const request = new Float64Array(RunRequest.Fields);
    request[RunRequest.RegionBytes] = 3000;
    request[RunRequest.VolumeBytes] = 1 << 20;
    assert.throws(() => native.collectDataRuns(new Uint8Array(4), request, new Float64Array(2), new Float64Array(2)), /power of two/);
    request[RunRequest.RegionBytes] = 4096;
    request[RunRequest.ExtentCount] = 5;
    assert.throws(() => native.collectDataRuns(new Uint8Array(4), request, new Float64Array(2), new Float64Array(2)), /extent count/);
    request[RunRequest.ExtentCount] = -1;
    assert.throws(() => native.collectDataRuns(new Uint8Array(4), request, new Float64Array(2), new Float64Array(2)), /safe integer/);
    assert.throws(() => native.collectDataRuns(new Uint8Array(4), new Float64Array(3), new Float64Array(2), new Float64Array(2)), /collectDataRuns/);
  });
});
