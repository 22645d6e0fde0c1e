/**
 * RegistryClient against small in-process HTTP servers on 127.0.0.1 that misbehave on purpose:
 * raw header checks, redirects across origins, truncation, wrong bytes, status mapping.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import pino from 'pino'
import { RegistryClient } from '../../../shared/oci/registry-client.js'
import { digestOf } from '../../../shared/oci/digest.js'
import { MANIFEST_ACCEPT, OCI_MANIFEST } from '../../../shared/oci/media-types.js'
import type { RegistryEndpoint } from '../../../shared/oci/endpoints.js'
import { freePort } from '../../helpers/ports.js'
import { collect, rejectsWithName } from '../../helpers/assertions.js'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

async function serve (handler: Handler): Promise<{ ep: RegistryEndpoint, server: Server }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return { ep: { name: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` }, server }
}

const BLOB = Buffer.alloc(10_000, 7)
const BLOB_DIGEST = digestOf(BLOB).value
const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST }))
const MANIFEST_DIGEST = digestOf(MANIFEST).value

describe('RegistryClient (in-process servers)', () => {
  const servers: Server[] = []
  const logLines: string[] = []
  const sink = new Writable({ write (chunk, _enc, cb) { logLines.push(String(chunk)); cb() } })
  const client = new RegistryClient({ logger: pino({ level: 'debug' }, sink), headersTimeoutMs: 300 })
  const start = async (h: Handler): Promise<RegistryEndpoint> => {
    const s = await serve(h)
    servers.push(s.server)
    return s.ep
  }
  after(async () => {
    await client.close()
    for (const s of servers) { s.closeAllConnections(); s.close() }
  })

  it('sends every Accept value as its own header line', async () => {
    let accepts: string[] = []
    const ep = await start((req, res) => {
      accepts = []
      for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === 'accept') accepts.push(req.rawHeaders[i + 1])
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': MANIFEST_DIGEST }).end(MANIFEST)
    })
    const m = await client.getManifest(ep, 'a/b', 'v1')
    assert.deepEqual(accepts, MANIFEST_ACCEPT)
    assert.equal(m.digest, MANIFEST_DIGEST)
    assert.equal(m.mediaType, OCI_MANIFEST)
  })

  it('checks manifest bytes against the digest and caps their size', async () => {
    const ep = await start((req, res) => {
      if (req.url?.endsWith('/big')) { res.writeHead(200, { 'content-type': OCI_MANIFEST }).end(Buffer.alloc(4 * 1024 * 1024 + 1)); return }
      res.writeHead(200, { 'content-type': OCI_MANIFEST }).end(Buffer.from('{"tampered":true}'))
    })
    await rejectsWithName(client.getManifest(ep, 'a/b', MANIFEST_DIGEST), 'DigestMismatchError')
    await rejectsWithName(client.getManifest(ep, 'a/b', 'big'), 'UpstreamError')
  })

  it('maps statuses and OCI error codes to typed errors', async () => {
    const ep = await start((req, res) => {
      const status = Number(new URL(req.url ?? '/', 'http://x').pathname.split('/')[3].replace('s', ''))
      const body = status === 404 ? JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'no such repo' }] }) : ''
      res.writeHead(status, { 'content-type': 'application/json' }).end(body)
    })
    const expect: Array<[number, string]> = [[403, 'DeniedError'], [404, 'NameUnknownError'], [429, 'TooManyRequestsError'], [500, 'UpstreamError'], [503, 'UpstreamError']]
    for (const [status, name] of expect) {
      const err = await rejectsWithName(client.getManifest(ep, `r/s${status}`, 'v1'), name)
      if (name === 'UpstreamError') assert.equal((err as { upstreamStatus?: number }).upstreamStatus, status)
    }
    const unauthorized = await start((_req, res) => { res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end() })
    const err = await rejectsWithName(client.getManifest(unauthorized, 'a/b', 'v1'), 'UnauthorizedError')
    assert.equal((err as { challenge?: string }).challenge, 'Basic realm="x"')
  })

  it('follows a redirect to storage without the registry Authorization', async () => {
    let storageAuth: string | undefined = 'unset'
    const storage = await start((req, res) => {
      storageAuth = req.headers.authorization
      res.writeHead(200, { 'content-length': String(BLOB.length) }).end(BLOB)
    })
    let registryAuth: string | undefined
    const ep = await start((req, res) => {
      registryAuth = req.headers.authorization
      if (req.headers.authorization === undefined) { res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end(); return }
      res.writeHead(307, { location: `${storage.url}/bucket/blob?sig=secret-signature` }).end()
    })
    const blob = await client.getBlob(ep, 'a/b', BLOB_DIGEST, { credentials: { kind: 'basic', username: 'u', password: 'p4ssw0rd' } })
    assert.deepEqual(await collect(blob.body), BLOB)
    assert.match(registryAuth ?? '', /^Basic /)
    assert.equal(storageAuth, undefined)
    assert.ok(!logLines.join('').includes('secret-signature'), 'signed query strings are not logged')
  })

  it('keeps Authorization on a same-origin redirect', async () => {
    let seen: string | undefined
    const ep = await start((req, res) => {
      if (req.url?.startsWith('/moved')) { seen = req.headers.authorization; res.writeHead(200, { 'content-length': String(BLOB.length) }).end(BLOB); return }
      res.writeHead(302, { location: '/moved' }).end()
    })
    const blob = await client.getBlob(ep, 'a/b', BLOB_DIGEST, { credentials: { kind: 'authorization', header: 'Bearer client-token' } })
    await collect(blob.body)
    assert.equal(seen, 'Bearer client-token')
  })

  it('fails a truncated blob with UpstreamError and wrong bytes with DigestMismatchError', async () => {
    const ep = await start((req, res) => {
      if (req.url?.includes('truncated')) {
        res.writeHead(200, { 'content-length': String(BLOB.length) })
        res.write(BLOB.subarray(0, 4000), () => { res.destroy() })
        return
      }
      res.writeHead(200, { 'content-length': String(BLOB.length) }).end(Buffer.alloc(BLOB.length, 8))
    })
    const truncated = await client.getBlob(ep, 'a/truncated', BLOB_DIGEST, { verify: false })
    await rejectsWithName(collect(truncated.body), 'UpstreamError')
    const wrong = await client.getBlob(ep, 'a/wrong', BLOB_DIGEST)
    await rejectsWithName(collect(wrong.body), 'DigestMismatchError')
  })

  it('slices the body itself when a server ignores Range', async () => {
    const ep = await start((_req, res) => { res.writeHead(200, { 'content-length': String(BLOB.length) }).end(Buffer.from(BLOB.map((_, i) => i % 251))) })
    const part = await client.getBlob(ep, 'a/b', BLOB_DIGEST, { range: { start: 300, end: 599 } })
    assert.equal(part.status, 206)
    assert.equal(part.length, 300)
    assert.deepEqual(await collect(part.body), Buffer.from(BLOB.map((_, i) => i % 251)).subarray(300, 600))
  })

  it('turns silence into TimeoutError and refused connections into UpstreamError', async () => {
    const ep = await start(() => { /* never answers */ })
    await rejectsWithName(client.getManifest(ep, 'a/b', 'v1'), 'TimeoutError')
    const port = await freePort()
    await rejectsWithName(client.getManifest({ name: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` }, 'a/b', 'v1'), 'UpstreamError')
  })

  it('passes a caller abort through unchanged', async () => {
    const ep = await start(() => { /* never answers */ })
    const ac = new AbortController()
    const p = client.getManifest(ep, 'a/b', 'v1', { signal: ac.signal })
    ac.abort()
    await rejectsWithName(p, 'AbortError')
  })

  it('validates names, references and ranges before sending anything', async () => {
    const ep = { name: 'unused', url: 'http://127.0.0.1:9' }
    await rejectsWithName(client.getManifest(ep, 'Bad/Name', 'v1'), 'InvalidNameError')
    await rejectsWithName(client.getManifest(ep, 'a/b', '-bad'), 'InvalidReferenceError')
    await rejectsWithName(client.getManifest(ep, 'a/b', 'sha256:abc'), 'InvalidDigestError')
    await rejectsWithName(client.getBlob(ep, 'a/b', BLOB_DIGEST, { range: { start: 5, end: 2 } }), 'InvalidRangeError')
  })

  it('never logs credentials', () => {
    const text = logLines.join('')
    assert.ok(logLines.length > 0)
    for (const secret of ['p4ssw0rd', 'client-token', Buffer.from('u:p4ssw0rd').toString('base64')]) assert.ok(!text.includes(secret), secret)
  })
})
