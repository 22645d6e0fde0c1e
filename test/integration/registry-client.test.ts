/**
 * RegistryClient against a real distribution registry, with no auth, htpasswd basic auth and
 * token auth (our own token server).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import pino from 'pino'
import { RegistryClient } from '../../shared/oci/registry-client.js'
import { endpointFromUrl, type RegistryEndpoint } from '../../shared/oci/endpoints.js'
import { digestOf, DigestHasher } from '../../shared/oci/digest.js'
import * as mt from '../../shared/oci/media-types.js'
import { basicHeader } from '../../shared/oci/registry-auth.js'
import type { Credentials } from '../../shared/oci/registry-types.js'
import { startRegistry, type AuthMode, type TestRegistry } from '../helpers/registry.js'
import { makeLayer, pushImage, type PushedImage } from '../helpers/images.js'
import { collect, rejectsWithName } from '../helpers/assertions.js'

const silent = pino({ level: 'silent' })

for (const mode of ['none', 'basic', 'token'] as AuthMode[]) {
  describe(`RegistryClient against distribution, auth=${mode}`, () => {
    let reg: TestRegistry
    let client: RegistryClient
    let ep: RegistryEndpoint
    let creds: Credentials
    let oci: PushedImage
    let docker: PushedImage
    let ociMulti: PushedImage
    let dockerMulti: PushedImage
    const layerSpec = { size: 300_000, seed: 'base-layer' }

    before(async () => {
      reg = await startRegistry({
        auth: mode,
        users: { tester: 'tester-secret', other: 'other-secret' },
        acl: { tester: ['test/', 'public/'], other: ['other/'], '': ['public/'] },
        anonymousPull: true
      })
      ep = endpointFromUrl(reg.url)
      creds = mode === 'none' ? { kind: 'anonymous' } : { kind: 'basic', username: 'tester', password: 'tester-secret' }
      const push = mode === 'none' ? undefined : { username: 'tester', password: 'tester-secret' }
      oci = await pushImage(reg, { repository: 'test/oci', tag: 'v1', layers: [layerSpec, { size: 5000 }], credentials: push })
      docker = await pushImage(reg, { repository: 'test/docker', tag: 'v1', layers: [layerSpec], credentials: push, format: 'docker' })
      ociMulti = await pushImage(reg, { repository: 'test/multi', tag: 'oci', layers: [layerSpec], credentials: push, platforms: ['linux/amd64', 'linux/arm64/v8'] })
      dockerMulti = await pushImage(reg, { repository: 'test/multi', tag: 'docker', layers: [layerSpec], credentials: push, platforms: ['linux/amd64', 'linux/arm64'], format: 'docker' })
      client = new RegistryClient({ logger: silent })
    })

    after(async () => {
      await client?.close()
      await reg?.stop()
    })

    it('pings /v2/', async () => {
      const anon = await client.ping(ep)
      if (mode === 'none') {
        assert.equal(anon.status, 200)
      } else {
        assert.equal(anon.status, 401)
        assert.match(anon.challenge ?? '', mode === 'basic' ? /^Basic /i : /^Bearer realm=/i)
      }
      assert.equal((await client.ping(ep, { credentials: creds })).status, 200)
    })

    for (const [label, image, mediaType] of [['oci', () => oci, mt.OCI_MANIFEST], ['docker', () => docker, mt.DOCKER_MANIFEST_V2]] as const) {
      it(`GETs and HEADs a ${label} manifest by tag and by digest`, async () => {
        const img = image()
        const repo = `test/${label}`
        const byTag = await client.getManifest(ep, repo, 'v1', { credentials: creds })
        assert.equal(byTag.status, 200)
        assert.equal(byTag.mediaType, mediaType)
        assert.equal(byTag.digest, img.manifestDigest)
        assert.deepEqual(byTag.body, img.manifests[0].body)
        assert.equal(byTag.size, img.manifests[0].size)

        const headTag = await client.getManifest(ep, repo, 'v1', { credentials: creds, method: 'HEAD' })
        assert.equal(headTag.digest, img.manifestDigest)
        assert.equal(headTag.size, img.manifests[0].size)
        assert.equal(headTag.mediaType, mediaType)
        assert.equal(headTag.body, undefined)

        const byDigest = await client.getManifest(ep, repo, img.manifestDigest, { credentials: creds })
        assert.equal(byDigest.digest, img.manifestDigest)
        assert.deepEqual(byDigest.body, img.manifests[0].body)
        const headDigest = await client.getManifest(ep, repo, img.manifestDigest, { credentials: creds, method: 'HEAD' })
        assert.equal(headDigest.digest, img.manifestDigest)
      })
    }

    it('gets an OCI index and a Docker manifest list by tag', async () => {
      const index = await client.getManifest(ep, 'test/multi', 'oci', { credentials: creds })
      assert.equal(index.mediaType, mt.OCI_INDEX)
      assert.equal(index.digest, ociMulti.indexDigest)
      const list = await client.getManifest(ep, 'test/multi', 'docker', { credentials: creds })
      assert.equal(list.mediaType, mt.DOCKER_MANIFEST_LIST)
      assert.equal(list.digest, dockerMulti.indexDigest)
      const child = await client.getManifest(ep, 'test/multi', ociMulti.manifests[1].digest, { credentials: creds })
      assert.equal(child.mediaType, mt.OCI_MANIFEST)
    })

    it('honours a narrowed Accept list (the registry refuses an index nobody asked for)', async () => {
      await rejectsWithName(client.getManifest(ep, 'test/multi', 'oci', { credentials: creds, accept: [mt.OCI_MANIFEST] }), 'ManifestUnknownError')
    })

    it('forwards a raw request with repeated Accept values through request()', async () => {
      const res = await client.request(ep, '/v2/test/multi/manifests/oci', { credentials: creds, headers: { accept: [...mt.MANIFEST_ACCEPT] } })
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], ociMulti.indexDigest)
      assert.equal(digestOf(Buffer.from(await res.body.arrayBuffer())).value, ociMulti.indexDigest)
    })

    it('reports unknown manifests, repositories and blobs by type', async () => {
      await rejectsWithName(client.getManifest(ep, 'test/oci', 'nope', { credentials: creds }), 'ManifestUnknownError')
      // distribution answers MANIFEST_UNKNOWN for a tag of an unknown repository (NAME_UNKNOWN only on tags/list)
      await rejectsWithName(client.getManifest(ep, 'test/absent', 'v1', { credentials: creds }), 'ManifestUnknownError')
      await rejectsWithName(client.headBlob(ep, 'test/oci', digestOf('absent').value, { credentials: creds }), 'BlobUnknownError')
      await rejectsWithName(client.getBlob(ep, 'test/oci', digestOf('absent').value, { credentials: creds }), 'BlobUnknownError')
    })

    it('streams and verifies a blob, and counts the GET in the access log', async () => {
      const layer = oci.layers[0]
      const head = await client.headBlob(ep, 'test/oci', layer.digest, { credentials: creds })
      assert.deepEqual(head, { size: layer.size, digest: layer.digest })
      const blob = await client.getBlob(ep, 'test/oci', layer.digest, { credentials: creds })
      assert.equal(blob.status, 200)
      assert.equal(blob.size, layer.size)
      const hasher = new DigestHasher()
      let chunks = 0
      for await (const chunk of blob.body) { hasher.update(chunk); chunks++ }
      assert.equal(hasher.digest().value, layer.digest)
      assert.equal(hasher.length, layer.size)
      assert.ok(chunks > 1, 'body arrives in several chunks')
      await reg.flushLog(() => reg.blobRequests(layer.digest) >= 1)
      assert.equal(reg.blobRequests(layer.digest), 1)
    })

    it('reads ranges of a blob', async () => {
      const layer = oci.layers[0]
      const whole = makeLayer(layerSpec, '').blob
      assert.equal(digestOf(whole).value, layer.digest)
      const part = await client.getBlob(ep, 'test/oci', layer.digest, { credentials: creds, range: { start: 1000, end: 70_999 } })
      assert.equal(part.status, 206)
      assert.equal(part.start, 1000)
      assert.equal(part.length, 70_000)
      assert.equal(part.size, layer.size)
      assert.deepEqual(await collect(part.body), whole.subarray(1000, 71_000))
      const tail = await client.getBlob(ep, 'test/oci', layer.digest, { credentials: creds, range: { start: layer.size - 10 } })
      assert.deepEqual(await collect(tail.body), whole.subarray(layer.size - 10))
      await rejectsWithName(client.getBlob(ep, 'test/oci', layer.digest, { credentials: creds, range: { start: layer.size + 10 } }), 'InvalidRangeError')
    })

    it('detects a corrupted blob while streaming', async () => {
      const img = await pushImage(reg, {
        repository: 'test/corrupt', tag: 'v1', layers: [{ size: 100_000, seed: `corrupt-${mode}` }],
        credentials: mode === 'none' ? undefined : { username: 'tester', password: 'tester-secret' }
      })
      const digest = img.layers[0].digest
      const path = reg.blobPath(digest)
      const data = await readFile(path)
      data[50_000] ^= 0xff
      await writeFile(path, data)
      const blob = await client.getBlob(ep, 'test/corrupt', digest, { credentials: creds })
      await rejectsWithName(collect(blob.body), 'DigestMismatchError')
      const unverified = await client.getBlob(ep, 'test/corrupt', digest, { credentials: creds, verify: false })
      assert.equal((await collect(unverified.body)).length, data.length)
    })

    if (mode === 'none') return

    it('rejects wrong and missing credentials with UnauthorizedError', async () => {
      const wrong: Credentials = { kind: 'basic', username: 'tester', password: 'wrong' }
      const err = await rejectsWithName(client.getManifest(ep, 'test/oci', 'v1', { credentials: wrong }), 'UnauthorizedError')
      assert.ok((err as { challenge?: string }).challenge !== undefined)
      await rejectsWithName(client.getManifest(ep, 'test/oci', 'v1'), 'UnauthorizedError')
      await rejectsWithName(client.getBlob(ep, 'test/oci', oci.layers[0].digest, { credentials: wrong }), 'UnauthorizedError')
    })

    it('passes a client Authorization header through without a token dance', async () => {
      const issuedBefore = reg.tokenServer?.issued() ?? 0
      const missing = await rejectsWithName(client.getManifest(ep, 'test/oci', 'v1', { credentials: { kind: 'authorization', header: '' } }), 'UnauthorizedError')
      assert.match((missing as { challenge?: string }).challenge ?? '', mode === 'basic' ? /^Basic realm=/i : /^Bearer realm=/i)
      await rejectsWithName(client.getManifest(ep, 'test/oci', 'v1', { credentials: { kind: 'authorization', header: 'Bearer not-a-token' } }), 'UnauthorizedError')
      const header = mode === 'basic'
        ? basicHeader('tester', 'tester-secret')
        : `Bearer ${reg.tokenServer?.mint('tester', [{ type: 'repository', name: 'test/oci', actions: ['pull'] }]) ?? ''}`
      const ok = await client.getManifest(ep, 'test/oci', 'v1', { credentials: { kind: 'authorization', header } })
      assert.equal(ok.digest, oci.manifestDigest)
      assert.equal(reg.tokenServer?.issued() ?? 0, issuedBefore, 'no token fetched for pass-through credentials')
    })

    if (mode !== 'token') return

    it('caches bearer tokens across requests', async () => {
      const fresh = new RegistryClient({ logger: silent })
      try {
        await fresh.getManifest(ep, 'test/oci', 'v1', { credentials: creds })
        const issued = reg.tokenServer?.issued()
        for (let i = 0; i < 5; i++) {
          await fresh.getManifest(ep, 'test/oci', 'v1', { credentials: creds, method: 'HEAD' })
          await fresh.headBlob(ep, 'test/oci', oci.layers[1].digest, { credentials: creds })
          const b = await fresh.getBlob(ep, 'test/oci', oci.layers[1].digest, { credentials: creds })
          await collect(b.body)
        }
        assert.equal(reg.tokenServer?.issued(), issued)
      } finally {
        await fresh.close()
      }
    })

    it('enforces the token server ACL', async () => {
      const other: Credentials = { kind: 'basic', username: 'other', password: 'other-secret' }
      await rejectsWithName(client.getManifest(ep, 'test/oci', 'v1', { credentials: other }), 'UnauthorizedError')
      await rejectsWithName(client.getManifest(ep, 'test/oci', 'v1', { credentials: { kind: 'anonymous' } }), 'UnauthorizedError')
      const pub = await pushImage(reg, { repository: 'public/app', tag: 'v1', layers: [{ size: 1000 }], credentials: { username: 'tester', password: 'tester-secret' } })
      const anon = await client.getManifest(ep, 'public/app', 'v1', { credentials: { kind: 'anonymous' } })
      assert.equal(anon.digest, pub.manifestDigest)
    })
  })
}
