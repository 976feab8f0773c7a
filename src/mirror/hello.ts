/** HELLO fields each role advertises, and the identity rules that decide whether a pair may connect. */
import * as crypto from 'node:crypto';
import { FEATURES_KNOWN, WIRE_VERSION_MAX, type HelloFields } from '../wire';
import type { Generations } from './sync-decision';

/** currentGeneration of a store that was created empty (its content is known: all zeroes). */
export { GENERATION_EMPTY } from './sync-decision';

/** A random non-zero 64-bit identifier (node ids, generations). */
export function randomId64(): bigint {
  let id = 0n;
  while (id === 0n) id = crypto.randomBytes(8).readBigUInt64BE(0);
  return id;
}

export interface HelloIdentity {
  role: number;
  volumeSizeBytes: number;
  blockSizeBytes: number;
  nodeId: bigint;
  generations: Generations;
  epoch: bigint;
  inlineThresholdBytes: number;
}

/** Build the HELLO body fields from a node's identity. */
export function helloFields(identity: HelloIdentity): HelloFields {
  return {
    protocolVersionMax: WIRE_VERSION_MAX,
    role: identity.role,
    blockSizeBytes: identity.blockSizeBytes,
    volumeSizeBytes: identity.volumeSizeBytes,
    nodeId: identity.nodeId,
    peerNodeId: 0n,
    currentGeneration: identity.generations.current,
    bitmapGeneration: identity.generations.bitmap,
    historyGeneration0: identity.generations.history0,
    historyGeneration1: identity.generations.history1,
    features: FEATURES_KNOWN,
    epoch: identity.epoch,
    inlineThresholdBytes: identity.inlineThresholdBytes,
  };
}
