/**
 * Redirects under the allow-list: UrlOrigin follows them one hop at a time and
 * asks the policy at every hop, so an allowed URL cannot bounce the supernode
 * to one that is not. Loopback HTTP servers count every request by path.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { UrlOrigin } from '../../../shared/http/url-origin.js'
import { digestOf } from '../../../shared/oci/digest.js'
import { UrlAllowlist } from '../../../shared/security/url-allowlist.js'
import { collect, rejectsWithName } from '../../helpers/assertions.js'

const FILE = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz')

interface Counted { base: string, hits: Map<string, number>, close: () => Promise<void> }

async function serve (routes: (base: string) => Record<string, (res: import('node:http').ServerResponse, range?: string) => void>): Promise<Counted> {
  const hits = new Map<string, number>()
  let table: ReturnType<typeof routes> = {}
  const server: Server = createServer((req, res) => {
    const path = req.url ?? ''
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const route = table[path]
    if (route == null) { res.writeHead(404).end(); return }
    route(res, req.headers.range)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  table = routes(base)
  return {
    base,
    hits,
    close: async () => { server.closeAllConnections(); await new Promise<void>(resolve => server.close(() => { resolve() })) }
  }
}

function file (res: import('node:http').ServerResponse, range?: string): void {
  const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '')
  if (m == null) { res.writeHead(200, { 'content-length': FILE.length }).end(FILE); return }
  const [start, end] = [Number(m[1]), Number(m[2])]
  res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${FILE.length}` }).end(FILE.subarray(start, end + 1))
}

const redirect = (status: number, location: string) => (res: import('node:http').ServerResponse): void => { res.writeHead(status, { location }).end() }

describe('UrlOrigin redirects under an allow-list', () => {
  let elsewhere: Counted
  let origin: Counted

  before(async () => {
    elsewhere = await serve(() => ({ '/file': file }))
    origin = await serve(() => ({
      '/pub/file': file,
      '/private/file': file,
      '/pub/moved': redirect(302, '/pub/file'),
      '/pub/moved-307': redirect(307, '/pub/file'),
      '/pub/out': redirect(302, '/private/file'),
      '/pub/dotdot': redirect(301, '/pub/../private/file'),
      '/pub/away': redirect(307, `${elsewhere.base}/file`),
      '/pub/loop': redirect(302, '/pub/loop'),
      '/pub/scheme': redirect(302, 'file:///etc/passwd'),
      '/pub/creds': redirect(302, 'http://user:pw@127.0.0.1:9/file'),
      '/pub/nowhere': (res) => { res.writeHead(302).end() }
    }))
  })

  after(async () => { await Promise.all([origin?.close(), elsewhere?.close()]) })

  const allowPub = (): UrlOrigin => new UrlOrigin({ policy: new UrlAllowlist([`${origin.base}/pub/`]) }, { maxRedirects: 3 })

  it('follows a redirect that stays on the list, for HEAD, GET and ranges', async () => {
    const urls = allowPub()
    assert.equal((await urls.head(`${origin.base}/pub/moved`)).size, FILE.length)
    assert.deepEqual(await collect((await urls.get(`${origin.base}/pub/moved`)).body), FILE)
    const part = await urls.get(`${origin.base}/pub/moved-307`, { range: { start: 4, end: 9 } })
    assert.equal(part.status, 206)
    assert.deepEqual(await collect(part.body), FILE.subarray(4, 10))
  })

  it('refuses a redirect off the list without requesting its target', async () => {
    const urls = allowPub()
    await rejectsWithName(urls.get(`${origin.base}/pub/out`), 'UrlNotAllowedError')
    await rejectsWithName(urls.head(`${origin.base}/pub/dotdot`), 'UrlNotAllowedError')
    await rejectsWithName(urls.get(`${origin.base}/pub/away`), 'UrlNotAllowedError')
    assert.equal(origin.hits.get('/private/file'), undefined)
    assert.equal(elsewhere.hits.size, 0)
  })

  it('refuses a URL off the list without any request', async () => {
    const before = origin.hits.get('/private/file')
    await rejectsWithName(allowPub().get(`${origin.base}/private/file`), 'UrlNotAllowedError')
    assert.equal(origin.hits.get('/private/file'), before)
  })

  it('stops after maxRedirects hops', async () => {
    await rejectsWithName(allowPub().get(`${origin.base}/pub/loop`), 'UpstreamError')
    assert.equal(origin.hits.get('/pub/loop'), 4)
  })

  it('refuses redirects to other schemes, to URLs with credentials, and without a Location', async () => {
    const any = new UrlOrigin({ policy: new UrlAllowlist(['*']) })
    await rejectsWithName(any.get(`${origin.base}/pub/scheme`), 'DeniedError')
    await rejectsWithName(any.get(`${origin.base}/pub/creds`), 'DeniedError')
    await rejectsWithName(any.get(`${origin.base}/pub/nowhere`), 'UpstreamError')
  })

  it('a body that does not hash to the digest asked for fails with DigestMismatchError', async () => {
    const urls = allowPub()
    assert.deepEqual(await collect((await urls.get(`${origin.base}/pub/moved`, { verify: digestOf(FILE) })).body), FILE)
    await rejectsWithName(collect((await urls.get(`${origin.base}/pub/moved`, { verify: digestOf(Buffer.from('other')) })).body), 'DigestMismatchError')
  })

  it('without a policy (a daemon\'s own back-to-source) follows any http(s) redirect', async () => {
    const urls = new UrlOrigin()
    assert.deepEqual(await collect((await urls.get(`${origin.base}/pub/out`)).body), FILE)
    assert.equal(origin.hits.get('/private/file'), 1)
  })
})
