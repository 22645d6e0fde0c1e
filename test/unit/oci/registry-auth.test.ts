/**
 * The token dance with an identity token: an OAuth2 refresh-token grant POSTed to the realm
 * (distribution's OAuth spec), against a small in-process registry and token endpoint.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { RegistryClient } from '../../../shared/oci/registry-client.js'
import { OAUTH_CLIENT_ID } from '../../../shared/oci/registry-auth.js'
import { digestOf } from '../../../shared/oci/digest.js'
import type { RegistryEndpoint } from '../../../shared/oci/endpoints.js'
import { collect, rejectsWithName } from '../../helpers/assertions.js'

const BLOB = Buffer.alloc(4096, 3)
const BLOB_DIGEST = digestOf(BLOB).value
const REFRESH = 'refresh-token-0123456789-abcdef'
const ACCESS = 'access-token-for-pull'

interface TokenCall { method: string, contentType?: string, authorization?: string, query: string, form: Record<string, string> }

async function listen (handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server, url: string }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  return { server, url: `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}` }
}

describe('RegistryAuth with an identity token', () => {
  const servers: Server[] = []
  const logLines: string[] = []
  const client = new RegistryClient({ logger: pino({ level: 'debug' }, new Writable({ write (chunk, _enc, cb) { logLines.push(String(chunk)); cb() } })) })
  after(async () => {
    await client.close()
    for (const s of servers) { s.closeAllConnections(); s.close() }
  })

  /** A bearer-token registry whose token endpoint speaks OAuth2 POSTs; records what each saw. */
  async function setup (scheme: 'bearer' | 'basic' = 'bearer'): Promise<{ ep: RegistryEndpoint, tokenCalls: TokenCall[], registryAuth: Array<string | undefined> }> {
    const tokenCalls: TokenCall[] = []
    const registryAuth: Array<string | undefined> = []
    const token = await listen((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => { chunks.push(c) })
      req.on('end', () => {
        const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')))
        tokenCalls.push({ method: req.method ?? '', contentType: req.headers['content-type'], authorization: req.headers.authorization, query: new URL(req.url ?? '/', 'http://x').search, form })
        if (form.refresh_token !== REFRESH) { res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_grant' })); return }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: ACCESS, expires_in: 300, scope: form.scope }))
      })
    })
    servers.push(token.server)
    const registry = await listen((req, res) => {
      registryAuth.push(req.headers.authorization)
      if (req.headers.authorization !== `Bearer ${ACCESS}`) {
        const challenge = scheme === 'bearer' ? `Bearer realm="${token.url}/token?realmparam=1",service="test-registry"` : 'Basic realm="r"'
        res.writeHead(401, { 'www-authenticate': challenge }).end()
        return
      }
      res.writeHead(200, { 'content-length': String(BLOB.length) }).end(BLOB)
    })
    servers.push(registry.server)
    return { ep: { name: registry.url.slice('http://'.length), url: registry.url }, tokenCalls, registryAuth }
  }

  it('POSTs a refresh_token grant with client_id, service and scope; the identity token goes nowhere else; the access token is cached', async () => {
    const { ep, tokenCalls, registryAuth } = await setup()
    const creds = { kind: 'identity-token' as const, token: REFRESH }
    for (let i = 0; i < 2; i++) {
      const blob = await client.getBlob(ep, 'team/app', BLOB_DIGEST, { credentials: creds })
      assert.equal(digestOf(await collect(blob.body)).value, BLOB_DIGEST)
    }
    assert.equal(tokenCalls.length, 1)
    const [call] = tokenCalls
    assert.equal(call.method, 'POST')
    assert.equal(call.contentType, 'application/x-www-form-urlencoded')
    assert.equal(call.authorization, undefined)
    assert.equal(call.query, '?realmparam=1')
    assert.deepEqual(call.form, { grant_type: 'refresh_token', refresh_token: REFRESH, client_id: OAUTH_CLIENT_ID, service: 'test-registry', scope: 'repository:team/app:pull' })
    assert.deepEqual(registryAuth, [undefined, `Bearer ${ACCESS}`, `Bearer ${ACCESS}`])
    assert.ok(logLines.every((l) => !l.includes(REFRESH) && !l.includes(ACCESS)))
  })

  it('a refused identity token (invalid_grant) is UnauthorizedError; a Basic-only registry gets no credentials from it', async () => {
    const bearer = await setup()
    await rejectsWithName(client.getBlob(bearer.ep, 'team/app', BLOB_DIGEST, { credentials: { kind: 'identity-token', token: 'revoked' } }), 'UnauthorizedError')
    const basic = await setup('basic')
    await rejectsWithName(client.getBlob(basic.ep, 'team/app', BLOB_DIGEST, { credentials: { kind: 'identity-token', token: REFRESH } }), 'UnauthorizedError')
    assert.deepEqual(basic.registryAuth, [undefined])
    assert.equal(basic.tokenCalls.length, 0)
  })
})
