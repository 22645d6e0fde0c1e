/**
 * withConfiguredCredentials: the client's own credentials win, configured ones next, anonymous last;
 * the gate. CredentialStore over a Docker config: which source answers for which registry.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { CredentialStore, parseDockerConfig, withConfiguredCredentials, type ConfiguredCredentials, type HelperLookup } from '../../../shared/oci/credential-store.js'
import { CredentialHelperError } from '../../../shared/oci/credential-helper.js'
import type { BlobResult, Credentials, GetBlobOptions } from '../../../shared/oci/registry-types.js'
import type { RegistryEndpoint } from '../../../shared/oci/endpoints.js'
import { DeniedError } from '../../../shared/errors.js'

const configured: Credentials = { kind: 'basic', username: 'robot', password: 'robot-pw' }
const store = new CredentialStore([['reg.example', configured as Extract<Credentials, { kind: 'basic' }>]])
const ep = (name: string): RegistryEndpoint => ({ name, url: `https://${name}` })

function recorder (): { seen: Array<Credentials | undefined>, client: { getBlob: (e: RegistryEndpoint, r: string, d: string, o: GetBlobOptions) => Promise<BlobResult>, headBlob: (e: RegistryEndpoint, r: string, d: string, o?: { credentials?: Credentials }) => Promise<{ size: number, digest: string }> } } {
  const seen: Array<Credentials | undefined> = []
  return {
    seen,
    client: {
      getBlob: async (_e, _r, _d, o) => { seen.push(o.credentials); return { status: 200, size: 0, start: 0, length: 0, body: (async function * () {})(), cancel: () => {} } },
      headBlob: async (_e, _r, d, o) => { seen.push(o?.credentials); return { size: 0, digest: d } }
    }
  }
}

describe('withConfiguredCredentials', () => {
  it('uses configured credentials only when the request has none, and only for their registry', async () => {
    const { seen, client } = recorder()
    const wrapped = withConfiguredCredentials(client, store)
    const own: Credentials = { kind: 'authorization', header: 'Bearer client-token' }
    await wrapped.getBlob(ep('reg.example'), 'r', 'sha256:x', { credentials: own })
    await wrapped.getBlob(ep('reg.example'), 'r', 'sha256:x', { credentials: { kind: 'anonymous' } })
    await wrapped.headBlob(ep('REG.example'), 'r', 'sha256:x', {})
    await wrapped.getBlob(ep('other.example'), 'r', 'sha256:x', {})
    assert.deepEqual(seen, [own, configured, configured, undefined])
  })

  it('asks the gate before standing in for an anonymous request, and a refusal stops it', async () => {
    const { seen, client } = recorder()
    const gated: string[] = []
    const wrapped = withConfiguredCredentials(client, store, {
      beforeBlob: async (e, repository) => {
        gated.push(`${e.name}/${repository}`)
        if (repository === 'private') throw new DeniedError('not public')
      }
    })
    await wrapped.getBlob(ep('reg.example'), 'public', 'sha256:x', {})
    await assert.rejects(wrapped.headBlob(ep('reg.example'), 'private', 'sha256:x', {}), { name: 'DeniedError' })
    await wrapped.getBlob(ep('reg.example'), 'private', 'sha256:x', { credentials: { kind: 'authorization', header: 'Basic abc' } })
    assert.deepEqual(gated, ['reg.example/public', 'reg.example/private'])
    assert.equal(seen.length, 2)
  })
})

describe('CredentialStore with a Docker config', () => {
  /** Stub helpers: name → (server URL → answer); records each ask. */
  function dockerStore (json: unknown, answers: Record<string, Record<string, Credentials | undefined>>, file: Array<[string, ConfiguredCredentials]> = []): { store: CredentialStore, asked: string[] } {
    const asked: string[] = []
    const helper = (name: string): HelperLookup => ({
      get: async (server: string) => {
        asked.push(`${name} ${server}`)
        return answers[name]?.[server] as ConfiguredCredentials | undefined
      }
    })
    return { store: new CredentialStore(file, { config: parseDockerConfig(JSON.stringify(json), 'config.json'), helper }), asked }
  }
  const basic = (username: string): ConfiguredCredentials => ({ kind: 'basic', username, password: `${username}-pw` })

  it('credentials file, then the registry\'s helper (credHelpers, else credsStore), then inline auths', async () => {
    const { store, asked } = dockerStore({
      credsStore: 'store',
      credHelpers: { 'helped.example': 'ecr', 'plain.example': '', 'filed.example': 'ecr' },
      auths: {
        'plain.example': { auth: Buffer.from('inline:pw').toString('base64') },
        'stored.example': { auth: Buffer.from('ignored:pw').toString('base64') }
      }
    }, {
      ecr: { 'helped.example': basic('from-ecr') },
      store: { 'https://index.docker.io/v1/': { kind: 'identity-token', token: 'hub-refresh' } }
    }, [['filed.example', basic('from-file')]])
    assert.deepEqual(await store.credentialsFor('filed.example'), basic('from-file'))
    assert.deepEqual(await store.credentialsFor('HELPED.example'), basic('from-ecr'))
    assert.deepEqual(await store.credentialsFor('index.docker.io'), { kind: 'identity-token', token: 'hub-refresh' })
    assert.deepEqual(await store.credentialsFor('plain.example'), { kind: 'basic', username: 'inline', password: 'pw' })
    // as in Docker: with credsStore set, the store is the only source for a registry without its own helper
    assert.equal(await store.credentialsFor('stored.example'), undefined)
    assert.deepEqual(asked, ['ecr helped.example', 'store https://index.docker.io/v1/', 'store stored.example'])
    assert.equal(store.covers('anything.example'), true)
  })

  it('without credsStore, registries with nothing configured are not covered and no helper runs for them', async () => {
    const { store, asked } = dockerStore({ credHelpers: { 'helped.example:5000': 'ecr' }, auths: { 'inline.example': { identitytoken: 'rt' } } }, {})
    assert.equal(store.covers('elsewhere.example'), false)
    assert.equal(store.covers('helped.example:5000'), true)
    assert.equal(store.covers('inline.example'), true)
    assert.equal(await store.credentialsFor('elsewhere.example'), undefined)
    assert.equal(await store.credentialsFor('helped.example:5000'), undefined)
    assert.deepEqual(await store.credentialsFor('inline.example'), { kind: 'identity-token', token: 'rt' })
    assert.deepEqual(asked, ['ecr helped.example:5000'])
    assert.deepEqual(store.registries(), ['helped.example:5000', 'inline.example'])
    assert.equal(store.size, 2)
  })

  it('the gate runs before any helper: a refused anonymous blob request never runs one', async () => {
    const { store, asked } = dockerStore({ credsStore: 'store' }, { store: { 'reg.example': basic('robot') } })
    const { seen, client } = recorder()
    const wrapped = withConfiguredCredentials(client, store, {
      beforeBlob: async (_e, repository) => { if (repository === 'private') throw new DeniedError('not public') }
    })
    await assert.rejects(wrapped.getBlob(ep('reg.example'), 'private', 'sha256:x', {}), { name: 'DeniedError' })
    assert.deepEqual(asked, [])
    await wrapped.getBlob(ep('reg.example'), 'public', 'sha256:x', {})
    await wrapped.headBlob(ep('reg.example'), 'public', 'sha256:x', { credentials: { kind: 'authorization', header: 'Basic own' } })
    assert.deepEqual(asked, ['store reg.example'])
    assert.deepEqual(seen, [basic('robot'), { kind: 'authorization', header: 'Basic own' }])
  })

  it('a helper failure fails the request with its typed error', async () => {
    const store = new CredentialStore([], {
      config: parseDockerConfig('{"credsStore":"broken"}', 'config.json'),
      helper: () => ({ get: async () => { throw new CredentialHelperError('docker-credential-broken', 'get failed (exit 1)') } })
    })
    const { client } = recorder()
    await assert.rejects(withConfiguredCredentials(client, store).getBlob(ep('reg.example'), 'r', 'sha256:x', {}), { name: 'CredentialHelperError', helper: 'docker-credential-broken' })
  })
})
