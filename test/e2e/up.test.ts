/** The README's main job: `blockmirror up` runs a local mirrored pair on sparse files and stops cleanly. */
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NodeProcess, tempDir } from '../helpers/node-process';
import { waitForPeerState } from '../helpers/pair';
import { connectTransmission } from '../helpers/raw-nbd-client';

describe('up: the main job on defaults', function () {
  it('starts a mirrored pair exported on state/nbd.sock; writes reach both replicas; SIGTERM stops both', async function () {
    const dir = tempDir('up');
    const state = path.join(dir, 'state');
    const port = String(20000 + Math.floor(Math.random() * 20000));
    const node = new NodeProcess(['up', '--state', state, '--size', '64M', '--port', port], path.join(state, 'primary', 'store.img.ctl'));
    try {
      await node.ready();
      await waitForPeerState(node, 'connected');
      assert.match(node.stdout, /nbd\+unix:\/\/\/\?socket=/);
      const { client } = await connectTransmission(path.join(state, 'nbd.sock'));
      const data = crypto.randomBytes(65536);
      client.sendRequest(1, 1n, 4096n, data.length, data);
      assert.equal((await client.readSimpleReply()).error, 0);
      client.destroy();
      const exit = await node.stop();
      assert.equal(exit.code, 0, node.stderr);
      const primary = fs.readFileSync(path.join(state, 'primary', 'store.img'));
      const secondary = fs.readFileSync(path.join(state, 'secondary', 'store.img'));
      assert.ok(primary.subarray(4096, 4096 + data.length).equals(data));
      assert.ok(primary.equals(secondary));
      assert.ok(!fs.existsSync(path.join(state, 'nbd.sock')));
    } finally {
      await node.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
