import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

/** The child script: use every threaded native object, close them, and expect node to exit on its own. */
const CHILD_SCRIPT = `
const net = require('node:net');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const native = require(process.argv[1]);
native.setLogger(() => {});
native.initPool(65536, 4);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-exit-'));
const store = native.openStore({ path: path.join(dir, 's.img'), direct: false, readOnly: false, create: true }, () => {
  store.close();
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    const connection = native.openConnection({ fd: socket._handle.fd, payloadBytesMax: 65536, name: 'exit' },
      (batch) => { for (let i = 0; i < batch.count; i++) connection.complete(batch.rows[i * 6], 0); },
      (end) => { console.log('closed ' + end.reason); fs.rmSync(dir, { recursive: true, force: true }); });
    socket.destroy();
    server.close();
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(3, 6);
    client.write(header);
    client.once('data', () => { client.end(); });
  });
  server.listen(path.join(dir, 'sock'));
  const client = net.connect(path.join(dir, 'sock'));
});
store.truncate(4096);
store.submit(2, 1, null, 0, 0, false);
`;

describe('native threads do not keep node alive', () => {
  it('node exits by itself once the store and connection are closed', () => {
    const addon = path.join(__dirname, '..', '..', '..', 'build', 'Release', 'blockmirror.node');
    const child = spawnSync(process.execPath, ['-e', CHILD_SCRIPT, addon], { encoding: 'utf8', timeout: 30000 });
    assert.equal(child.error, undefined, `child did not exit by itself: ${String(child.error)}`);
    assert.equal(child.status, 0, child.stderr);
    assert.match(child.stdout, /closed eof/);
  });
});
