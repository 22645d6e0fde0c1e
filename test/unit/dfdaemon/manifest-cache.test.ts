import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { mkdtemp, readdir, rm, writeFile, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { digestOf } from '../../../shared/oci/digest.js'
import type { RegistryEndpoint } from '../../../shared/oci/endpoints.js'
import type { RegistryResponse, RequestOptions } from '../../../shared/oci/registry-types.js'
import { OCI_MANIFEST, DOCKER_MANIFEST_V2 } from '../../../shared/oci/media-types.js'
import { ManifestCache } from '../../../dfdaemon/mirror/manifest-cache.js'
import { ManifestProxy, type ManifestFetchRequest, type UpstreamRequester } from '../../../dfdaemon/mirror/manifest-proxy.js'
import { rejectsWithName } from '../../helpers/assertions.js'

const ENDPOINT: RegistryEndpoint = { name: '127.0.0.1:5999', url: 'http://127.0.0.1:5999' }
const BODY = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }))
const DIGEST = digestOf(BODY).value

function response (status: number, headers: RegistryResponse['headers'], body: Buffer = Buffer.alloc(0)): RegistryResponse {
  const stream = Readable.from([body]) as Readable & { dump: () => Promise<void> }
  stream.dump = async () => { stream.resume() }
  return { status, headers, url: `${ENDPOINT.url}/v2/x`, body: stream as unknown as RegistryResponse['body'] }
}

/** An upstream whose next answer the test sets: a response, or a transport failure. */
class Upstream implements UpstreamRequester {
  answer: () => RegistryResponse = () => response(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': DIGEST }, BODY)
  calls = 0
  async request (_endpoint: RegistryEndpoint, _path: string, _options: RequestOptions = {}): Promise<RegistryResponse> {
    this.calls++
    return this.answer()
  }
}

const down = (): RegistryResponse => { throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) }

async function text (body: Readable | undefined): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of body ?? []) chunks.push(Buffer.from(c as Uint8Array))
  return Buffer.concat(chunks)
}

function get (reference: string, extra: Partial<ManifestFetchRequest> = {}): ManifestFetchRequest {
  return { endpoint: ENDPOINT, repository: 'team/app', reference, method: 'GET', accept: [OCI_MANIFEST], ...extra }
}

describe('ManifestCache and the proxy while the upstream is down', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'damselfly-manifest-cache-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('serves a manifest by digest and a tag\'s last digest only while the upstream is unreachable', async () => {
    const cache = new ManifestCache({ dir: join(dir, 'a') })
    await cache.init()
    const upstream = new Upstream()
    const proxy = new ManifestProxy({ client: upstream, cache })
    const first = await proxy.fetch(get('v1'))
    assert.deepEqual(await text(first.body), BODY)

    upstream.answer = down
    for (const reference of ['v1', DIGEST]) {
      const res = await proxy.fetch(get(reference))
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], DIGEST)
      assert.equal(res.headers['content-type'], OCI_MANIFEST)
      assert.deepEqual(await text(res.body), BODY)
    }
    const head = await proxy.fetch(get('v1', { method: 'HEAD' }))
    assert.equal(head.body, undefined)
    assert.equal(head.headers['content-length'], String(BODY.length))
    // 5xx counts as unreachable too
    upstream.answer = () => response(503, {})
    assert.equal((await proxy.fetch(get('v1'))).status, 200)
    // not for another repository, not for a media type the client does not accept, not for an unknown tag
    upstream.answer = down
    await rejectsWithName(proxy.fetch(get(DIGEST, { repository: 'other/app' })), 'UpstreamError')
    await rejectsWithName(proxy.fetch(get('v1', { accept: [DOCKER_MANIFEST_V2] })), 'UpstreamError')
    await rejectsWithName(proxy.fetch(get('v2')), 'UpstreamError')
    await cache.flush()

    // a restarted daemon still has it
    const again = new ManifestCache({ dir: join(dir, 'a') })
    await again.init()
    const res = await new ManifestProxy({ client: upstream, cache: again }).fetch(get('v1'))
    assert.deepEqual(await text(res.body), BODY)
  })

  it('never answers from cache when the upstream answers, 401 and 404 included, and caches neither', async () => {
    const cache = new ManifestCache({ dir: join(dir, 'b') })
    await cache.init()
    const upstream = new Upstream()
    const proxy = new ManifestProxy({ client: upstream, cache })
    await text((await proxy.fetch(get(DIGEST))).body)
    upstream.answer = () => response(401, { 'www-authenticate': 'Bearer realm="x"' })
    const unauthorized = await proxy.fetch(get(DIGEST))
    assert.equal(unauthorized.status, 401)
    assert.equal(unauthorized.headers['www-authenticate'], 'Bearer realm="x"')
    upstream.answer = () => response(404, {})
    assert.equal((await proxy.fetch(get('v9'))).status, 404)
    upstream.answer = down
    await rejectsWithName(proxy.fetch(get('v9')), 'UpstreamError')
  })

  it('does not keep a manifest that is not what its digest says, and drops one damaged on disk', async () => {
    const cache = new ManifestCache({ dir: join(dir, 'c') })
    await cache.init()
    const upstream = new Upstream()
    const proxy = new ManifestProxy({ client: upstream, cache })
    upstream.answer = () => response(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': `sha256:${'0'.repeat(64)}` }, BODY)
    await text((await proxy.fetch(get('v1'))).body)
    upstream.answer = down
    await rejectsWithName(proxy.fetch(get('v1')), 'UpstreamError')
    await rejectsWithName(proxy.fetch(get(DIGEST)), 'UpstreamError')

    upstream.answer = () => response(200, { 'content-type': OCI_MANIFEST }, BODY)
    await text((await proxy.fetch(get(DIGEST))).body)
    const file = join(dir, 'c', 'sha256', DIGEST.slice(7))
    const stored = await readFile(file)
    await writeFile(file, Buffer.concat([stored.subarray(0, stored.length - 2), Buffer.from('!}')]))
    upstream.answer = down
    await rejectsWithName(proxy.fetch(get(DIGEST)), 'UpstreamError')
    assert.deepEqual(await readdir(join(dir, 'c', 'sha256')), [])
  })

  it('stays within its bounds, least recently used out first', async () => {
    const cache = new ManifestCache({ dir: join(dir, 'd'), maxEntries: 2 })
    await cache.init()
    const bodies = [1, 2, 3].map(n => Buffer.from(`{"n":${n}}`))
    for (const b of bodies.slice(0, 2)) await cache.put(digestOf(b).value, 'r/x', 'application/json', b)
    assert.ok(await cache.get(digestOf(bodies[0]).value, 'r/x') != null)
    await cache.put(digestOf(bodies[2]).value, 'r/x', 'application/json', bodies[2])
    assert.ok(await cache.get(digestOf(bodies[0]).value, 'r/x') != null)
    assert.equal(await cache.get(digestOf(bodies[1]).value, 'r/x'), undefined)
    assert.equal((await readdir(join(dir, 'd', 'sha256'))).length, 2)
  })
})
