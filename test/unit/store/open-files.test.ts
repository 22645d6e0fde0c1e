import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { OpenFiles, type OpenFilesInit } from '../../../shared/store/open-files.js'

/** Counts opens and closes of the handles it gives out. */
function counting (): { init: Pick<OpenFilesInit, 'open'>, opened: string[], closed: () => number } {
  const opened: string[] = []
  let closed = 0
  return {
    opened,
    closed: () => closed,
    init: {
      open: async (path: string): Promise<FileHandle> => {
        opened.push(path)
        const fh = await open(path, 'r')
        const close = fh.close.bind(fh)
        fh.close = async () => { closed++; await close() }
        return fh
      }
    }
  }
}

async function readAll (files: OpenFiles, path: string): Promise<string> {
  return await files.use(path, async (fh) => {
    const buf = Buffer.alloc(64)
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
    return buf.subarray(0, bytesRead).toString()
  })
}

/** Until `cond` holds (the closes run in the background); a liveness bound, not a timing. */
async function eventually (cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await sleep(10)
  assert.ok(cond(), what)
}

describe('OpenFiles', () => {
  let dir = ''
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'damselfly-open-files-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('opens a file once for many reads, concurrent ones too, and closes it when idle', async () => {
    const path = join(dir, 'a')
    await writeFile(path, 'alpha')
    // reuse: an idle time no pause of a loaded machine reaches
    const c = counting()
    const files = new OpenFiles({ ...c.init, idleMs: 600_000 })
    assert.deepEqual(await Promise.all([readAll(files, path), readAll(files, path), readAll(files, path)]), ['alpha', 'alpha', 'alpha'])
    assert.equal(await readAll(files, path), 'alpha')
    assert.deepEqual(c.opened, [path])
    assert.equal(c.closed(), 0)
    files.closeAll()
    await eventually(() => c.closed() === 1 && files.size === 0, 'closed by closeAll')
    // the idle close: a short idle time, then a read opens the file anew
    const s = counting()
    const short = new OpenFiles({ ...s.init, idleMs: 20 })
    assert.equal(await readAll(short, path), 'alpha')
    await eventually(() => s.closed() === 1 && short.size === 0, 'closed after the idle time')
    assert.equal(await readAll(short, path), 'alpha')
    assert.equal(s.opened.length, 2, 'opened again after it was closed')
    short.closeAll()
    await eventually(() => s.closed() === 2, 'closed by closeAll')
  })

  it('never hands out a dropped handle: the file put at that path is read, and the old handle closes after its reader', async () => {
    const path = join(dir, 'b')
    await writeFile(path, 'old bytes')
    const c = counting()
    const files = new OpenFiles(c.init)
    assert.equal(await readAll(files, path), 'old bytes')
    // a reader holds the handle while the file is dropped and replaced
    let release!: () => void
    const held = files.use(path, async (fh) => {
      await new Promise<void>((resolve) => { release = resolve })
      const buf = Buffer.alloc(64)
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
      return buf.subarray(0, bytesRead).toString()
    })
    await sleep(0)
    files.drop(path)
    await rm(path)
    await writeFile(path, 'new bytes')
    assert.equal(c.closed(), 0, 'not closed under its reader')
    assert.equal(await readAll(files, path), 'new bytes')
    release()
    assert.equal(await held, 'old bytes', 'the reader that had it finishes on it')
    await eventually(() => c.closed() === 1, 'the dropped handle closed once its reader left')
    assert.equal(c.opened.length, 2)
    files.closeAll()
  })

  it('keeps no handle for a file that failed to open, and keeps at most maxIdle idle handles', async () => {
    const c = counting()
    const files = new OpenFiles({ ...c.init, maxIdle: 2 })
    await assert.rejects(readAll(files, join(dir, 'missing')), { code: 'ENOENT' })
    assert.equal(files.size, 0)
    const paths = ['c1', 'c2', 'c3', 'c4'].map((n) => join(dir, n))
    for (const p of paths) await writeFile(p, p)
    for (const p of paths) assert.equal(await readAll(files, p), p)
    assert.equal(files.size, 2, 'the two most recently used are kept')
    await eventually(() => c.closed() === 2, 'the oldest two closed')
    assert.equal(await readAll(files, paths[3]), paths[3])
    assert.equal(c.opened.length, 5, 'the newest is still open: no new open')
    files.closeAll()
  })
})
