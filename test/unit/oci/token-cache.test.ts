import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TokenCache, type TokenKey } from '../../../shared/oci/token-cache.js'

const key = (scope: string, identity = 'anonymous'): TokenKey => ({ realm: 'http://t/token', service: 's', scope, identity })

describe('TokenCache', () => {
  it('keys tokens by realm, service, scope and identity', () => {
    const c = new TokenCache()
    c.set(key('repository:a:pull'), 't1', 300)
    assert.equal(c.get(key('repository:a:pull')), 't1')
    assert.equal(c.get(key('repository:b:pull')), undefined)
    assert.equal(c.get(key('repository:a:pull', 'basic:x')), undefined)
    c.delete(key('repository:a:pull'))
    assert.equal(c.get(key('repository:a:pull')), undefined)
  })

  it('does not cache a token whose lifetime is used up by the margin', () => {
    const c = new TokenCache({ marginMs: 120_000 })
    c.set(key('x'), 'short', 0.0001)
    assert.equal(c.get(key('x')), undefined)
    c.set(key('y'), 'default-lifetime')
    assert.equal(c.get(key('y')), 'default-lifetime')
  })

  it('is bounded', () => {
    const c = new TokenCache({ maxEntries: 2 })
    for (const s of ['a', 'b', 'c']) c.set(key(s), s, 300)
    assert.equal(c.size, 2)
    assert.equal(c.get(key('a')), undefined)
  })
})
