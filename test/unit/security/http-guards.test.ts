import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { buildApp } from '../../../supernode/http/app.js'
import { bearerMatches } from '../../../shared/security/api-token.js'
import { ClientAllowlist } from '../../../shared/security/client-allowlist.js'
import { readTokenFile } from '../../../shared/security/secret-file.js'
import { parseSwarmKey } from '../../../shared/security/swarm-key.js'
import { createLogger } from '../../../shared/logging.js'

const TOKEN = 'operator-token-0123456789abcdef'

describe('operator API token', () => {
  const app = buildApp({
    logger: pino({ level: 'silent' }),
    metrics: new Registry(),
    info: () => ({ peerId: 'p', multiaddrs: [] }),
    ready: () => true,
    tasks: async () => ({ tasks: [{ digest: 'sha256:' + 'a'.repeat(64), state: 'stored' as const }] }),
    peers: () => ({ peers: [] }),
    apiToken: TOKEN
  })
  after(async () => { await app.close() })

  it('refuses operator endpoints without the token or with a wrong one', async () => {
    for (const url of ['/api/v1/tasks', '/api/v1/peers', '/api/v1/preheat']) {
      for (const authorization of [undefined, 'Bearer wrong', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, 'Bearer ']) {
        const res = await app.inject({ method: 'GET', url, headers: authorization != null ? { authorization } : {} })
        assert.equal(res.statusCode, 401, `${url} ${authorization}`)
        assert.equal(res.json().errors[0].code, 'UNAUTHORIZED')
        assert.match(String(res.headers['www-authenticate']), /^Bearer /)
      }
    }
  })

  it('serves them with the token; info, healthz and metrics stay open', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/tasks', headers: { authorization: `Bearer ${TOKEN}` } })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().tasks.length, 1)
    for (const url of ['/api/v1/info', '/healthz', '/metrics']) {
      assert.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url)
    }
  })

  it('protects metrics and health when asked to', async () => {
    const strict = buildApp({ logger: pino({ level: 'silent' }), metrics: new Registry(), info: () => ({ peerId: 'p', multiaddrs: [] }), ready: () => true, apiToken: TOKEN, protectMetrics: true })
    assert.equal((await strict.inject({ method: 'GET', url: '/metrics' })).statusCode, 401)
    assert.equal((await strict.inject({ method: 'GET', url: '/healthz' })).statusCode, 401)
    assert.equal((await strict.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 200)
    await strict.close()
  })

  it('compares bearer tokens exactly', () => {
    assert.equal(bearerMatches(`Bearer ${TOKEN}`, TOKEN), true)
    assert.equal(bearerMatches(`bearer ${TOKEN}`, TOKEN), true)
    assert.equal(bearerMatches(undefined, TOKEN), false)
    assert.equal(bearerMatches(`Bearer ${TOKEN.slice(1)}`, TOKEN), false)
  })
})

describe('client allowlist', () => {
  it('allows loopback always and the configured networks only', () => {
    const allow = new ClientAllowlist(['10.1.0.0/16', '192.168.7.9', 'fd00::/8'])
    for (const ok of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '10.1.200.3', '::ffff:10.1.0.1', '192.168.7.9', 'fd12::1']) assert.equal(allow.allows(ok), true, ok)
    for (const no of ['10.2.0.1', '192.168.7.10', 'fe80::1', '8.8.8.8', '', undefined]) assert.equal(allow.allows(no), false, String(no))
  })

  it('rejects malformed networks', () => {
    for (const bad of ['10.0.0.0/33', 'nope', '10.0.0.0/8/1', '::/129']) assert.throws(() => new ClientAllowlist([bad]), { name: 'ConfigError' }, bad)
  })
})

describe('secret files', () => {
  let dir: string
  after(async () => { if (dir != null) await rm(dir, { recursive: true, force: true }) })

  it('warns when a token file is readable by others, without logging its content', async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-secrets-'))
    const path = join(dir, 'token')
    await writeFile(path, `${TOKEN}\n`)
    await chmod(path, 0o644)
    let out = ''
    const logger = createLogger({ name: 't', level: 'info' }, new Writable({ write (chunk, _enc, cb) { out += String(chunk); cb() } }))
    assert.equal(readTokenFile(path, logger), TOKEN)
    assert.match(out, /readable by group or others/)
    assert.ok(!out.includes(TOKEN))
    out = ''
    await chmod(path, 0o600)
    readTokenFile(path, logger)
    assert.equal(out, '')
    await writeFile(path, 'short')
    assert.throws(() => readTokenFile(path, logger), { name: 'ConfigError' })
  })

  it('parses the libp2p swarm key format and refuses others', () => {
    const hex = 'ab'.repeat(32)
    assert.equal(Buffer.from(parseSwarmKey(Buffer.from(`/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`))).toString(), `/key/swarm/psk/1.0.0/\n/base16/\n${hex}`)
    assert.throws(() => parseSwarmKey(Buffer.from(hex)), { name: 'ConfigError' })
    assert.throws(() => parseSwarmKey(Buffer.from(`/key/swarm/psk/1.0.0/\n/base16/\n${hex.slice(2)}`)), { name: 'ConfigError' })
  })

  it('redacts authorization headers and tokens wherever a log line carries them', () => {
    let out = ''
    const logger = createLogger({ name: 't', level: 'info' }, new Writable({ write (chunk, _enc, cb) { out += String(chunk); cb() } }))
    logger.info({ headers: { authorization: 'Bearer s3cret-a' }, req: { headers: { authorization: 'Bearer s3cret-b', cookie: 's3cret-c' } }, ticket: 's3cret-d', request: { authorization: 's3cret-e' } }, 'x')
    assert.ok(!out.includes('s3cret'), out)
  })
})
