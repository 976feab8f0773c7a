/** ext4 on a real kernel block device backed by our NBD export (nbdfuse + loop), across unmount and remount. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { runOk } from '../helpers/run';
import { startServe, tempDir, type NodeProcess } from '../helpers/node-process';
import { requireCommands, requireRoot } from '../helpers/requires';
import { checkFileTree, FuseLoopDevice, writeFileTree } from '../helpers/mounted-volume';

describe('serve: mounted ext4 over nbdfuse + loop', function () {
  let dir: string;
  let node: NodeProcess | undefined;
  let device: FuseLoopDevice | undefined;

  before(function () {
    requireRoot(this);
    requireCommands(this, 'nbdfuse', 'losetup', 'mkfs.ext4', 'mount', 'fusermount3');
    dir = tempDir('mount');
  });
  after(async function () {
    await device?.detach();
    await node?.stop();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes a tree of files, unmounts, remounts (after a node restart), and every checksum matches', async function () {
    const served = await startServe(dir, '128M');
    node = served.node;
    device = new FuseLoopDevice(dir, served.socket);
    await device.attach();
    await device.mkfs();
    await device.mount();
    const sums = writeFileTree(device.mountDir, 60);
    await runOk('sync', []);
    await device.unmount();
    await device.detach();
    device = undefined;
    const exit = await node.stop();
    assert.equal(exit.code, 0, node.stderr);

    const again = await startServe(dir, '128M');
    node = again.node;
    await runOk('e2fsck', ['-fn', served.store]);
    device = new FuseLoopDevice(dir, again.socket);
    await device.attach();
    await device.mount();
    assert.deepEqual(checkFileTree(device.mountDir, sums), []);
    const status = await node.status();
    assert.equal((status['io'] as Record<string, number>)['errors'], 0);
  });
});
