import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import type { RegistryEndpoint } from '../../../shared/oci/endpoints.js'
import type { RegistryResponse, RequestOptions } from '../../../shared/oci/registry-types.js'
import { OCI_INDEX, OCI_MANIFEST } from '../../../shared/oci/media-types.js'
import { ManifestProxy, type UpstreamRequester } from '../../../dfdaemon/mirror/manifest-proxy.js'
import { rejectsWithName } from '../../helpers/assertions.js'

const ENDPOINT: RegistryEndpoint = { name: '127.0.0.1:5999', url: 'http://127.0.0.1:5999' }

function response (status: number, headers: RegistryResponse['headers'], body = ''): RegistryResponse {
  const stream = Readable.from([Buffer.from(body)]) as Readable & { dump: () => Promise<void> }
  stream.dump = async () => { stream.resume() }
  return { status, headers, url: `${ENDPOINT.url}/v2/x`, body: stream as unknown as RegistryResponse['body'] }
}

class StubClient implements UpstreamRequester {
  calls: Array<{ endpoint: RegistryEndpoint, path: string, options: RequestOptions }> = []
  constructor (private readonly answer: (options: RequestOptions) => Promise<RegistryResponse>) {}
  async request (endpoint: RegistryEndpoint, path: string, options: RequestOptions = {}): Promise<RegistryResponse> {
    this.calls.push({ endpoint, path, options })
    return await this.answer(options)
  }
}

async function text (body: Readable | undefined): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of body ?? []) chunks.push(Buffer.from(c as Uint8Array))
  return Buffer.concat(chunks).toString()
}

describe('ManifestProxy', () => {
  it('forwards every Accept value as its own header line and the Authorization unchanged', async () => {
    const client = new StubClient(async () => response(200, {
      'content-type': OCI_MANIFEST, 'docker-content-digest': 'sha256:x', 'content-length': '2', etag: '"e"', 'set-cookie': 'no', server: 'registry'
    }, '{}'))
    const proxy = new ManifestProxy({ client })
    const res = await proxy.fetch({ endpoint: ENDPOINT, repository: 'team/app', reference: 'latest', method: 'GET', accept: [OCI_INDEX, OCI_MANIFEST], authorization: 'Bearer t' })
    assert.equal(client.calls[0].path, '/v2/team/app/manifests/latest')
    assert.deepEqual(client.calls[0].endpoint, ENDPOINT)
    assert.deepEqual(client.calls[0].options.headers, { accept: [OCI_INDEX, OCI_MANIFEST] })
    assert.deepEqual(client.calls[0].options.credentials, { kind: 'authorization', header: 'Bearer t' })
    assert.equal(client.calls[0].options.method, 'GET')
    assert.ok(client.calls[0].options.signal instanceof AbortSignal)
    assert.equal(res.status, 200)
    assert.deepEqual(res.headers, { 'content-type': OCI_MANIFEST, 'docker-content-digest': 'sha256:x', 'content-length': '2', etag: '"e"' })
    assert.equal(await text(res.body), '{}')
  })

  it('goes anonymous without an Authorization and sends no Accept when the client sent none', async () => {
    const client = new StubClient(async () => response(200, {}, '{}'))
    await new ManifestProxy({ client }).fetch({ endpoint: ENDPOINT, repository: 'a', reference: 'v1', method: 'GET', accept: [] })
    assert.deepEqual(client.calls[0].options.credentials, { kind: 'anonymous' })
    assert.deepEqual(client.calls[0].options.headers, {})
  })

  it('passes WWW-Authenticate only on a 401', async () => {
    const challenge = 'Bearer realm="http://127.0.0.1:1/token"'
    const proxy401 = new ManifestProxy({ client: new StubClient(async () => response(401, { 'www-authenticate': challenge })) })
    const r401 = await proxy401.fetch({ endpoint: ENDPOINT, repository: 'a', reference: 'v1', method: 'HEAD', accept: [] })
    assert.equal(r401.status, 401)
    assert.equal(r401.headers['www-authenticate'], challenge)
    assert.equal(r401.body, undefined)
    const proxy404 = new ManifestProxy({ client: new StubClient(async () => response(404, { 'www-authenticate': challenge })) })
    const r404 = await proxy404.fetch({ endpoint: ENDPOINT, repository: 'a', reference: 'v1', method: 'HEAD', accept: [] })
    assert.equal(r404.headers['www-authenticate'], undefined)
  })

  it('times out an upstream that does not answer', async () => {
    const client = new StubClient(async (options) => await new Promise((_resolve, reject) => {
      options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) })
    }))
    const proxy = new ManifestProxy({ client }, { headersTimeoutMs: 10 })
    // AbortSignal.timeout's timer does not hold the event loop open; a server would, so this test does
    const keepAlive = setInterval(() => {}, 1000)
    try {
      await rejectsWithName(proxy.fetch({ endpoint: ENDPOINT, repository: 'a', reference: 'v1', method: 'GET', accept: [] }), 'TimeoutError')
    } finally {
      clearInterval(keepAlive)
    }
  })

  it('gives up when the client goes away', async () => {
    const client = new StubClient(async (options) => await new Promise((_resolve, reject) => {
      options.signal?.addEventListener('abort', () => { reject(new Error('aborted')) })
    }))
    const controller = new AbortController()
    const proxy = new ManifestProxy({ client })
    const pending = proxy.fetch({ endpoint: ENDPOINT, repository: 'a', reference: 'v1', method: 'GET', accept: [], signal: controller.signal })
    controller.abort(new DOMException('gone', 'AbortError'))
    await rejectsWithName(pending, 'AbortError')
  })

  it('wraps a transport failure as UpstreamError', async () => {
    const client = new StubClient(async () => { throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) })
    await rejectsWithName(new ManifestProxy({ client }).fetch({ endpoint: ENDPOINT, repository: 'a', reference: 'v1', method: 'GET', accept: [] }), 'UpstreamError')
  })

  it('refuses a manifest larger than the limit', async () => {
    const client = new StubClient(async () => response(200, { 'content-length': String(5 * 1024 * 1024) }))
    await rejectsWithName(new ManifestProxy({ client }).fetch({ endpoint: ENDPOINT, repository: 'a', reference: 'v1', method: 'GET', accept: [] }), 'UpstreamError')
  })
})
