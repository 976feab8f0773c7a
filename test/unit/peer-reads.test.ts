/** PeerReads: what a READ_REPLY must be before its bytes reach a client whose local read failed. */
import { strict as assert } from 'node:assert';
import { PeerReads } from '../../src/mirror/peer-reads';
import { decodeMessage, encodeReadReply, type ReadReplyMessage } from '../../src/wire';
import { NbdCommand } from '../../src/native';
import type { BlockRequest } from '../../src/controller';

function readRequest(offsetBytes: number, lengthBytes: number): BlockRequest {
  return { command: NbdCommand.Read, flags: 0, offsetBytes, lengthBytes, data: Buffer.alloc(lengthBytes) };
}

function reply(tag: number, status: number, payload: Buffer | null): { message: ReadReplyMessage; head: Buffer } {
  const head = encodeReadReply(tag, status, payload);
  const decoded = decodeMessage(head);
  assert.ok(decoded.ok, decoded.ok ? '' : decoded.reason);
  return { message: decoded.value as ReadReplyMessage, head };
}

describe('peer reads (READ_REQUEST / READ_REPLY bookkeeping)', () => {
  it('copies a checked reply into the client buffer, counts it and frees its tag', () => {
    const freed: number[] = [];
    const reads = new PeerReads((tag) => freed.push(tag));
    const request = readRequest(4100, 1000);
    const results: number[] = [];
    reads.add(7, request, (r) => results.push(r));
    const data = Buffer.alloc(1000, 0xab);
    const { message, head } = reply(7, 0, data);
    assert.equal(reads.onReply(message, head), undefined);
    assert.ok(reads.expectsPayload);
    assert.equal(reads.onPayload(data), undefined);
    assert.deepEqual(results, [0]);
    assert.ok(request.data.equals(data));
    assert.deepEqual(freed, [7]);
    assert.deepEqual(reads.counters, { readsFromPeer: 1, bytesReadFromPeer: 1000, peerReadFailures: 0, readRepairs: 0, readRepairFailures: 0 });
    assert.equal(reads.size, 0);
  });

  it('fails the read on an error status, and refuses unknown tags, wrong lengths and corrupted payloads', () => {
    const reads = new PeerReads(() => undefined);
    const results: number[] = [];
    reads.add(1, readRequest(0, 512), (r) => results.push(r));
    const error = reply(1, 1, null);
    assert.equal(reads.onReply(error.message, error.head), undefined);
    assert.deepEqual(results, [-5], 'IO_ERROR from the peer: the client gets EIO');

    const unknown = reply(9, 0, Buffer.alloc(512));
    assert.match(reads.onReply(unknown.message, unknown.head)!, /unknown tag 9/);

    reads.add(2, readRequest(0, 512), (r) => results.push(r));
    const long = reply(2, 0, Buffer.alloc(1024));
    assert.match(reads.onReply(long.message, long.head)!, /1024 bytes for a read of 512/);

    const good = Buffer.alloc(512, 3);
    const ok = reply(2, 0, good);
    assert.equal(reads.onReply(ok.message, ok.head), undefined);
    const corrupted = Buffer.from(good);
    corrupted[10] = 4;
    assert.match(reads.onPayload(corrupted)!, /bad CRC32C/);
    assert.deepEqual(results, [-5], 'a corrupted payload never reaches the client (the link drops, failAll answers)');
    assert.match(reads.onPayload(good)!, /no READ_REPLY announced/);
    reads.failAll();
    assert.deepEqual(results, [-5, -5]);
    assert.equal(reads.size, 0);
    assert.equal(reads.counters.peerReadFailures, 2);
  });
});
