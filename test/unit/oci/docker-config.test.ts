/** Docker's config.json: auths in every form, credHelpers, credsStore, and registry keys matched as Docker matches them. */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { helperServerUrl, parseDockerConfig, registryNameOfKey, DOCKER_HUB_SERVER_URL } from '../../../shared/oci/docker-config.js'

const b64 = (s: string): string => Buffer.from(s).toString('base64')
const parse = (value: unknown): ReturnType<typeof parseDockerConfig> => parseDockerConfig(JSON.stringify(value), 'config.json')

describe('registry keys', () => {
  it('Docker Hub by its index URL and aliases; other registries by host[:port], with or without a scheme and path, any case', () => {
    for (const key of [DOCKER_HUB_SERVER_URL, 'https://index.docker.io/v1', 'index.docker.io', 'registry-1.docker.io', 'docker.io', 'HTTPS://Index.Docker.IO/v1/']) {
      assert.equal(registryNameOfKey(key), 'docker.io', key)
    }
    for (const [key, name] of [
      ['registry.example', 'registry.example'],
      ['Registry.Example:5000', 'registry.example:5000'],
      ['https://registry.example:5000', 'registry.example:5000'],
      ['https://registry.example:5000/v2/', 'registry.example:5000'],
      ['http://registry.example/', 'registry.example'],
      ['registry.example:5000/some/path', 'registry.example:5000'],
      ['127.0.0.1:5000', '127.0.0.1:5000']
    ]) assert.equal(registryNameOfKey(key), name, key)
    assert.throws(() => registryNameOfKey('https://'), { name: 'ConfigError' })
  })

  it('asks a helper for Docker Hub by its index URL and for others by host[:port]', () => {
    assert.equal(helperServerUrl('docker.io'), DOCKER_HUB_SERVER_URL)
    assert.equal(helperServerUrl('index.docker.io'), DOCKER_HUB_SERVER_URL)
    assert.equal(helperServerUrl('Registry.Example:5000'), 'registry.example:5000')
  })
})

describe('parseDockerConfig', () => {
  it('reads auth, username/password and identitytoken entries; an identity token wins; empty entries are skipped', () => {
    const c = parse({
      auths: {
        [DOCKER_HUB_SERVER_URL]: { auth: b64('hub:pa:ss') },
        'https://ghcr.example/v2/': { username: 'g', password: 'gp' },
        'oauth.example': { auth: b64('someone:'), identitytoken: 'refresh-abc' },
        'helper.example': {},
        'email-only.example': { email: 'x@example.com' }
      },
      psFormat: 'table {{.ID}}'
    })
    assert.deepEqual(c.auths.get('docker.io'), { kind: 'basic', username: 'hub', password: 'pa:ss' })
    assert.deepEqual(c.auths.get('ghcr.example'), { kind: 'basic', username: 'g', password: 'gp' })
    assert.deepEqual(c.auths.get('oauth.example'), { kind: 'identity-token', token: 'refresh-abc' })
    assert.equal(c.auths.has('helper.example'), false)
    assert.equal(c.auths.has('email-only.example'), false)
    assert.equal(c.credHelpers.size, 0)
    assert.equal(c.credsStore, undefined)
  })

  it('reads credHelpers per registry and credsStore; "" means no helper', () => {
    const c = parse({
      credsStore: 'pass',
      credHelpers: { 'https://index.docker.io/v1/': 'desktop', 'Registry.Example:5000': 'ecr-login', 'plain.example': '' }
    })
    assert.equal(c.credsStore, 'pass')
    assert.equal(c.credHelpers.get('docker.io'), 'desktop')
    assert.equal(c.credHelpers.get('registry.example:5000'), 'ecr-login')
    assert.equal(c.credHelpers.get('plain.example'), '')
    assert.equal(parse({ credsStore: '' }).credsStore, undefined)
  })

  it('when two keys name one registry the exact key wins, else the first', () => {
    const c = parse({
      auths: {
        'https://registry.example/v2/': { auth: b64('prefixed:1') },
        'registry.example': { auth: b64('exact:2') },
        'http://registry.example': { auth: b64('late:3') },
        'docker.io': { auth: b64('alias:4') },
        [DOCKER_HUB_SERVER_URL]: { auth: b64('hub:5') },
        'https://other.example': { auth: b64('first:6') },
        'http://other.example/': { auth: b64('second:7') }
      }
    })
    assert.equal((c.auths.get('registry.example') as { username: string }).username, 'exact')
    assert.equal((c.auths.get('docker.io') as { username: string }).username, 'hub')
    assert.equal((c.auths.get('other.example') as { username: string }).username, 'first')
  })

  it('refuses helper names that are paths or options, and malformed entries, without naming a secret', () => {
    for (const name of ['../../tmp/evil', '/usr/bin/x', 'a/b', '-rf', '.', '..', 'has space', 3]) {
      assert.throws(() => parse({ credHelpers: { 'r.example': name } }), { name: 'ConfigError' }, String(name))
      assert.throws(() => parse({ credsStore: name }), { name: 'ConfigError' }, String(name))
    }
    assert.throws(() => parse({ credHelpers: ['x'] }), { name: 'ConfigError' })
    assert.throws(() => parse({ auths: { 'r.example': 'x' } }), { name: 'ConfigError' })
    assert.throws(() => parseDockerConfig('{', 'config.json'), { name: 'ConfigError' })
    assert.throws(() => parse({ auths: { 'r.example': { auth: b64('nocolon-supersecret') } } }), (err: Error) => err.name === 'ConfigError' && !err.message.includes('supersecret'))
  })
})
