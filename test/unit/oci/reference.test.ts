import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { throwsWithName } from '../../helpers/assertions.js'
import {
  formatReference, isValidTag, parseReference, registryApiHost, validateRepository, validateTag
} from '../../../shared/oci/reference.js'

const HEX = 'a'.repeat(64)

describe('parseReference', () => {
  it('applies Docker Hub rules', () => {
    assert.deepEqual(parseReference('alpine'), { registry: 'docker.io', repository: 'library/alpine' })
    assert.deepEqual(parseReference('alpine:3.20'), { registry: 'docker.io', repository: 'library/alpine', tag: '3.20' })
    assert.deepEqual(parseReference('docker.io/alpine'), { registry: 'docker.io', repository: 'library/alpine' })
    assert.deepEqual(parseReference('index.docker.io/library/alpine'), { registry: 'docker.io', repository: 'library/alpine' })
    assert.deepEqual(parseReference('bitnami/redis:7'), { registry: 'docker.io', repository: 'bitnami/redis', tag: '7' })
  })

  it('detects the registry domain', () => {
    assert.deepEqual(parseReference('ghcr.io/org/app:v1'), { registry: 'ghcr.io', repository: 'org/app', tag: 'v1' })
    assert.deepEqual(parseReference('localhost/app'), { registry: 'localhost', repository: 'app' })
    assert.deepEqual(parseReference('127.0.0.1:5000/a/b/c:t'), { registry: '127.0.0.1:5000', repository: 'a/b/c', tag: 't' })
    assert.deepEqual(parseReference('[::1]:5000/app:1'), { registry: '[::1]:5000', repository: 'app', tag: '1' })
    assert.deepEqual(parseReference('registry:5000/app'), { registry: 'registry:5000', repository: 'app' })
    // a first component without '.', ':' or 'localhost' is a path, not a registry
    assert.deepEqual(parseReference('myhost/app'), { registry: 'docker.io', repository: 'myhost/app' })
  })

  it('parses tags and digests together', () => {
    const r = parseReference(`ghcr.io/org/app:v1@sha256:${HEX}`)
    assert.deepEqual(r, { registry: 'ghcr.io', repository: 'org/app', tag: 'v1', digest: `sha256:${HEX}` })
    assert.deepEqual(parseReference(`alpine@sha256:${HEX}`), { registry: 'docker.io', repository: 'library/alpine', digest: `sha256:${HEX}` })
    assert.deepEqual(parseReference('localhost:5000/app'), { registry: 'localhost:5000', repository: 'app' })
  })

  it('formats references back', () => {
    assert.equal(formatReference(parseReference('alpine:3')), 'docker.io/library/alpine:3')
    assert.equal(formatReference(parseReference(`127.0.0.1:5000/a@sha256:${HEX}`)), `127.0.0.1:5000/a@sha256:${HEX}`)
  })

  it('rejects malformed references with typed errors', () => {
    throwsWithName(() => parseReference(''), 'InvalidReferenceError')
    throwsWithName(() => parseReference(':tag'), 'InvalidReferenceError')
    throwsWithName(() => parseReference('Alpine'), 'InvalidNameError')
    throwsWithName(() => parseReference('ghcr.io/Org/app'), 'InvalidNameError')
    throwsWithName(() => parseReference('a//b'), 'InvalidNameError')
    throwsWithName(() => parseReference('a/b/'), 'InvalidNameError')
    throwsWithName(() => parseReference('a..b'), 'InvalidNameError')
    throwsWithName(() => parseReference('-a'), 'InvalidNameError')
    throwsWithName(() => parseReference('app:'), 'InvalidReferenceError')
    throwsWithName(() => parseReference('app:-bad'), 'InvalidReferenceError')
    throwsWithName(() => parseReference(`app:${'t'.repeat(129)}`), 'InvalidReferenceError')
    throwsWithName(() => parseReference('app@sha256:abc'), 'InvalidDigestError')
    throwsWithName(() => parseReference(`app@md5:${HEX}`), 'InvalidDigestError')
    throwsWithName(() => parseReference('bad_host.io:port/app'), 'InvalidReferenceError')
    throwsWithName(() => parseReference(`ghcr.io/${'a'.repeat(250)}`), 'InvalidNameError')
  })
})

describe('validateRepository / validateTag', () => {
  it('accepts the distribution grammar', () => {
    for (const name of ['a', 'a/b', 'a.b', 'a_b', 'a__b', 'a-b', 'a---b', 'library/alpine', 'x0/y1/z2']) assert.equal(validateRepository(name), name)
    assert.equal(validateRepository('a'.repeat(255)), 'a'.repeat(255))
  })

  it('rejects malformed names', () => {
    for (const name of ['', 'A', 'a/B', 'a..b', 'a___b', 'a/', '/a', 'a//b', '.a', 'a-', 'a b', 'a/../b', 'a:b', 'a'.repeat(256)]) {
      throwsWithName(() => validateRepository(name), 'InvalidNameError')
    }
  })

  it('validates tags', () => {
    for (const tag of ['latest', 'v1.2.3', 'A_b-C.d', '_x', 'x'.repeat(128)]) assert.ok(isValidTag(tag), tag)
    for (const tag of ['', '.x', '-x', 'a/b', 'a:b', 'x'.repeat(129), 'é']) {
      assert.equal(isValidTag(tag), false, tag)
      throwsWithName(() => validateTag(tag), 'InvalidReferenceError')
    }
  })
})

describe('registryApiHost', () => {
  it('maps Docker Hub to its API host', () => {
    assert.equal(registryApiHost('docker.io'), 'registry-1.docker.io')
    assert.equal(registryApiHost('index.docker.io'), 'registry-1.docker.io')
    assert.equal(registryApiHost('ghcr.io'), 'ghcr.io')
  })
})
