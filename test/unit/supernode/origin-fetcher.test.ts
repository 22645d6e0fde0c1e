import { describe, it, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { BlobStore } from '../../../shared/store/blob-store.js'
import { digestOf, type Digest } from '../../../shared/oci/digest.js'
import { ANONYMOUS, type BlobResult, type Credentials, type GetBlobOptions } from '../../../shared/oci/registry-types.js'
import { UnauthorizedError, UpstreamError } from '../../../shared/errors.js'
import { OriginFetcher, type OriginClient } from '../../../supernode/origin/origin-fetcher.js'
import { createSupernodeMetrics } from '../../../supernode/metrics.js'
import { rejectsWithName } from '../../helpers/assertions.js'

const logger = pino({ level: 'silent' })
const BLOB = Buffer.alloc((2 << 20) + 1000, 7)
const DIGEST: Digest = digestOf(BLOB)

type Behaviour = (credentials: Credentials | undefined, signal: AbortSignal | undefined) => Promise<BlobResult>

/** A registry client that answers from a script and counts calls. */
class FakeClient implements OriginClient {
  calls = 0
  constructor (public behaviour: Behaviour) {}
  async getBlob (_e: unknown, _r: string, _d: string, opts: GetBlobOptions): Promise<BlobResult> {
    this.calls++
    return await this.behaviour(opts.credentials, opts.signal)
  }
}

function answer (body: AsyncIterable<Uint8Array>, size = BLOB.length): BlobResult {
  return { status: 200, size, start: 0, length: size, body, cancel: () => {} }
}

async function * chunks (data: Buffer, failAfter?: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.length; off += 64 << 10) {
    if (failAfter !== undefined && off >= failAfter) throw new UpstreamError('connection reset')
    yield data.subarray(off, off + (64 << 10))
  }
}

describe('OriginFetcher', () => {
  let dir: string
  let store: BlobStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-fetcher-'))
    store = new BlobStore({ dir, logger })
    await store.init()
  })
  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  function fetcherWith (client: OriginClient, options: { emptyStore?: boolean } = {}): OriginFetcher {
    // emptyStore: answer "not complete" without disk I/O, so concurrent requests meet deterministically
    const view = options.emptyStore === true
      ? { getComplete: async () => undefined, openPartial: store.openPartial.bind(store), commit: store.commit.bind(store), discardPartial: store.discardPartial.bind(store) }
      : store
    return new OriginFetcher({
      store: view, client, logger, metrics: createSupernodeMetrics(new Registry()), resolveEndpoint: name => ({ name, url: `http://${name}` })
    })
  }
  const req = (credentials: Credentials = ANONYMOUS): Parameters<OriginFetcher['ensure']>[0] => ({ registry: 'origin.test', repository: 'a/b', digest: DIGEST, credentials })

  it('discards the partial blob when the body fails, and starts a new fetch on the next request', async () => {
    const client = new FakeClient(async () => answer(chunks(BLOB, 1 << 20)))
    const fetcher = fetcherWith(client)
    const task = await fetcher.ensure(req())
    await rejectsWithName(task.done, 'UpstreamError')
    assert.equal(task.error?.name, 'UpstreamError')
    assert.equal(await store.getPartial(DIGEST), undefined)
    client.behaviour = async () => answer(chunks(BLOB))
    const again = await fetcher.ensure(req())
    await again.done
    assert.equal(client.calls, 2)
    assert.ok(await store.getComplete(DIGEST))
    await fetcher.stop()
  })

  it('fails a body that does not match the announced size', async () => {
    const fetcher = fetcherWith(new FakeClient(async () => answer(chunks(BLOB), BLOB.length - 1)))
    const task = await fetcher.ensure(req())
    await rejectsWithName(task.done, 'UpstreamError')
    assert.equal(await store.getComplete(DIGEST), undefined)
    await fetcher.stop()
  })

  it('lets a joiner with other credentials retry after the starter was refused', async () => {
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    const client = new FakeClient(async (credentials) => {
      await gate
      if (credentials?.kind !== 'authorization') throw new UnauthorizedError(undefined, 'Bearer realm="http://auth.test/token"')
      return answer(chunks(BLOB))
    })
    const fetcher = fetcherWith(client, { emptyStore: true })
    const anonymous = fetcher.ensure(req())
    const sameAnonymous = fetcher.ensure(req())
    const authorized = fetcher.ensure(req({ kind: 'authorization', header: 'Bearer abc' }))
    // every request has reached the fetcher's single flight before the origin answers
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(client.calls, 1)
    release()
    const err = await rejectsWithName(anonymous, 'UnauthorizedError')
    assert.ok((err as UnauthorizedError).challenge?.startsWith('Bearer '))
    await rejectsWithName(sameAnonymous, 'UnauthorizedError')
    await (await authorized).done
    assert.equal(client.calls, 2)
    await fetcher.stop()
  })

  it('stop() aborts a running fetch', async () => {
    const client = new FakeClient(async (_c, signal) => answer((async function * () {
      yield BLOB.subarray(0, 1 << 20)
      await new Promise((_resolve, reject) => {
        if (signal?.aborted === true) reject(signal.reason)
        signal?.addEventListener('abort', () => { reject(signal.reason) })
      })
    })()))
    const fetcher = fetcherWith(client)
    const task = await fetcher.ensure(req())
    const pieces: number[] = []
    task.onPiece(p => { pieces.push(p.index) })
    await fetcher.stop()
    await rejectsWithName(task.done, 'UnavailableError')
    await rejectsWithName(fetcher.ensure(req()), 'UnavailableError')
    assert.equal(await store.getPartial(DIGEST), undefined)
  })
})
