import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { UpstreamResolver } from '../../../dfdaemon/mirror/upstream.js'

describe('UpstreamResolver', () => {
  it('sends plain names to the default upstream, Docker Hub by default', () => {
    const r = new UpstreamResolver()
    assert.deepEqual(r.resolve({ name: 'alpine' }), {
      registry: 'docker.io',
      endpoint: { name: 'docker.io', url: 'https://registry-1.docker.io' },
      repository: 'library/alpine'
    })
    assert.equal(r.resolve({ name: 'library/alpine' }).repository, 'library/alpine')
    assert.equal(r.resolve({ name: 'bitnami/redis' }).repository, 'bitnami/redis')
  })

  it('uses the configured default upstream URL and adds no library/ outside Docker Hub', () => {
    const r = new UpstreamResolver({ upstream: 'http://127.0.0.1:5000/' })
    assert.deepEqual(r.resolve({ name: 'alpine' }), {
      registry: '127.0.0.1:5000',
      endpoint: { name: '127.0.0.1:5000', url: 'http://127.0.0.1:5000' },
      repository: 'alpine'
    })
  })

  it('lets ?ns= name the registry first', () => {
    const r = new UpstreamResolver({ upstream: 'http://127.0.0.1:5000' })
    const got = r.resolve({ name: 'library/alpine', ns: 'docker.io' })
    assert.equal(got.registry, 'docker.io')
    assert.equal(got.repository, 'library/alpine')
    assert.deepEqual(got.endpoint, { name: 'docker.io', url: 'https://registry-1.docker.io' })
    // ns wins over something that looks like a registry prefix
    const prefixed = r.resolve({ name: 'ghcr.io/org/app', ns: 'quay.io' })
    assert.equal(prefixed.registry, 'quay.io')
    assert.equal(prefixed.repository, 'ghcr.io/org/app')
  })

  it('applies the Docker Hub rule to ns=docker.io and normalises index.docker.io', () => {
    const r = new UpstreamResolver()
    assert.equal(r.resolve({ name: 'alpine', ns: 'docker.io' }).repository, 'library/alpine')
    assert.equal(r.resolve({ name: 'alpine', ns: 'index.docker.io' }).registry, 'docker.io')
  })

  it('takes a registry from the first path segment when one follows', () => {
    const r = new UpstreamResolver()
    const hub = r.resolve({ name: 'docker.io/library/alpine' })
    assert.equal(hub.registry, 'docker.io')
    assert.equal(hub.repository, 'library/alpine')
    assert.equal(r.resolve({ name: 'docker.io/alpine' }).repository, 'library/alpine')
    const local = r.resolve({ name: '127.0.0.1:5000/team/app' })
    assert.deepEqual(local, { registry: '127.0.0.1:5000', endpoint: { name: '127.0.0.1:5000', url: 'http://127.0.0.1:5000' }, repository: 'team/app' })
    const lh = r.resolve({ name: 'localhost/app' })
    assert.equal(lh.registry, 'localhost')
    assert.equal(lh.repository, 'app')
    const ghcr = r.resolve({ name: 'ghcr.io/org/app' })
    assert.deepEqual(ghcr.endpoint, { name: 'ghcr.io', url: 'https://ghcr.io' })
  })

  it('treats a registry-looking name with nothing after it as a repository', () => {
    const r = new UpstreamResolver({ upstream: 'http://127.0.0.1:5000' })
    const got = r.resolve({ name: 'my.app' })
    assert.equal(got.registry, '127.0.0.1:5000')
    assert.equal(got.repository, 'my.app')
  })

  it('does not treat a plain first segment as a registry', () => {
    const r = new UpstreamResolver({ upstream: 'http://127.0.0.1:5000' })
    const got = r.resolve({ name: 'team/app' })
    assert.equal(got.registry, '127.0.0.1:5000')
    assert.equal(got.repository, 'team/app')
  })

  it('honours registryEndpoints and insecureRegistries', () => {
    const r = new UpstreamResolver({
      registryEndpoints: { 'docker.io': 'http://127.0.0.1:6000/' },
      insecureRegistries: ['registry.internal:5000']
    })
    assert.deepEqual(r.resolve({ name: 'alpine' }).endpoint, { name: 'docker.io', url: 'http://127.0.0.1:6000' }, 'the default upstream (docker.io) follows the mapping too')
    assert.deepEqual(r.resolve({ name: 'docker.io/library/alpine' }).endpoint, { name: 'docker.io', url: 'http://127.0.0.1:6000' }, 'and so does a path prefix')
    assert.deepEqual(r.resolve({ name: 'alpine', ns: 'docker.io' }).endpoint, { name: 'docker.io', url: 'http://127.0.0.1:6000' })
    assert.deepEqual(r.resolve({ name: 'registry.internal:5000/app' }).endpoint, { name: 'registry.internal:5000', url: 'http://registry.internal:5000' })
  })

  it('maps a made-up registry name the same way by ns, by path prefix and as the default upstream', () => {
    const init = { registryEndpoints: { 'registry.example': 'http://127.0.0.1:7000' } }
    const want = { name: 'registry.example', url: 'http://127.0.0.1:7000' }
    const byNs = new UpstreamResolver(init).resolve({ name: 'team/app', ns: 'registry.example' })
    const byPrefix = new UpstreamResolver(init).resolve({ name: 'registry.example/team/app' })
    const byDefault = new UpstreamResolver({ ...init, upstream: 'https://registry.example' }).resolve({ name: 'team/app' })
    for (const got of [byNs, byPrefix, byDefault]) assert.deepEqual(got, { registry: 'registry.example', endpoint: want, repository: 'team/app' })
  })

  it('gives the default upstream URL to requests that name its registry', () => {
    const r = new UpstreamResolver({ upstream: 'http://127.0.0.1:5000' })
    assert.deepEqual(r.resolve({ name: 'app', ns: '127.0.0.1:5000' }).endpoint, { name: '127.0.0.1:5000', url: 'http://127.0.0.1:5000' })
  })

  it('rejects bad registry and repository names with InvalidNameError', () => {
    const r = new UpstreamResolver()
    const bad: Array<{ name: string, ns?: string }> = [
      { name: 'Alpine' },
      { name: 'a//b' },
      { name: '' },
      { name: 'docker.io/Library/alpine' },
      { name: 'bad_host_:x/app' },
      { name: 'app', ns: 'bad host' },
      { name: 'app', ns: 'a/b' },
      { name: `team/${'a'.repeat(260)}` }
    ]
    for (const q of bad) assert.throws(() => r.resolve(q), { name: 'InvalidNameError', code: 'NAME_INVALID' }, JSON.stringify(q))
  })

  it('refuses a bad --upstream URL at construction', () => {
    assert.throws(() => new UpstreamResolver({ upstream: 'ftp://example' }), { name: 'InvalidReferenceError' })
  })
})
