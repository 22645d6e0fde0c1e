/**
 * Where the bench's clients write: the work dir on disk, or a tmpfs directory that is checked
 * for room first and removed with the run.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cleanup } from '../../bench/cleanup.js'
import { clientDestDir, PULLS_DIR_PREFIX } from '../../bench/client-dest.js'

describe('bench client destination', () => {
  const cleanup = new Cleanup()
  after(() => { cleanup.runAll() })

  it('keeps disk destinations in the work dir', async () => {
    assert.equal(await clientDestDir('disk', '/tmp/work', 1 << 30, cleanup), '/tmp/work/pulls')
  })

  it('makes a tmpfs directory for memory destinations and removes it with the run', async () => {
    const own = new Cleanup()
    const dir = await clientDestDir('memory', '/tmp/work', 1 << 20, own)
    assert.ok(dir.startsWith(join('/dev/shm', PULLS_DIR_PREFIX)), dir)
    await writeFile(join(dir, 'layer'), 'bytes')
    own.runAll()
    assert.equal(existsSync(dir), false)
  })

  it('refuses memory where there is no tmpfs or no room, before anything is written', async () => {
    const disk = await mkdtemp(join(tmpdir(), 'damselfly-client-dest-'))
    try {
      await assert.rejects(clientDestDir('memory', disk, 1, cleanup, '/proc'), /needs a tmpfs at \/proc \(it is another file system\)/)
      await assert.rejects(clientDestDir('memory', disk, 1, cleanup, join(disk, 'absent')), /needs a tmpfs at .*absent: ENOENT/)
      const made = async (): Promise<number> => (await readdir('/dev/shm')).filter(n => n.startsWith(PULLS_DIR_PREFIX)).length
      const before = await made()
      await assert.rejects(clientDestDir('memory', disk, Number.MAX_SAFE_INTEGER, cleanup), /needs \d+ MiB free in \/dev\/shm, which has \d+/)
      assert.equal(await made(), before, 'no directory made in /dev/shm for a run refused for room')
    } finally {
      await rm(disk, { recursive: true, force: true })
    }
  })
})
