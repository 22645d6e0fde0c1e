/**
 * The real parts: a distribution registry, a supernode and a dfdaemon as
 * separate processes. A manifest GET through the daemon brings the image's
 * config onto the host before the client asks for it.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { sha256Hex } from '../../shared/oci/digest.js'
import { until } from '../helpers/until.js'

const ACCEPT = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']

describe('config prefetch', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let supernode: SupernodeProcess
  let daemon: DaemonProcess

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-e2e-'))
    origin = await startRegistry({ auth: 'none' })
    image = await pushImage(origin, { repository: 'test/prefetch', tag: 'v1', layers: [{ size: 2 << 20, seed: 'prefetch-layer' }] })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    daemon = await startDaemon({ name: 'daemon', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'daemon'), logDir: dir })
  })

  after(async () => {
    await Promise.allSettled([daemon?.stop(), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  it('a manifest GET brings the config onto the host; the client then gets it from the store', async () => {
    const res = await request(`${daemon.url}/v2/test/prefetch/manifests/v1`, { headers: { accept: ACCEPT.join(', ') } })
    assert.equal(res.statusCode, 200)
    assert.equal(sha256Hex(Buffer.from(await res.body.arrayBuffer())), image.manifestDigest.slice('sha256:'.length))

    // nobody asked for a blob, yet the config's download runs to the end on this host
    assert.ok(await until(async () => await scrapeMetric(daemon.url, 'damselfly_dfdaemon_blob_downloads_total', { result: 'success' }) >= 1, 300),
      'the config was fetched after the manifest GET')
    await origin.flushLog()
    assert.equal(origin.blobRequests(image.config.digest), 1, 'the config left the origin once')
    assert.equal(origin.blobRequests(image.layers[0].digest), 0, 'layers wait for the client')

    const hits = await scrapeMetric(daemon.url, 'damselfly_dfdaemon_local_hits_total')
    const blob = await request(`${daemon.url}/v2/test/prefetch/blobs/${image.config.digest}`)
    assert.equal(blob.statusCode, 200)
    assert.equal(`sha256:${sha256Hex(Buffer.from(await blob.body.arrayBuffer()))}`, image.config.digest)
    assert.equal(await scrapeMetric(daemon.url, 'damselfly_dfdaemon_local_hits_total'), hits + 1, 'served from the host\'s store')
  })
})
