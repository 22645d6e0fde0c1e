import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BlobStore, type BlobStoreInit } from '../../../shared/store/blob-store.js'
import type { DiskQuotaInit } from '../../../shared/store/disk-quota.js'
import { StoreLayout } from '../../../shared/store/layout.js'
import { collect, rejectsWithName } from '../../helpers/assertions.js'
import { tempStores } from '../../helpers/stores.js'
import { makeBlob as makeTestBlob, type TestBlob } from '../../helpers/blobs.js'

const PIECE = 64 << 10
const SIZE = 4 * PIECE
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

const makeBlob = (size = SIZE): TestBlob => makeTestBlob(size, PIECE)

describe('BlobStore quota and eviction', () => {
  const stores = tempStores('quota')

  async function newStore (quota: DiskQuotaInit, opts: { dir?: string, hooks?: BlobStoreInit['hooks'] } = {}): Promise<BlobStore> {
    return await stores.open({ dir: opts.dir, quota, hooks: opts.hooks })
  }

  async function put (store: BlobStore, blob: TestBlob): Promise<void> {
    const p = await store.openPartial(blob.manifest())
    for (let i = 0; i < blob.count; i++) await p.writePiece(i, blob.piece(i))
    await store.commit(p, { verified: true })
    // distinct recency stamps, whatever the clock's resolution
    await sleep(5)
  }

  const held = async (store: BlobStore, blob: TestBlob): Promise<boolean> => (await store.getComplete(blob.digest)) != null

  it('evicts the least recently used blob; serving a blob makes it recent', async () => {
    const evicted: string[] = []
    const store = await newStore({ maxBytes: 3 * SIZE }, { hooks: { evicted: (e) => { evicted.push(e.digest) } } })
    const [a, b, c, d] = [makeBlob(), makeBlob(), makeBlob(), makeBlob()]
    await put(store, a)
    await put(store, b)
    await put(store, c)
    // a is served: b is now the least recently used
    assert.deepEqual(await collect(await store.createReadStream(a.digest)), a.bytes)
    await sleep(5)
    await put(store, d)
    await store.enforceQuota()
    assert.deepEqual(evicted, [b.digest.value])
    assert.equal(await held(store, b), false)
    for (const x of [a, c, d]) assert.equal(await held(store, x), true)
    assert.equal(store.usedBytes, 3 * SIZE)
    // a piece read counts as a use too: c is now the most recent, a the least
    assert.ok(await store.readPiece(c.digest, 0))
    await sleep(5)
    await put(store, makeBlob())
    await store.enforceQuota()
    assert.deepEqual(evicted, [b.digest.value, a.digest.value])
    assert.equal(await held(store, c), true)
  })

  it('brings usage under the quota, several blobs at once', async () => {
    const bytes: number[] = []
    const first = stores.dir()
    let store = await newStore({}, { dir: first })
    const blobs = Array.from({ length: 6 }, () => makeBlob())
    for (const x of blobs) await put(store, x)
    assert.equal(store.usedBytes, 6 * SIZE)
    await store.close()
    // reopened with a quota of two and a half blobs: the four oldest go at startup
    store = await newStore({ maxBytes: 2.5 * SIZE }, { dir: first, hooks: { usage: (b) => { bytes.push(b) } } })
    assert.ok(store.usedBytes <= 2.5 * SIZE)
    assert.equal(store.usedBytes, 2 * SIZE)
    assert.equal(bytes.at(-1), 2 * SIZE)
    assert.deepEqual(await Promise.all(blobs.map(async x => await held(store, x))), [false, false, false, false, true, true])
  })

  it('never evicts a partial blob or a leased one, and evicts a leased one once released', async () => {
    const store = await newStore({ maxBytes: 2 * SIZE })
    const [a, b, c] = [makeBlob(), makeBlob(), makeBlob()]
    await put(store, a)
    await put(store, b)
    const release = store.lease(a.digest)
    // an open read stream is a lease too
    const stream = await store.createReadStream(b.digest)
    const partial = await store.openPartial(c.manifest()).catch((err: Error) => err)
    // no room can be made for c while a and b are in use: the quota holds
    assert.equal((partial as Error).name, 'DiskFullError')
    assert.equal(await held(store, a), true)
    assert.equal(await held(store, b), true)
    release()
    stream.destroy()
    await new Promise(resolve => stream.once('close', resolve))
    // now a (least recent) makes room; the partial itself is never a candidate
    const p = await store.openPartial(c.manifest())
    assert.equal(await held(store, a), false)
    assert.equal(await held(store, b), true)
    await p.writePiece(0, c.piece(0))
    const releaseB = store.lease(b.digest)
    const d = makeBlob()
    await rejectsWithName(store.openPartial(d.manifest()), 'DiskFullError')
    assert.equal(await store.getPartial(c.digest), p)
    await store.enforceQuota()
    assert.equal(await store.getPartial(c.digest), p)
    assert.ok(await store.readPiece(c.digest, 0))
    assert.equal(await held(store, b), true)
    releaseB()
  })

  it('refuses a blob bigger than the quota without evicting anything', async () => {
    const store = await newStore({ maxBytes: 3 * SIZE })
    const [a, b] = [makeBlob(), makeBlob()]
    await put(store, a)
    await put(store, b)
    const huge = makeBlob(4 * SIZE)
    await rejectsWithName(store.openPartial(huge.manifest()), 'DiskFullError')
    assert.equal(await held(store, a), true)
    assert.equal(await held(store, b), true)
    assert.equal(await store.getPartial(huge.digest), undefined)
    assert.equal(store.usedBytes, 2 * SIZE)
  })

  it('keeps recency across a restart', async () => {
    const dir = stores.dir()
    let store = await newStore({}, { dir })
    const [a, b, c] = [makeBlob(), makeBlob(), makeBlob()]
    await put(store, a)
    await put(store, b)
    await put(store, c)
    assert.ok(await store.readPiece(a.digest, 1))
    await store.close()
    // reopened with room for two: b, the least recently used before the restart, goes
    store = await newStore({ maxBytes: 2 * SIZE }, { dir })
    assert.equal(await held(store, b), false)
    assert.equal(await held(store, a), true)
    assert.equal(await held(store, c), true)
  })

  it('stamps a blob served piece by piece once, and the last use on close', async () => {
    const dir = stores.dir()
    const store = await newStore({}, { dir })
    const a = makeBlob()
    await put(store, a)
    // committed just now (and stamped then): back-date the file to see what stamps it next
    const data = new StoreLayout(dir).completeData(a.digest)
    await utimes(data, 1000, 1000)
    for (let i = 0; i < a.count; i++) assert.ok(await store.readPiece(a.digest, i))
    await sleep(50)
    assert.equal((await stat(data)).mtimeMs, 1000 * 1000, 'reads within the stamp interval write nothing')
    await store.close()
    assert.ok((await stat(data)).mtimeMs > Date.now() - 60_000, 'close stamps the last use')
  })

  it('counts only its own entries: a big unrelated file in the data dir evicts nothing', async () => {
    const dataDir = stores.dir()
    await mkdir(join(dataDir, 'store'), { recursive: true })
    await writeFile(join(dataDir, 'unrelated.bin'), Buffer.alloc(8 * SIZE))
    await writeFile(join(dataDir, 'store', 'stray.bin'), Buffer.alloc(8 * SIZE))
    const store = await newStore({ maxBytes: 2 * SIZE }, { dir: join(dataDir, 'store') })
    const [a, b] = [makeBlob(), makeBlob()]
    await put(store, a)
    await put(store, b)
    await store.enforceQuota()
    assert.equal(store.usedBytes, 2 * SIZE)
    assert.equal(await held(store, a), true)
    assert.equal(await held(store, b), true)
    assert.equal((await stat(join(dataDir, 'unrelated.bin'))).size, 8 * SIZE)
    assert.equal((await stat(join(dataDir, 'store', 'stray.bin'))).size, 8 * SIZE)
  })

  it('counts a partial blob left by an earlier run, and may evict it since no download holds it', async () => {
    const dir = stores.dir()
    let store = await newStore({}, { dir })
    const [a, b] = [makeBlob(), makeBlob()]
    const p = await store.openPartial(a.manifest())
    await p.writePiece(0, a.piece(0))
    await p.flush()
    await store.close()
    store = await newStore({ maxBytes: 2 * SIZE }, { dir })
    assert.equal(store.usedBytes, SIZE)
    await put(store, b)
    // a new blob needs the room the abandoned partial takes
    const c = makeBlob()
    await put(store, c)
    assert.equal(await store.getPartial(a.digest), undefined)
    assert.equal(await held(store, b), true)
    assert.equal(await held(store, c), true)
  })

  it('fails a partial blob whose state cannot be saved, and discards it', async () => {
    const store = await newStore({})
    const a = makeBlob()
    const p = await store.openPartial(a.manifest())
    // the entry's directory vanishes: the next state write cannot happen
    await rm(store.layout.partialEntry(a.digest), { recursive: true, force: true })
    await p.writePiece(0, a.piece(0))
    await assert.rejects(p.flush())
    assert.ok(p.failure != null)
    await assert.rejects(p.writePiece(1, a.piece(1)))
    for (let i = 0; i < 50 && (await store.getPartial(a.digest)) != null; i++) await sleep(10)
    assert.equal(await store.getPartial(a.digest), undefined)
    assert.equal(store.usedBytes, 0)
  })
})
