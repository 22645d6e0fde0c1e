/**
 * The mirror's manifest route with the real ManifestProxy and RegistryClient against a real
 * distribution registry: exact digests and media types by tag and by digest, repeated Accept
 * headers, the three ways to name the registry, and 401 challenges passed to the client in
 * token mode so the client does its own token dance. Blobs are not exercised here.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { BlobUnknownError } from '../../shared/errors.js'
import { digestOf } from '../../shared/oci/digest.js'
import * as mt from '../../shared/oci/media-types.js'
import { RegistryClient } from '../../shared/oci/registry-client.js'
import type { BlobProvider } from '../../dfdaemon/blob-provider.js'
import { buildMirrorApp, type MirrorApp } from '../../dfdaemon/mirror/app.js'
import { ManifestProxy } from '../../dfdaemon/mirror/manifest-proxy.js'
import { UpstreamResolver } from '../../dfdaemon/mirror/upstream.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'

const silent = pino({ level: 'silent' })
const noBlobs: BlobProvider = {
  stat: async () => { throw new BlobUnknownError() },
  open: async () => { throw new BlobUnknownError() }
}

function mirror (client: RegistryClient, upstream: string): MirrorApp {
  return buildMirrorApp({
    logger: silent,
    metrics: new Registry(),
    blobs: noBlobs,
    manifests: new ManifestProxy({ client, logger: silent }),
    upstreams: new UpstreamResolver({ upstream })
  })
}

function ociCode (body: string): string {
  return (JSON.parse(body) as { errors: Array<{ code: string }> }).errors[0].code
}

describe('mirror manifests against distribution (no auth)', () => {
  let reg: TestRegistry
  let client: RegistryClient
  let app: MirrorApp
  let other: MirrorApp
  let oci: PushedImage
  let docker: PushedImage
  let multi: PushedImage

  before(async () => {
    reg = await startRegistry()
    oci = await pushImage(reg, { repository: 'test/oci', tag: 'v1', layers: [{ size: 4000 }] })
    docker = await pushImage(reg, { repository: 'test/docker', tag: 'v1', layers: [{ size: 4000 }], format: 'docker' })
    multi = await pushImage(reg, { repository: 'test/multi', tag: 'v1', layers: [{ size: 4000 }], platforms: ['linux/amd64', 'linux/arm64'] })
    client = new RegistryClient({ logger: silent })
    app = mirror(client, reg.url)
    // A mirror whose default upstream is elsewhere: the registry must be named by ns or path.
    other = mirror(client, 'http://127.0.0.1:9')
  })

  after(async () => {
    await app?.close()
    await other?.close()
    await client?.close()
    await reg?.stop()
  })

  const ALL = [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST_V2]

  for (const [label, image, repo, accept, mediaType] of [
    ['oci manifest', () => oci, 'test/oci', ALL, mt.OCI_MANIFEST],
    ['docker manifest', () => docker, 'test/docker', [mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST_V2], mt.DOCKER_MANIFEST_V2],
    ['oci index', () => multi, 'test/multi', ALL, mt.OCI_INDEX]
  ] as const) {
    it(`GET and HEAD a ${label} by tag and by digest`, async () => {
      const img = image()
      const body = img.index?.body ?? img.manifests[0].body
      for (const reference of ['v1', img.tagDigest]) {
        const get = await app.inject({ method: 'GET', url: `/v2/${repo}/manifests/${reference}`, headers: { accept: [...accept] } })
        assert.equal(get.statusCode, 200)
        assert.equal(get.headers['docker-content-digest'], img.tagDigest)
        assert.equal(get.headers['content-type'], mediaType)
        assert.equal(get.headers['content-length'], String(body.length))
        assert.equal(get.headers['docker-distribution-api-version'], 'registry/2.0')
        assert.deepEqual(get.rawPayload, body)
        assert.equal(digestOf(get.rawPayload).value, img.tagDigest)

        const head = await app.inject({ method: 'HEAD', url: `/v2/${repo}/manifests/${reference}`, headers: { accept: [...accept] } })
        assert.equal(head.statusCode, 200)
        assert.equal(head.headers['docker-content-digest'], img.tagDigest)
        assert.equal(head.headers['content-type'], mediaType)
        assert.equal(head.headers['content-length'], String(body.length))
        assert.equal(head.rawPayload.length, 0)
      }
    })
  }

  it('GETs a platform manifest of an index by digest', async () => {
    const m = multi.manifests[1]
    const res = await app.inject({ method: 'GET', url: `/v2/test/multi/manifests/${m.digest}`, headers: { accept: ALL } })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['docker-content-digest'], m.digest)
    assert.equal(res.headers['content-type'], mt.OCI_MANIFEST)
    assert.deepEqual(res.rawPayload, m.body)
  })

  it('reaches the registry named by ?ns= or by the first path segment', async () => {
    for (const url of [`/v2/test/oci/manifests/v1?ns=${reg.host}`, `/v2/${reg.host}/test/oci/manifests/v1`]) {
      const res = await other.inject({ method: 'GET', url, headers: { accept: ALL } })
      assert.equal(res.statusCode, 200, url)
      assert.equal(res.headers['docker-content-digest'], oci.tagDigest)
    }
  })

  it('passes MANIFEST_UNKNOWN through for an unknown tag', async () => {
    const res = await app.inject({ method: 'GET', url: '/v2/test/oci/manifests/nope', headers: { accept: ALL } })
    assert.equal(res.statusCode, 404)
    assert.equal(ociCode(res.body), 'MANIFEST_UNKNOWN')
  })

  it('answers UNAVAILABLE when the upstream cannot be reached', async () => {
    const res = await other.inject({ method: 'GET', url: '/v2/test/oci/manifests/v1', headers: { accept: ALL } })
    assert.equal(res.statusCode, 502)
    assert.equal(ociCode(res.body), 'UNAVAILABLE')
  })
})

describe('mirror manifests against distribution (token auth)', () => {
  let reg: TestRegistry
  let client: RegistryClient
  let app: MirrorApp
  let img: PushedImage

  before(async () => {
    reg = await startRegistry({ auth: 'token', users: { tester: 'tester-secret' }, anonymousPull: false })
    img = await pushImage(reg, { repository: 'private/app', tag: 'v1', layers: [{ size: 4000 }], credentials: { username: 'tester', password: 'tester-secret' } })
    client = new RegistryClient({ logger: silent })
    app = mirror(client, reg.url)
  })

  after(async () => {
    await app?.close()
    await client?.close()
    await reg?.stop()
  })

  it('passes the 401 and its challenge to a client without credentials, then serves its bearer token', async () => {
    const url = '/v2/private/app/manifests/v1'
    for (const method of ['GET', 'HEAD'] as const) {
      const denied = await app.inject({ method, url, headers: { accept: [mt.OCI_INDEX, mt.OCI_MANIFEST] } })
      assert.equal(denied.statusCode, 401)
      assert.match(String(denied.headers['www-authenticate']), /^Bearer realm="/)
      assert.ok(String(denied.headers['www-authenticate']).includes(reg.tokenServer?.realm ?? '?'))
    }

    // The client's own token dance, with the challenge the mirror passed back.
    const challenge = String((await app.inject({ method: 'GET', url })).headers['www-authenticate'])
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    const tokenUrl = new URL(params.realm)
    tokenUrl.searchParams.set('service', params.service)
    tokenUrl.searchParams.set('scope', params.scope ?? 'repository:private/app:pull')
    const tokenRes = await fetch(tokenUrl, { headers: { authorization: `Basic ${Buffer.from('tester:tester-secret').toString('base64')}` } })
    const { token } = await tokenRes.json() as { token: string }

    const ok = await app.inject({ method: 'GET', url, headers: { accept: [mt.OCI_INDEX, mt.OCI_MANIFEST], authorization: `Bearer ${token}` } })
    assert.equal(ok.statusCode, 200)
    assert.equal(ok.headers['docker-content-digest'], img.tagDigest)
    assert.equal(ok.headers['content-type'], mt.OCI_MANIFEST)
    assert.deepEqual(ok.rawPayload, img.manifests[0].body)
  })

  it('passes a 401 through for a bad bearer token', async () => {
    const res = await app.inject({ method: 'GET', url: '/v2/private/app/manifests/v1', headers: { authorization: 'Bearer not-a-token' } })
    assert.equal(res.statusCode, 401)
    assert.match(String(res.headers['www-authenticate']), /^Bearer /)
  })
})
