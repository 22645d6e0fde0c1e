/**
 * A real full disk: a small tmpfs mounted for the test (so it needs root), a
 * BlobStore on it, then a dfdaemon process with its data dir on it. Every
 * failure must be a DiskFullError that leaves no entry behind, and what was
 * stored before keeps being served intact.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { request } from 'undici'
import { BlobStore } from '../../shared/store/blob-store.js'
import { digestOf } from '../../shared/oci/digest.js'
import type { EvictReason } from '../../shared/store/disk-quota.js'
import { collect, rejectsWithName } from '../helpers/assertions.js'
import { makeBlob, type TestBlob } from '../helpers/blobs.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'

const run = promisify(execFile)
const logger = pino({ level: 'silent' })
const MiB = 1 << 20
const TMPFS_SIZE = 24 * MiB
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }


async function free (path: string): Promise<number> {
  const st = await statfs(path)
  return st.bavail * st.bsize
}

async function until (what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (await check()) return
    await sleep(20)
  }
  assert.fail(`timed out waiting until ${what}`)
}

async function entries (dir: string): Promise<string[]> {
  return await readdir(dir).catch(() => [])
}

describe('a full disk (tmpfs)', () => {
  let dir: string
  let mnt: string
  let mounted = false

  before(async () => {
    if (process.getuid?.() !== 0) {
      throw new Error('disk-full.test needs root: it mounts a small tmpfs to fill a real disk (run the integration tests as root)')
    }
    dir = await mkdtemp(join(tmpdir(), 'damselfly-diskfull-'))
    mnt = join(dir, 'mnt')
    await mkdir(mnt)
    await run('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE}`, 'tmpfs', mnt])
    mounted = true
  })

  after(async () => {
    if (mounted) {
      for (let i = 0; i < 10; i++) {
        try {
          await run('umount', [mnt])
          mounted = false
          break
        } catch {
          await sleep(200)
        }
      }
      if (mounted) await run('umount', ['-l', mnt]).catch(() => {})
    }
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  describe('BlobStore', () => {
    const PIECE = 256 << 10
    let store: BlobStore
    const kept = makeBlob(MiB, PIECE)

    before(async () => {
      store = new BlobStore({ dir: join(mnt, 'store'), logger })
      await store.init()
      const p = await store.openPartial(kept.manifest())
      for (let i = 0; i < kept.count; i++) await p.writePiece(i, kept.piece(i))
      await store.commit(p)
    })

    after(async () => {
      await store?.close()
      if (mounted) await rm(join(mnt, 'store'), { recursive: true, force: true })
    })

    async function assertNothingOf (blob: TestBlob): Promise<void> {
      await until('the partial entry is gone', async () => !(await entries(store.layout.partialDir)).includes(blob.digest.hex))
      assert.equal(await store.getPartial(blob.digest), undefined)
      assert.equal(await store.getComplete(blob.digest), undefined)
      assert.equal(await store.readPiece(blob.digest, 0), undefined)
      assert.ok(!(await entries(store.layout.blobsDir)).includes(blob.digest.hex))
    }

    async function assertKeptIntact (): Promise<void> {
      const bytes = await collect(await store.createReadStream(kept.digest))
      assert.equal(digestOf(bytes).value, kept.digest.value)
      assert.deepEqual(await store.readPiece(kept.digest, 1), kept.piece(1))
    }

    it('refuses a blob bigger than the free space with DiskFullError, leaving no entry', async () => {
      const big = makeBlob(TMPFS_SIZE + 4 * MiB, MiB)
      await rejectsWithName(store.openPartial(big.manifest()), 'DiskFullError')
      await assertNothingOf(big)
      await assertKeptIntact()
    })

    it('fails the blob with DiskFullError when a piece write hits ENOSPC, and discards the partial', async () => {
      const blob = makeBlob(12 * MiB, MiB)
      const p = await store.openPartial(blob.manifest())
      // someone else fills the disk after the blob was started
      const filler = join(mnt, 'filler.bin')
      await writeFile(filler, Buffer.alloc((await free(mnt)) - 6 * MiB))
      try {
        let failure: Error | undefined
        for (let i = 0; i < blob.count && failure == null; i++) {
          await p.writePiece(i, blob.piece(i)).catch((err: Error) => { failure = err })
        }
        assert.equal(failure?.name, 'DiskFullError')
        assert.equal((failure?.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC')
        await rejectsWithName(p.writePiece(blob.count - 1, blob.piece(blob.count - 1)), 'DiskFullError')
        await assertNothingOf(blob)
        await assertKeptIntact()
      } finally {
        await rm(filler, { force: true })
      }
    })

    it('fails the blob with DiskFullError when its state cannot be saved, and discards the partial', async () => {
      const blob = makeBlob(2 * PIECE, PIECE)
      const p = await store.openPartial(blob.manifest())
      // leave exactly one piece of room: the piece fits, its state file does not
      const filler = join(mnt, 'filler.bin')
      await writeFile(filler, Buffer.alloc((await free(mnt)) - PIECE))
      try {
        await p.writePiece(0, blob.piece(0))
        await rejectsWithName(p.flush(), 'DiskFullError')
        await rejectsWithName(p.writePiece(1, blob.piece(1)), 'DiskFullError')
        await rejectsWithName(store.commit(p), 'DiskFullError')
        await assertNothingOf(blob)
        await assertKeptIntact()
      } finally {
        await rm(filler, { force: true })
      }
    })

    it('fails a commit that cannot write its manifest with DiskFullError, and keeps no entry', async () => {
      const blob = makeBlob(PIECE, PIECE)
      const p = await store.openPartial(blob.manifest())
      await p.writePiece(0, blob.piece(0))
      await p.flush()
      // not a page left: the data file moves in, its manifest cannot be written
      const filler = join(mnt, 'filler.bin')
      await writeFile(filler, Buffer.alloc(await free(mnt)))
      try {
        await rejectsWithName(store.commit(p), 'DiskFullError')
        await assertNothingOf(blob)
        await assertKeptIntact()
      } finally {
        await rm(filler, { force: true })
      }
    })

    it('leaves no stray bytes behind: the free space is back to what the kept blob leaves', async () => {
      assert.equal(store.usedBytes, kept.bytes.byteLength)
      assert.ok(await free(mnt) >= TMPFS_SIZE - 2 * MiB, `only ${await free(mnt)} bytes free`)
      await assertKeptIntact()
    })

    it('evicts the least recently used blob to keep the free-space watermark', async () => {
      const evicted: Array<{ digest: string, reason: EvictReason }> = []
      const second = new BlobStore({ dir: join(mnt, 'watermark'), logger, quota: { minFreeBytes: 8 * MiB }, hooks: { evicted: (e) => { evicted.push(e) } } })
      await second.init()
      try {
        const [a, b, c] = [makeBlob(6 * MiB, MiB), makeBlob(6 * MiB, MiB), makeBlob(6 * MiB, MiB)]
        for (const x of [a, b, c]) {
          const p = await second.openPartial(x.manifest())
          for (let i = 0; i < x.count; i++) await p.writePiece(i, x.piece(i))
          await second.commit(p)
          await sleep(5)
        }
        assert.deepEqual(evicted, [{ digest: a.digest.value, kind: 'complete', bytes: 6 * MiB, reason: 'free-space' }])
        assert.equal(await second.getComplete(a.digest), undefined)
        assert.ok(await second.getComplete(b.digest))
        assert.ok(await second.getComplete(c.digest))
        assert.ok(await free(mnt) >= 8 * MiB)
      } finally {
        await second.close()
        await rm(join(mnt, 'watermark'), { recursive: true, force: true })
      }
    })
  })

  describe('dfdaemon with its data dir on the full disk', () => {
    let origin: TestRegistry
    let image: PushedImage
    let supernode: SupernodeProcess
    let daemon: DaemonProcess

    before(async () => {
      origin = await startRegistry({ auth: 'none' })
      image = await pushImage(origin, { repository: 'test/full', tag: 'v1', layers: [{ size: 300 << 10, seed: 'fits' }, { size: 40 * MiB, seed: 'too-big' }] })
      // the supernode stores on the ordinary disk; only the daemon's disk is small
      supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
      daemon = await startDaemon({ name: 'daemon', supernode: supernode.url, upstream: origin.url, dataDir: join(mnt, 'daemon'), logDir: dir })
    })

    after(async () => {
      await Promise.allSettled([daemon?.stop(), supernode?.stop()])
      await origin?.stop()
    })

    const blobUrl = (digest: string): string => `${daemon.url}/v2/test/full/blobs/${digest}`

    async function getBlob (digest: string): Promise<{ status: number, body: Buffer }> {
      const res = await request(blobUrl(digest), { signal: AbortSignal.timeout(60_000) })
      return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }
    }

    it('serves a blob that fits, then fails a blob too big with an OCI error, and keeps serving', async () => {
      const small = image.layers[0]
      const big = image.layers[1]
      const first = await getBlob(small.digest)
      assert.equal(first.status, 200)
      assert.equal(digestOf(first.body).value, small.digest)

      const failed = await getBlob(big.digest)
      // a full disk is a 507, told apart from a swarm that could not deliver (503); still a 5xx, so the client moves on
      assert.equal(failed.status, 507, `expected 507, got ${failed.status}: ${failed.body.toString().slice(0, 200)}`)
      const body = JSON.parse(failed.body.toString()) as { errors: Array<{ code: string, message: string }> }
      assert.equal(body.errors[0].code, 'UNAVAILABLE')
      assert.equal(body.errors[0].message, 'insufficient storage')
      assert.match(await daemon.logs(), /DiskFullError/, 'the download failed for want of disk')

      const partialDir = join(mnt, 'daemon', 'store', 'partial', 'sha256')
      await until('the daemon dropped the partial entry', async () => (await entries(partialDir)).length === 0)
      assert.ok(!(await entries(join(mnt, 'daemon', 'store', 'blobs', 'sha256'))).includes(big.digest.slice('sha256:'.length)))

      const v2 = await request(`${daemon.url}/v2/`)
      await v2.body.dump()
      assert.equal(v2.statusCode, 200)
      const again = await getBlob(small.digest)
      assert.equal(again.status, 200)
      assert.equal(digestOf(again.body).value, small.digest)
      // the store counts the blob it kept, and nothing of the one it dropped
      assert.equal(await scrapeMetric(daemon.url, 'damselfly_dfdaemon_store_bytes'), small.size)
    })
  })
})
