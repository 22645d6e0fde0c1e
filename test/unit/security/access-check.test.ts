import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { AccessChecker, credentialHash, type AccessClient } from '../../../shared/security/access-check.js'
import { endpointFromUrl } from '../../../shared/oci/endpoints.js'
import { BlobUnknownError, DeniedError, UnauthorizedError, UpstreamError } from '../../../shared/errors.js'
import type { BlobOptions } from '../../../shared/oci/registry-types.js'

const logger = pino({ level: 'silent' })
const DIGEST = `sha256:${'ab'.repeat(32)}`
const ALICE = { kind: 'authorization' as const, header: 'Bearer alice-token' }
const BOB = { kind: 'authorization' as const, header: 'Bearer bob-token' }

/** A fake origin: `public/` repositories for anyone, `private/` for alice's token only. */
function origin (opts: { down?: boolean } = {}): AccessClient & { calls: Array<{ repository: string, who: string }> } {
  const calls: Array<{ repository: string, who: string }> = []
  return {
    calls,
    headBlob: async (_ep, repository: string, digest: string, o: BlobOptions) => {
      const c = o.credentials
      const who = c?.kind === 'authorization' ? c.header : 'anonymous'
      calls.push({ repository, who })
      await new Promise(resolve => setTimeout(resolve, 5))
      if (opts.down === true) throw new UpstreamError('origin down')
      if (digest !== DIGEST) throw new BlobUnknownError()
      if (repository.startsWith('public/')) return { size: 1, digest }
      if (who === 'anonymous') throw new UnauthorizedError('auth required', 'Bearer realm="https://auth.example/token",scope="repository:private/app:pull"')
      if (who === ALICE.header) return { size: 1, digest }
      throw new DeniedError()
    }
  }
}

function checker (client: AccessClient, now?: { ttlMs?: number, refusalTtlMs?: number }): AccessChecker {
  const ep = endpointFromUrl('https://registry.example')
  return new AccessChecker({ client, resolveEndpoint: () => ep, logger }, now)
}

const req = (repository: string, credentials: typeof ALICE | { kind: 'anonymous' }, digest = DIGEST) => ({ registry: 'registry.example', repository, digest, credentials })

describe('AccessChecker', () => {
  it('calls a blob public when the anonymous HEAD succeeds, with no credentialed check', async () => {
    const o = origin()
    const a = checker(o)
    assert.equal(await a.check(req('public/app', ALICE)), 'public')
    assert.deepEqual(o.calls, [{ repository: 'public/app', who: 'anonymous' }])
  })

  it('grants a private blob to credentials the origin accepts', async () => {
    const a = checker(origin())
    assert.equal(await a.check(req('private/app', ALICE)), 'private')
  })

  it('refuses anonymous clients with the origin challenge, and other users with DENIED', async () => {
    const a = checker(origin())
    await assert.rejects(a.check(req('private/app', { kind: 'anonymous' })), (err: Error) => {
      assert.equal(err.name, 'UnauthorizedError')
      assert.match((err as UnauthorizedError).challenge ?? '', /^Bearer realm=/)
      return true
    })
    await assert.rejects(a.check(req('private/app', BOB)), { name: 'DeniedError' })
  })

  it('refuses a digest the named repository does not hold, whatever the credentials', async () => {
    const a = checker(origin())
    await assert.rejects(a.check(req('public/app', ALICE, `sha256:${'cd'.repeat(32)}`)), { name: 'BlobUnknownError' })
  })

  it('caches decisions per repository, digest and credential, and shares concurrent checks', async () => {
    const o = origin()
    const a = checker(o)
    await Promise.all([a.check(req('private/app', ALICE)), a.check(req('private/app', ALICE)), a.check(req('private/app', ALICE))])
    assert.equal(o.calls.length, 2) // one anonymous, one with alice's token
    await a.check(req('private/app', ALICE))
    assert.equal(o.calls.length, 2)
    await assert.rejects(a.check(req('private/app', BOB)), { name: 'DeniedError' })
    assert.equal(o.calls.length, 3) // bob's token is asked on its own; the anonymous refusal is cached
    await assert.rejects(a.check(req('private/app', BOB)), { name: 'DeniedError' })
    assert.equal(o.calls.length, 3)
    await a.check(req('private/other', ALICE)).catch(() => {})
    assert.equal(o.calls.length, 5)
  })

  it('forgets grants after the TTL and refusals sooner', async () => {
    const o = origin()
    const a = checker(o, { ttlMs: 400, refusalTtlMs: 30 })
    await a.check(req('private/app', ALICE))
    await assert.rejects(a.check(req('private/app', BOB)))
    const n = o.calls.length
    await new Promise(resolve => setTimeout(resolve, 100))
    await assert.rejects(a.check(req('private/app', BOB)))
    assert.equal(o.calls.length, n + 2, 'anonymous and bob refusals were asked again')
    await a.check(req('private/app', ALICE))
    assert.equal(o.calls.length, n + 2, 'alice grant still cached')
    await new Promise(resolve => setTimeout(resolve, 400))
    await a.check(req('private/app', ALICE))
    assert.equal(o.calls.length, n + 4)
  })

  it('does not cache an unreachable origin', async () => {
    const o = origin({ down: true })
    const a = checker(o)
    await assert.rejects(a.check(req('private/app', ALICE)), { name: 'UpstreamError' })
    await assert.rejects(a.check(req('private/app', ALICE)), { name: 'UpstreamError' })
    assert.equal(o.calls.length, 2)
  })

  it('keys the cache by a hash, never the credential itself', () => {
    const h = credentialHash(ALICE)
    assert.ok(!h.includes('alice'))
    assert.notEqual(h, credentialHash(BOB))
    assert.equal(credentialHash({ kind: 'anonymous' }), '')
  })
})
