/**
 * The mirror's HTTP layer through app.inject() (and a loopback listener where inject would
 * normalise the URL or cannot show a destroyed connection). The BlobProvider and the
 * ManifestSource are in-memory stubs; the real ManifestProxy against a real registry is in
 * test/integration/mirror-manifests.test.ts.
 */
import { after, before, beforeEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { BlobUnknownError, UnauthorizedError, UpstreamError } from '../../../shared/errors.js'
import { digestOf } from '../../../shared/oci/digest.js'
import { OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_V2 } from '../../../shared/oci/media-types.js'
import type { BlobProvider, BlobRequest, ByteRange } from '../../../dfdaemon/blob-provider.js'
import { buildMirrorApp, type MirrorApp } from '../../../dfdaemon/mirror/app.js'
import type { ManifestFetchRequest, ManifestFetchResult, ManifestSource } from '../../../dfdaemon/mirror/manifest-proxy.js'
import { UpstreamResolver } from '../../../dfdaemon/mirror/upstream.js'

const BLOB = Buffer.from(Array.from({ length: 100 }, (_, i) => i))
const DIGEST = digestOf(BLOB).value
const MISSING = digestOf('missing').value
const FAIL_EARLY = digestOf('fail-early').value
const FAIL_MID = digestOf('fail-mid').value
const OVERSIZE = digestOf('oversize').value
const SECRET = digestOf('secret').value
const PRIVATE = digestOf('private').value
const STALL = digestOf('stall').value

interface Call { kind: 'stat' | 'open', req: BlobRequest, range?: ByteRange }

/** Map digest → bytes, plus a few digests that misbehave on purpose. */
class StubBlobs implements BlobProvider {
  calls: Call[] = []
  /** The body handed out for STALL: 10 bytes, then nothing ever again. */
  stalled: Readable | undefined
  constructor (private readonly blobs: Map<string, Buffer>) {}

  private lookup (req: BlobRequest): Buffer {
    if (req.digest.value === PRIVATE) throw new UnauthorizedError(undefined, 'Bearer realm="http://127.0.0.1:1/token",service="test"')
    if (req.digest.value === SECRET) throw new Error('db password is hunter2')
    const blob = this.blobs.get(req.digest.value)
    if (blob === undefined) throw new BlobUnknownError()
    return blob
  }

  async stat (req: BlobRequest): Promise<{ size: number }> {
    this.calls.push({ kind: 'stat', req })
    return { size: this.lookup(req).length }
  }

  async open (req: BlobRequest, range?: ByteRange): Promise<{ size: number, body: Readable }> {
    this.calls.push(range === undefined ? { kind: 'open', req } : { kind: 'open', req, range })
    const blob = this.lookup(req)
    const part = range === undefined ? blob : blob.subarray(range.start, range.end + 1)
    const digest = req.digest.value
    if (digest === FAIL_EARLY) return { size: blob.length, body: Readable.from((async function * () { yield * []; throw new UpstreamError('origin went away') })()) }
    if (digest === FAIL_MID) {
      return {
        size: blob.length,
        body: Readable.from((async function * () {
          yield part.subarray(0, 10)
          await new Promise((resolve) => setTimeout(resolve, 20))
          throw new UpstreamError('peer went away')
        })())
      }
    }
    if (digest === STALL) {
      this.stalled = new Readable({ read () {} })
      this.stalled.push(part.subarray(0, 10))
      return { size: blob.length, body: this.stalled }
    }
    if (digest === OVERSIZE) return { size: blob.length, body: Readable.from([part.subarray(0, 10), Buffer.concat([part.subarray(10), Buffer.from('extra')])]) }
    return { size: blob.length, body: Readable.from([part.subarray(0, 7), part.subarray(7)]) }
  }
}

class StubManifests implements ManifestSource {
  calls: ManifestFetchRequest[] = []
  next: (req: ManifestFetchRequest) => ManifestFetchResult = () => ({ status: 404, headers: {}, body: undefined })

  async fetch (req: ManifestFetchRequest): Promise<ManifestFetchResult> {
    this.calls.push(req)
    return this.next(req)
  }
}

function ociCode (body: string): string {
  return (JSON.parse(body) as { errors: Array<{ code: string }> }).errors[0].code
}

interface RawResponse { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer, aborted: boolean }

/** A request with the path exactly as given (no URL normalisation) and repeated headers kept apart. */
async function raw (port: number, method: string, path: string, headers: Record<string, string | string[]> = {}): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      let aborted = false
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('aborted', () => { aborted = true })
      res.on('error', () => { aborted = true })
      res.on('close', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), aborted: aborted || !res.complete })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

describe('mirror app', () => {
  let app: MirrorApp
  let blobs: StubBlobs
  let manifests: StubManifests
  let metrics: Registry
  let ready = true
  let port = 0

  before(async () => {
    blobs = new StubBlobs(new Map([
      [DIGEST, BLOB], [FAIL_EARLY, BLOB], [FAIL_MID, BLOB], [OVERSIZE, BLOB], [STALL, BLOB], [digestOf('').value, Buffer.alloc(0)]
    ]))
    manifests = new StubManifests()
    metrics = new Registry()
    app = buildMirrorApp({
      logger: pino({ level: 'silent' }),
      metrics,
      blobs,
      manifests,
      upstreams: new UpstreamResolver({ upstream: 'http://127.0.0.1:5999' }),
      ready: () => ready
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    port = (app.server.address() as AddressInfo).port
  })
  after(async () => { await app.close() })
  beforeEach(() => {
    blobs.calls = []
    manifests.calls = []
    ready = true
  })

  describe('/v2/', () => {
    for (const url of ['/v2/', '/v2']) {
      it(`GET ${url} answers {} with the API version header`, async () => {
        const res = await app.inject({ method: 'GET', url })
        assert.equal(res.statusCode, 200)
        assert.deepEqual(res.json(), {})
        assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
      })
    }

    it('HEAD /v2/ answers 200', async () => {
      const res = await app.inject({ method: 'HEAD', url: '/v2/' })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
    })
  })

  describe('blobs', () => {
    const url = `/v2/team/app/blobs/${DIGEST}`

    it('HEAD answers size, digest and type without a body', async () => {
      const res = await app.inject({ method: 'HEAD', url })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-length'], '100')
      assert.equal(res.headers['docker-content-digest'], DIGEST)
      assert.equal(res.headers['content-type'], 'application/octet-stream')
      assert.equal(res.headers['accept-ranges'], 'bytes')
      assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
      assert.equal(res.rawPayload.length, 0)
      assert.deepEqual(blobs.calls.map((c) => c.kind), ['stat'])
    })

    it('GET streams the whole blob', async () => {
      const res = await app.inject({ method: 'GET', url })
      assert.equal(res.statusCode, 200)
      assert.deepEqual(res.rawPayload, BLOB)
      assert.equal(res.headers['content-length'], '100')
      assert.equal(res.headers['docker-content-digest'], DIGEST)
      assert.equal(res.headers['content-type'], 'application/octet-stream')
      assert.equal(blobs.calls.at(-1)?.range, undefined)
    })

    it('GET of an empty blob answers 200 with no bytes', async () => {
      const res = await app.inject({ method: 'GET', url: `/v2/team/app/blobs/${digestOf('').value}` })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-length'], '0')
      assert.equal(res.rawPayload.length, 0)
    })

    const ranges: Array<[string, number, number]> = [['bytes=0-9', 0, 9], ['bytes=95-', 95, 99], ['bytes=-3', 97, 99], ['bytes=90-500', 90, 99]]
    for (const [header, start, end] of ranges) {
      it(`Range ${header} answers 206 with bytes ${start}-${end}`, async () => {
        const res = await app.inject({ method: 'GET', url, headers: { range: header } })
        assert.equal(res.statusCode, 206)
        assert.equal(res.headers['content-range'], `bytes ${start}-${end}/100`)
        assert.equal(res.headers['content-length'], String(end - start + 1))
        assert.deepEqual(res.rawPayload, BLOB.subarray(start, end + 1))
        assert.deepEqual(blobs.calls.at(-1)?.range, { start, end })
      })
    }

    for (const header of ['bytes=100-', 'bytes=50-10', 'bytes=x-y', 'bytes=-0', 'bytes=99999999999999999999-', 'bytes=-5-10']) {
      it(`Range ${header} answers 416 with Content-Range bytes */100`, async () => {
        const res = await app.inject({ method: 'GET', url, headers: { range: header } })
        assert.equal(res.statusCode, 416)
        assert.equal(res.headers['content-range'], 'bytes */100')
        assert.equal(ociCode(res.body), 'RANGE_INVALID')
        assert.equal(res.headers['docker-content-digest'], undefined)
        assert.ok(blobs.calls.every((c) => c.kind === 'stat'), 'no bytes were opened')
      })
    }

    it('a multi-range request gets the whole blob', async () => {
      const res = await app.inject({ method: 'GET', url, headers: { range: 'bytes=0-1,5-6' } })
      assert.equal(res.statusCode, 200)
      assert.deepEqual(res.rawPayload, BLOB)
    })

    it('HEAD ignores Range', async () => {
      const res = await app.inject({ method: 'HEAD', url, headers: { range: 'bytes=0-9' } })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-length'], '100')
    })

    it('If-Range with another validator sends the whole blob, with ours the range', async () => {
      const other = await app.inject({ method: 'GET', url, headers: { range: 'bytes=0-9', 'if-range': '"sha256:other"' } })
      assert.equal(other.statusCode, 200)
      assert.equal(other.rawPayload.length, 100)
      const same = await app.inject({ method: 'GET', url, headers: { range: 'bytes=0-9', 'if-range': `"${DIGEST}"` } })
      assert.equal(same.statusCode, 206)
    })

    it('an unknown blob is BLOB_UNKNOWN 404', async () => {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await app.inject({ method, url: `/v2/team/app/blobs/${MISSING}` })
        assert.equal(res.statusCode, 404)
        assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
        if (method === 'GET') assert.equal(ociCode(res.body), 'BLOB_UNKNOWN')
      }
    })

    it('an origin refusal is UNAUTHORIZED 401 with the challenge', async () => {
      const res = await app.inject({ method: 'GET', url: `/v2/team/app/blobs/${PRIVATE}` })
      assert.equal(res.statusCode, 401)
      assert.equal(ociCode(res.body), 'UNAUTHORIZED')
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="http://127.0.0.1:1/token",service="test"')
    })

    it('an unexpected error is a 500 UNKNOWN that tells nothing', async () => {
      const res = await app.inject({ method: 'GET', url: `/v2/team/app/blobs/${SECRET}` })
      assert.equal(res.statusCode, 500)
      assert.equal(ociCode(res.body), 'UNKNOWN')
      assert.ok(!res.body.includes('hunter2'))
    })

    it('an error before the first byte is an OCI error answer', async () => {
      const res = await app.inject({ method: 'GET', url: `/v2/team/app/blobs/${FAIL_EARLY}` })
      assert.equal(res.statusCode, 502)
      assert.equal(ociCode(res.body), 'UNAVAILABLE')
      assert.equal(res.headers['docker-content-digest'], undefined)
      assert.match(String(res.headers['content-type']), /^application\/json/)
    })

    it('an error after the headers destroys the response', async () => {
      const res = await raw(port, 'GET', `/v2/team/app/blobs/${FAIL_MID}`)
      assert.equal(res.status, 200)
      assert.equal(res.aborted, true)
      assert.deepEqual(res.body, BLOB.subarray(0, res.body.length), 'only correct bytes, then the cut')
      assert.ok(res.body.length < 100)
    })

    it('a provider that sends more bytes than announced has the response destroyed', async () => {
      const res = await raw(port, 'GET', `/v2/team/app/blobs/${OVERSIZE}`)
      assert.equal(res.aborted, true)
      assert.ok(res.body.length < 100)
      assert.deepEqual(res.body, BLOB.subarray(0, res.body.length))
    })

    it('a client that goes away releases a stalled provider body', async () => {
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: `/v2/team/app/blobs/${STALL}`, agent: false }, (res) => {
          res.once('data', () => { req.destroy() })
          res.on('error', () => {})
        })
        req.on('error', () => {})
        req.on('close', () => { resolve() })
        req.on('timeout', reject)
        req.end()
      })
      const body = blobs.stalled
      assert.ok(body !== undefined)
      if (!body.destroyed) await new Promise((resolve) => body.once('close', resolve))
      assert.equal(body.destroyed, true)
    })

    it('passes the client Authorization to the provider, and none when absent', async () => {
      await app.inject({ method: 'GET', url, headers: { authorization: 'Bearer abc' } })
      assert.equal(blobs.calls.at(-1)?.req.authorization, 'Bearer abc')
      await app.inject({ method: 'HEAD', url })
      assert.equal(blobs.calls.at(-1)?.req.authorization, undefined)
      assert.ok(!('authorization' in (blobs.calls.at(-1)?.req ?? {})))
    })
  })

  describe('upstream resolution reaches the provider', () => {
    const cases: Array<[string, string, string]> = [
      [`/v2/docker.io/library/alpine/blobs/${DIGEST}`, 'docker.io', 'library/alpine'],
      [`/v2/docker.io/alpine/blobs/${DIGEST}`, 'docker.io', 'library/alpine'],
      [`/v2/127.0.0.1:5000/team/app/blobs/${DIGEST}`, '127.0.0.1:5000', 'team/app'],
      [`/v2/library/alpine/blobs/${DIGEST}?ns=docker.io`, 'docker.io', 'library/alpine'],
      [`/v2/alpine/blobs/${DIGEST}?ns=docker.io`, 'docker.io', 'library/alpine'],
      [`/v2/team/app/blobs/${DIGEST}?ns=ghcr.io`, 'ghcr.io', 'team/app'],
      [`/v2/team/app/blobs/${DIGEST}`, '127.0.0.1:5999', 'team/app']
    ]
    for (const [url, registry, repository] of cases) {
      it(`${url} → ${registry} ${repository}`, async () => {
        const res = await app.inject({ method: 'HEAD', url })
        assert.equal(res.statusCode, 200)
        const req = blobs.calls.at(-1)?.req
        assert.equal(req?.registry, registry)
        assert.equal(req?.repository, repository)
        assert.equal(req?.digest.value, DIGEST)
      })
    }

    it('a manifest request gets the resolved endpoint', async () => {
      await app.inject({ method: 'GET', url: '/v2/ghcr.io/org/app/manifests/v1' })
      const call = manifests.calls.at(-1)
      assert.deepEqual(call?.endpoint, { name: 'ghcr.io', url: 'https://ghcr.io' })
      assert.equal(call?.repository, 'org/app')
      assert.equal(call?.reference, 'v1')
    })

    it('a repeated ns is refused', async () => {
      const res = await app.inject({ method: 'GET', url: `/v2/team/app/blobs/${DIGEST}?ns=a.io&ns=b.io` })
      assert.equal(res.statusCode, 400)
      assert.equal(ociCode(res.body), 'NAME_INVALID')
    })
  })

  describe('bad input', () => {
    const names: Array<[string, string]> = [
      ['uppercase', `/v2/Foo/blobs/${DIGEST}`],
      ['dot-dot', `/v2/a/../b/blobs/${DIGEST}`],
      ['dot', `/v2/./a/blobs/${DIGEST}`],
      ['encoded slash', `/v2/a%2Fb/blobs/${DIGEST}`],
      ['encoded dot-dot', `/v2/a/%2e%2e/b/blobs/${DIGEST}`],
      ['percent-encoding', `/v2/a%41/blobs/${DIGEST}`],
      ['empty segment', `/v2/a//b/blobs/${DIGEST}`],
      ['leading empty segment', `/v2//a/blobs/${DIGEST}`],
      ['backslash', `/v2/a\\b/blobs/${DIGEST}`],
      ['bad registry prefix', `/v2/bad_host:x/app/blobs/${DIGEST}`],
      ['bad ns', `/v2/app/blobs/${DIGEST}?ns=bad%20host`],
      ['too long', `/v2/${'a/'.repeat(150)}b/blobs/${DIGEST}`],
      ['manifest name', '/v2/a/../b/manifests/latest']
    ]
    for (const [label, url] of names) {
      it(`${label} is NAME_INVALID 400 and reaches nothing`, async () => {
        const res = await raw(port, 'GET', url)
        assert.equal(res.status, 400)
        assert.equal(ociCode(res.body.toString()), 'NAME_INVALID')
        assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
        assert.equal(blobs.calls.length, 0)
        assert.equal(manifests.calls.length, 0)
      })
    }

    it('inject sees the same for names fastify can route', async () => {
      const res = await app.inject({ method: 'GET', url: `/v2/a%2Fb/blobs/${DIGEST}` })
      assert.equal(res.statusCode, 400)
      assert.equal(ociCode(res.body), 'NAME_INVALID')
    })

    const digests = ['sha256:abc', 'latest', `sha256:${'A'.repeat(64)}`, 'md5:d41d8cd98f00b204e9800998ecf8427e', `sha256:${'a'.repeat(65)}`, '']
    for (const d of digests) {
      it(`blob digest ${JSON.stringify(d)} is DIGEST_INVALID 400`, async () => {
        const res = await app.inject({ method: 'GET', url: `/v2/team/app/blobs/${d}` })
        assert.equal(res.statusCode, 400)
        assert.equal(ociCode(res.body), 'DIGEST_INVALID')
        assert.equal(blobs.calls.length, 0)
      })
    }

    it('a manifest digest that is malformed is DIGEST_INVALID 400', async () => {
      const res = await app.inject({ method: 'GET', url: '/v2/team/app/manifests/sha256:abc' })
      assert.equal(res.statusCode, 400)
      assert.equal(ociCode(res.body), 'DIGEST_INVALID')
    })

    for (const tag of ['-bad', '.bad', 'a'.repeat(129), 'ta%67']) {
      it(`manifest tag ${tag.slice(0, 12)} is NAME_INVALID 400`, async () => {
        const res = await app.inject({ method: 'GET', url: `/v2/team/app/manifests/${tag}` })
        assert.equal(res.statusCode, 400)
        assert.equal(ociCode(res.body), 'NAME_INVALID')
        assert.equal(manifests.calls.length, 0)
      })
    }

    it('an over-long URL is refused with 414', async () => {
      const res = await app.inject({ method: 'GET', url: `/v2/team/app/manifests/latest?x=${'a'.repeat(3000)}` })
      assert.equal(res.statusCode, 414)
      assert.equal(ociCode(res.body), 'NAME_INVALID')
    })

    it('over the wire, an over-long URL is 414 and one past the header limit 431; nothing is reached', async () => {
      const long = await raw(port, 'GET', `/v2/team/app/blobs/${DIGEST}?x=${'a'.repeat(5000)}`)
      assert.equal(long.status, 414)
      assert.equal(ociCode(long.body.toString()), 'NAME_INVALID')
      const huge = await raw(port, 'GET', `/v2/${'a/'.repeat(20_000)}b/blobs/${DIGEST}`)
      assert.equal(huge.status, 431)
      assert.equal(ociCode(huge.body.toString()), 'UNSUPPORTED')
      assert.equal(blobs.calls.length, 0)
      assert.equal(manifests.calls.length, 0)
    })

    it('over the wire, oversize headers are 431 with an OCI body, and the listener keeps serving', async () => {
      const one = await raw(port, 'GET', `/v2/team/app/blobs/${DIGEST}`, { 'x-big': 'b'.repeat(20_000) })
      assert.equal(one.status, 431)
      assert.equal(ociCode(one.body.toString()), 'UNSUPPORTED')
      const many: Record<string, string> = {}
      for (let i = 0; i < 400; i++) many[`x-h${i}`] = 'v'.repeat(60)
      const lots = await raw(port, 'GET', `/v2/team/app/blobs/${DIGEST}`, many)
      assert.equal(lots.status, 431)
      const auth = await raw(port, 'GET', '/v2/team/app/manifests/latest', { authorization: `Bearer ${'t'.repeat(40_000)}` })
      assert.equal(auth.status, 431)
      assert.equal(blobs.calls.length, 0)
      assert.equal(manifests.calls.length, 0)
      const ok = await raw(port, 'GET', `/v2/team/app/blobs/${DIGEST}`)
      assert.equal(ok.status, 200)
      assert.deepEqual(ok.body, BLOB)
    })

    const badRanges = [
      'bytes=-5-10', 'bytes=--5', 'bytes=-', 'bytes=5--1', 'bytes=-1-', 'bytes=0--0',
      'bytes=-99999999999999999999', 'bytes=0-99999999999999999999', `bytes=${'9'.repeat(400)}-`,
      `bytes=0-1${',2-3'.repeat(100)}`, 'bytes=1e3-2e3', 'bytes=0x10-0x20', 'bytes=9007199254740993-'
    ]
    it('over the wire, huge and negative Range values are 416 RANGE_INVALID and open nothing', async () => {
      for (const header of badRanges) {
        const res = await raw(port, 'GET', `/v2/team/app/blobs/${DIGEST}`, { range: header })
        assert.equal(res.status, 416, `Range ${header.slice(0, 40)}`)
        assert.equal(res.headers['content-range'], 'bytes */100', `Range ${header.slice(0, 40)}`)
        assert.equal(ociCode(res.body.toString()), 'RANGE_INVALID')
      }
      assert.ok(blobs.calls.every((c) => c.kind === 'stat'), 'no bytes were opened')
    })

    it('a suffix range longer than the blob is the whole blob as 206; an end far past it is clamped', async () => {
      const suffix = await raw(port, 'GET', `/v2/team/app/blobs/${DIGEST}`, { range: 'bytes=-999999999999999' })
      assert.equal(suffix.status, 206)
      assert.equal(suffix.headers['content-range'], 'bytes 0-99/100')
      assert.deepEqual(suffix.body, BLOB)
      const far = await raw(port, 'GET', `/v2/team/app/blobs/${DIGEST}`, { range: 'bytes=98-999999999999999' })
      assert.equal(far.status, 206)
      assert.equal(far.headers['content-range'], 'bytes 98-99/100')
      assert.deepEqual(far.body, BLOB.subarray(98))
    })

    it('an undecodable URL is refused with an OCI error', async () => {
      const res = await raw(port, 'GET', `/v2/a%zz/blobs/${DIGEST}`)
      assert.equal(res.status, 400)
      assert.equal(ociCode(res.body.toString()), 'NAME_INVALID')
    })

    for (const method of ['PUT', 'POST', 'PATCH', 'DELETE'] as const) {
      for (const url of [`/v2/team/app/blobs/${DIGEST}`, '/v2/team/app/blobs/uploads/', '/v2/team/app/manifests/latest', '/v2/']) {
        it(`${method} ${url.slice(0, 30)} is UNSUPPORTED 405`, async () => {
          const res = await app.inject({ method, url, payload: method === 'DELETE' ? undefined : Buffer.alloc(10), headers: { 'content-type': 'application/octet-stream' } })
          assert.equal(res.statusCode, 405)
          assert.equal(ociCode(res.body), 'UNSUPPORTED')
          assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
        })
      }
    }

    for (const url of ['/v2/_catalog', '/v2/team/app/tags/list', '/v2/team/app/blobs/uploads/x', '/nope', '/v2x']) {
      it(`${url} is a 404 OCI error`, async () => {
        const res = await app.inject({ method: 'GET', url })
        assert.equal(res.statusCode, 404)
        assert.equal(ociCode(res.body), 'UNSUPPORTED')
      })
    }
  })

  describe('manifests', () => {
    const body = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}')
    const digest = digestOf(body).value

    it('forwards every Accept line separately, with Authorization', async () => {
      manifests.next = () => ({
        status: 200,
        headers: { 'content-type': OCI_MANIFEST, 'docker-content-digest': digest, 'content-length': String(body.length), etag: `"${digest}"` },
        body: Readable.from([body])
      })
      const accept = [OCI_INDEX, OCI_MANIFEST, `${DOCKER_MANIFEST_V2}, application/json`]
      const res = await raw(port, 'GET', '/v2/team/app/manifests/latest', { accept, authorization: 'Bearer tok' })
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, body)
      assert.equal(res.headers['content-type'], OCI_MANIFEST)
      assert.equal(res.headers['docker-content-digest'], digest)
      assert.equal(res.headers['content-length'], String(body.length))
      assert.equal(res.headers.etag, `"${digest}"`)
      const call = manifests.calls.at(-1)
      assert.deepEqual(call?.accept, accept)
      assert.equal(call?.authorization, 'Bearer tok')
      assert.equal(call?.method, 'GET')
      assert.equal(call?.repository, 'team/app')
      assert.deepEqual(call?.endpoint, { name: '127.0.0.1:5999', url: 'http://127.0.0.1:5999' })
    })

    it('HEAD passes headers without a body', async () => {
      manifests.next = () => ({ status: 200, headers: { 'content-type': OCI_MANIFEST, 'docker-content-digest': digest, 'content-length': String(body.length) }, body: undefined })
      const res = await app.inject({ method: 'HEAD', url: `/v2/team/app/manifests/${digest}` })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-length'], String(body.length))
      assert.equal(res.headers['docker-content-digest'], digest)
      assert.equal(res.rawPayload.length, 0)
      assert.equal(manifests.calls.at(-1)?.method, 'HEAD')
      assert.equal(manifests.calls.at(-1)?.reference, digest)
      assert.equal(manifests.calls.at(-1)?.authorization, undefined)
    })

    it('passes a 401 and its challenge through', async () => {
      const challenge = 'Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:team/app:pull"'
      manifests.next = () => ({ status: 401, headers: { 'content-type': 'application/json', 'www-authenticate': challenge }, body: Readable.from([Buffer.from('{"errors":[{"code":"UNAUTHORIZED","message":"x"}]}')]) })
      const res = await app.inject({ method: 'GET', url: '/v2/team/app/manifests/latest' })
      assert.equal(res.statusCode, 401)
      assert.equal(res.headers['www-authenticate'], challenge)
      assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
      assert.equal(ociCode(res.body), 'UNAUTHORIZED')
    })

    it('a thrown typed error becomes its OCI answer', async () => {
      manifests.next = () => { throw new UpstreamError('connect ECONNREFUSED 127.0.0.1:5999') }
      const res = await app.inject({ method: 'GET', url: '/v2/team/app/manifests/latest' })
      assert.equal(res.statusCode, 502)
      assert.equal(ociCode(res.body), 'UNAVAILABLE')
      assert.ok(!res.body.includes('ECONNREFUSED'))
    })
  })

  describe('health and metrics', () => {
    it('/healthz follows ready()', async () => {
      ready = false
      assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 503)
      ready = true
      const res = await app.inject({ method: 'GET', url: '/healthz' })
      assert.equal(res.statusCode, 200)
      assert.equal(res.json().status, 'ok')
    })

    it('/metrics counts requests by route, method and status', async () => {
      await app.inject({ method: 'GET', url: `/v2/team/app/blobs/${DIGEST}` })
      const res = await app.inject({ method: 'GET', url: '/metrics' })
      assert.equal(res.statusCode, 200)
      assert.match(String(res.headers['content-type']), /^text\/plain/)
      assert.match(res.body, /damselfly_dfdaemon_http_requests_total\{route="blobs",method="GET",status="200"\} \d+/)
      assert.match(res.body, /damselfly_dfdaemon_http_requests_total\{route="v2",method="PUT",status="405"\} \d+/)
    })

    it('a second app on the same registry reuses the metrics', async () => {
      const again = buildMirrorApp({ logger: pino({ level: 'silent' }), metrics, blobs, manifests, upstreams: new UpstreamResolver() })
      await again.close()
    })
  })
})

describe('mirror app: config prefetch', () => {
  const config = digestOf('{"architecture":"amd64"}')
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.value, size: 24 }, layers: [] }))

  async function served (prefetchConfigs: boolean | undefined, method: 'GET' | 'HEAD'): Promise<Call[]> {
    const blobs = new StubBlobs(new Map([[config.value, Buffer.from('{"architecture":"amd64"}')]]))
    const manifests = new StubManifests()
    manifests.next = (req) => ({
      status: 200,
      headers: { 'content-type': OCI_MANIFEST },
      ...(req.method === 'HEAD' ? { body: undefined } : { body: Readable.from([manifest]), bytes: manifest })
    })
    const app = buildMirrorApp({
      logger: pino({ level: 'silent' }),
      metrics: new Registry(),
      blobs,
      manifests,
      upstreams: new UpstreamResolver({ upstream: 'http://127.0.0.1:5999' }),
      ...(prefetchConfigs !== undefined ? { prefetchConfigs } : {})
    })
    try {
      const res = await app.inject({ method, url: '/v2/team/app/manifests/v1', headers: { authorization: 'Bearer abc' } })
      assert.equal(res.statusCode, 200)
      if (method === 'GET') assert.deepEqual(res.rawPayload, manifest)
      await new Promise(resolve => setImmediate(resolve))
      return blobs.calls
    } finally {
      await app.close()
    }
  }

  it('a GET of an image manifest starts its config with the client\'s credentials', async () => {
    const calls = await served(undefined, 'GET')
    assert.equal(calls.length, 1)
    assert.equal(calls[0].kind, 'stat')
    assert.equal(calls[0].req.digest.value, config.value)
    assert.equal(calls[0].req.repository, 'team/app')
    assert.equal(calls[0].req.authorization, 'Bearer abc')
  })

  it('a HEAD starts nothing, and neither does a GET with prefetchConfigs off', async () => {
    assert.deepEqual(await served(undefined, 'HEAD'), [])
    assert.deepEqual(await served(false, 'GET'), [])
  })
})
