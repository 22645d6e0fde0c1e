import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { digestOf } from '../../../shared/oci/digest.js'
import { ConfigPrefetcher, configOf, MAX_PREFETCH_CONFIG_BYTES } from '../../../dfdaemon/mirror/config-prefetch.js'
import type { BlobRequest } from '../../../dfdaemon/blob-provider.js'

const OCI = 'application/vnd.oci.image.manifest.v1+json'
const DOCKER = 'application/vnd.docker.distribution.manifest.v2+json'
const config = digestOf('{"architecture":"amd64"}')
const bytes = (doc: unknown): Buffer => Buffer.from(JSON.stringify(doc))
const manifest = (mediaType: string | undefined, cfg: unknown = { mediaType: 'x', digest: config.value, size: 24 }): Buffer =>
  bytes({ schemaVersion: 2, ...(mediaType !== undefined ? { mediaType } : {}), config: cfg, layers: [] })

describe('configOf', () => {
  it('finds the config of an OCI and of a Docker image manifest', () => {
    assert.equal(configOf(manifest(OCI), OCI)?.digest.value, config.value)
    assert.equal(configOf(manifest(DOCKER), DOCKER)?.size, 24)
  })

  it('takes the media type from Content-Type when the body has none (OCI allows that)', () => {
    assert.equal(configOf(manifest(undefined), `${OCI}; charset=utf-8`)?.digest.value, config.value)
    assert.equal(configOf(manifest(undefined), 'application/json'), undefined)
  })

  it('ignores indexes, artifacts, junk and malformed configs', () => {
    assert.equal(configOf(bytes({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }), OCI), undefined)
    assert.equal(configOf(Buffer.from('not json {'), OCI), undefined)
    assert.equal(configOf(bytes(null), OCI), undefined)
    assert.equal(configOf(manifest(OCI, { digest: 'sha256:../../etc/passwd', size: 1 }), OCI), undefined)
    assert.equal(configOf(manifest(OCI, { digest: config.value, size: -1 }), OCI), undefined)
    assert.equal(configOf(manifest(OCI, { digest: config.value, size: '24' }), OCI), undefined)
    assert.equal(configOf(manifest(OCI, null), OCI), undefined)
  })
})

describe('ConfigPrefetcher', () => {
  const from = { registry: 'registry.example', repository: 'team/app', authorization: 'Bearer abc' }

  it('starts the config with the client\'s credentials, and only for a small config', async () => {
    const asked: BlobRequest[] = []
    const prefetcher = new ConfigPrefetcher({ blobs: { stat: async (req) => { asked.push(req); return { size: 24 } } }, logger: pino({ level: 'silent' }) })
    prefetcher.manifestServed(manifest(OCI), OCI, from)
    prefetcher.manifestServed(manifest(OCI, { digest: config.value, size: MAX_PREFETCH_CONFIG_BYTES + 1 }), OCI, from)
    prefetcher.manifestServed(bytes({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }), OCI, from)
    assert.deepEqual(asked, [{ ...from, digest: config }])
  })

  it('keeps a failed prefetch to itself', async () => {
    const failed = new Promise<void>((resolve) => {
      const prefetcher = new ConfigPrefetcher({ blobs: { stat: async () => { resolve(); throw new Error('origin down') } }, logger: pino({ level: 'silent' }) })
      prefetcher.manifestServed(manifest(DOCKER), DOCKER, from)
    })
    await failed
    // an unhandled rejection would fail the run; give it the turn it needs to surface
    await new Promise(resolve => setImmediate(resolve))
  })
})
