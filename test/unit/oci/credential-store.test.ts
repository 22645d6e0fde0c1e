/** withConfiguredCredentials: the client's own credentials win, configured ones next, anonymous last; the gate. */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { CredentialStore, withConfiguredCredentials } from '../../../shared/oci/credential-store.js'
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
