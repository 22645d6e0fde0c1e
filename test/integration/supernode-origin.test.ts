import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { BlobStore } from '../../shared/store/blob-store.js'
import { RegistryClient } from '../../shared/oci/registry-client.js'
import { resolveEndpoint } from '../../shared/oci/endpoints.js'
import { digestOf, parseDigest, sha256Hex, DigestHasher } from '../../shared/oci/digest.js'
import { ANONYMOUS } from '../../shared/oci/registry-types.js'
import type { UnauthorizedError } from '../../shared/errors.js'
import { OriginFetcher } from '../../supernode/origin/origin-fetcher.js'
import { createSupernodeMetrics, type SupernodeMetrics } from '../../supernode/metrics.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { rejectsWithName } from '../helpers/assertions.js'

const logger = pino({ level: 'silent' })

interface Harness {
  dir: string
  store: BlobStore
  client: RegistryClient
  fetcher: OriginFetcher
  counters: SupernodeMetrics
  close: () => Promise<void>
}

async function harness (): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-origin-'))
  const store = new BlobStore({ dir, logger })
  await store.init()
  const client = new RegistryClient({ logger })
  const counters = createSupernodeMetrics(new Registry())
  const fetcher = new OriginFetcher({ store, client, resolveEndpoint: name => resolveEndpoint(name), logger, metrics: counters })
  return {
    dir,
    store,
    client,
    fetcher,
    counters,
    close: async () => {
      await fetcher.stop()
      await client.close()
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

async function storedDigest (store: BlobStore, digest: string): Promise<string> {
  const hasher = new DigestHasher()
  for await (const chunk of await store.createReadStream(parseDigest(digest))) hasher.update(chunk as Buffer)
  return hasher.digest().value
}

describe('OriginFetcher against a real registry', () => {
  let reg: TestRegistry | undefined
  let h: Harness | undefined
  let image: PushedImage
  const repository = 'team/app'

  before(async () => {
    reg = await startRegistry()
    image = await pushImage(reg, { repository, tag: 'v1', layers: [{ size: 20 << 20 }, { size: 3 << 20 }] })
    h = await harness()
  })
  after(async () => {
    await h?.close()
    await reg?.stop()
  })

  it('joins concurrent requests for one blob into a single origin fetch', async () => {
    const { fetcher, store, counters } = h as Harness
    const layer = image.layers[0]
    const req = { registry: (reg as TestRegistry).host, repository, digest: parseDigest(layer.digest), credentials: ANONYMOUS }
    const tasks = await Promise.all(Array.from({ length: 5 }, async () => await fetcher.ensure(req)))
    await Promise.all(tasks.map(async t => { await t.done }))
    await (reg as TestRegistry).flushLog()
    assert.equal((reg as TestRegistry).blobRequests(layer.digest), 1)
    for (const t of tasks) {
      assert.equal(t.manifest.size, layer.size)
      assert.ok(t.manifest.pieces.every(p => p != null))
    }
    assert.equal(await storedDigest(store, layer.digest), layer.digest)
    assert.equal((await counters.originBytes.get()).values[0].value, layer.size)
    const ok = (await counters.originFetches.get()).values.find(v => v.labels.result === 'ok')
    assert.equal(ok?.value, 1)
  })

  it('answers a complete blob from the store without contacting the origin', async () => {
    const { fetcher } = h as Harness
    const layer = image.layers[0]
    const task = await fetcher.ensure({ registry: (reg as TestRegistry).host, repository, digest: parseDigest(layer.digest), credentials: ANONYMOUS })
    assert.equal(task.finished, true)
    await task.done
    await (reg as TestRegistry).flushLog()
    assert.equal((reg as TestRegistry).blobRequests(layer.digest), 1)
  })

  it('reports each piece, readable from the store, before the blob is done', async () => {
    const { fetcher, store } = h as Harness
    const layer = image.layers[1]
    const digest = parseDigest(layer.digest)
    const task = await fetcher.ensure({ registry: (reg as TestRegistry).host, repository, digest, credentials: ANONYMOUS })
    assert.ok(task.manifest.pieces.length > 1, 'the blob must span several pieces')
    const order: string[] = []
    const reads: Array<Promise<void>> = []
    const knownAtStart = task.manifest.pieces.filter(p => p != null).length
    task.onPiece(({ index, sha256 }) => {
      order.push(task.finished ? 'piece-after-finish' : 'piece')
      reads.push(store.readPiece(digest, index).then(bytes => {
        assert.ok(bytes != null, `piece ${index} readable when announced`)
        assert.equal(sha256Hex(bytes), sha256)
      }))
    })
    await task.done
    order.push('done')
    await Promise.all(reads)
    const pieces = order.filter(o => o === 'piece').length
    assert.ok(pieces >= 1)
    assert.equal(pieces + knownAtStart, task.manifest.pieces.length)
    assert.equal(order.at(-1), 'done')
    assert.ok(!order.includes('piece-after-finish'))
    assert.equal(task.listenerCount, 0)
    assert.equal(await storedDigest(store, layer.digest), layer.digest)
  })

  it('fails an unknown digest with BlobUnknownError, and starts afresh on the next request', async () => {
    const { fetcher, store } = h as Harness
    const digest = digestOf('no such blob')
    const req = { registry: (reg as TestRegistry).host, repository, digest, credentials: ANONYMOUS }
    await rejectsWithName(fetcher.ensure(req), 'BlobUnknownError')
    await rejectsWithName(fetcher.ensure(req), 'BlobUnknownError')
    assert.equal(await store.getPartial(digest), undefined)
    await (reg as TestRegistry).flushLog()
    const asked = (reg as TestRegistry).requests().filter(r => r.path.endsWith(`/blobs/${digest.value}`))
    assert.equal(asked.length, 2)
  })
})

describe('OriginFetcher against a token-auth registry', () => {
  let reg: TestRegistry | undefined
  let h: Harness | undefined
  let image: PushedImage
  const repository = 'team/private'

  before(async () => {
    reg = await startRegistry({ auth: 'token' })
    image = await pushImage(reg, { repository, tag: 'v1', layers: [{ size: 256 << 10 }], credentials: { username: reg.username, password: reg.password } })
    h = await harness()
  })
  after(async () => {
    await h?.close()
    await reg?.stop()
  })

  it('refuses an anonymous request with UnauthorizedError carrying the challenge', async () => {
    const { fetcher } = h as Harness
    const digest = parseDigest(image.layers[0].digest)
    const err = await rejectsWithName(fetcher.ensure({ registry: (reg as TestRegistry).host, repository, digest, credentials: ANONYMOUS }), 'UnauthorizedError')
    assert.match((err as UnauthorizedError).challenge ?? '', /^Bearer /i)
  })

  it("fetches with the client's own Authorization header", async () => {
    const { fetcher, store } = h as Harness
    const r = reg as TestRegistry
    const layer = image.layers[0]
    const token = r.tokenServer?.mint(r.username, [{ type: 'repository', name: repository, actions: ['pull'] }]) ?? ''
    const task = await fetcher.ensure({ registry: r.host, repository, digest: parseDigest(layer.digest), credentials: { kind: 'authorization', header: `Bearer ${token}` } })
    await task.done
    assert.equal(await storedDigest(store, layer.digest), layer.digest)
  })
})
