import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { findChallenge, parseChallenges } from '../../../shared/oci/auth-challenge.js'

describe('parseChallenges', () => {
  it('parses a Docker Hub bearer challenge', () => {
    const c = parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"')
    assert.deepEqual(c, [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' } }])
  })

  it('keeps commas and escaped quotes inside quoted values', () => {
    const [c] = parseChallenges('Bearer realm="http://x/token",scope="repository:a:pull,push",error="insufficient_scope",error_description="say \\"hi\\""')
    assert.equal(c.params.scope, 'repository:a:pull,push')
    assert.equal(c.params.error, 'insufficient_scope')
    assert.equal(c.params.error_description, 'say "hi"')
  })

  it('parses Basic with a realm, case-insensitively', () => {
    assert.deepEqual(parseChallenges('BASIC Realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }])
  })

  it('splits several challenges in one header and across header lines', () => {
    const c = parseChallenges('Basic realm="a, b", Bearer realm="http://t/token", service=reg , Negotiate')
    assert.deepEqual(c.map((x) => x.scheme), ['basic', 'bearer', 'negotiate'])
    assert.equal(c[0].params.realm, 'a, b')
    assert.deepEqual(c[1].params, { realm: 'http://t/token', service: 'reg' })
    assert.equal(findChallenge(c, 'bearer')?.params.service, 'reg')
    const lines = parseChallenges(['Basic realm="x"', 'Bearer realm="y"'])
    assert.deepEqual(lines.map((x) => x.params.realm), ['x', 'y'])
  })

  it('reads token68 and tolerates spacing', () => {
    const c = parseChallenges('Newauth abc123==, Bearer  realm = "r" ,  service="s"')
    assert.equal(c[0].token68, 'abc123==')
    assert.deepEqual(c[1].params, { realm: 'r', service: 's' })
  })

  it('survives garbage', () => {
    assert.deepEqual(parseChallenges(undefined), [])
    assert.deepEqual(parseChallenges(''), [])
    assert.deepEqual(parseChallenges(',,,'), [])
    const unterminated = parseChallenges('Bearer realm="http://x')
    assert.equal(unterminated[0].params.realm, 'http://x')
    assert.deepEqual(parseChallenges('"quoted" Bearer realm="x"'), [])
    assert.deepEqual(parseChallenges('Bearer constructor="x"')[0].params, { constructor: 'x' })
  })
})
