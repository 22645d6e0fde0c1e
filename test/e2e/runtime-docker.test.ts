/**
 * Docker through a dfdaemon: a real dockerd (Debian docker.io) with `--registry-mirror`
 * pointing at the daemon, in a network namespace that has only loopback, together with the
 * registry, the supernode and the daemon, so that Docker's fallback to Docker Hub cannot leave
 * the machine. Docker's mirrors are for Docker Hub only and send un-prefixed names
 * (`/v2/library/app/...`): the daemon's `--upstream` is the registry behind them.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { createNetns, type Netns } from '../helpers/netns.js'
import { startDockerd, unmountUnder, type DockerdProcess } from '../helpers/dockerd.js'

interface Inspect { Id: string, RepoDigests: string[], RootFS: { Layers: string[] } }

describe('docker (dockerd --registry-mirror) through a dfdaemon, in a loopback-only netns', () => {
  let dir: string
  let netns: Netns | undefined
  let origin: TestRegistry | undefined
  let app: PushedImage
  let multi: PushedImage
  let list: PushedImage
  let supernode: SupernodeProcess | undefined
  let daemon: DaemonProcess | undefined
  let dockerd: DockerdProcess | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-docker-'))
    netns = await createNetns(dir)
    origin = await startRegistry({ auth: 'none', netns })
    const reach = { url: origin.testUrl }
    app = await pushImage(reach, { repository: 'library/app', tag: 'v1', format: 'docker', layers: [{ size: 3 << 20, seed: 'dk-base' }, { size: 200 << 10, seed: 'dk-app' }] })
    multi = await pushImage(reach, { repository: 'library/multi', tag: 'v1', layers: [{ size: 150 << 10, seed: 'dk-multi' }], platforms: ['linux/amd64', 'linux/arm64'] })
    list = await pushImage(reach, { repository: 'library/list', tag: 'v1', format: 'docker', layers: [{ size: 3 << 20, seed: 'dk-base' }, { size: 120 << 10, seed: 'dk-list' }], platforms: ['linux/amd64', 'linux/arm64'] })
    const endpoints = ['--registry-endpoint', `docker.io=${origin.url}`]
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, extraArgs: endpoints, netns })
    daemon = await startDaemon({ name: 'daemon', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'daemon'), logDir: dir, extraArgs: endpoints, netns })
    dockerd = await startDockerd({ dir: join(dir, 'dockerd'), mirror: daemon.url, prefix: netns.prefix })
  })

  after(async () => {
    await dockerd?.stop()
    await Promise.allSettled([daemon?.stop(), supernode?.stop()])
    await origin?.stop()
    await netns?.remove()
    if (dir == null) return
    await unmountUnder(dir)
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  const inspect = async (ref: string): Promise<Inspect> => (JSON.parse(await dockerd?.docker(['image', 'inspect', ref]) ?? '[]') as Inspect[])[0]
  const blobsServed = async (): Promise<number> => await scrapeMetric(daemon?.testUrl ?? '', 'damselfly_dfdaemon_http_requests_total', { route: 'blobs', method: 'GET', status: '200' })

  it('docker pull library/app:v1 goes through the mirror: image id, repo digest and layer diff ids right, each blob from the origin once', async () => {
    await dockerd?.docker(['pull', '--quiet', 'library/app:v1'])
    const img = await inspect('library/app:v1')
    assert.equal(img.Id, app.config.digest)
    assert.ok(img.RepoDigests.some((r) => r.endsWith(`@${app.manifestDigest}`)), img.RepoDigests.join(' '))
    assert.deepEqual(img.RootFS.Layers, app.layers.map((l) => l.diffId))
    assert.equal(await blobsServed(), 1 + app.layers.length, 'dockerd fetched every blob from the mirror')
    await origin?.flushLog()
    for (const d of [app.config.digest, ...app.layers.map((l) => l.digest)]) assert.equal(origin?.blobRequests(d), 1)
  })

  it('docker pulls an OCI index and a Docker manifest list through the mirror; the shared base layer is not fetched again', async () => {
    for (const [ref, image] of [['library/multi:v1', multi], ['library/list:v1', list]] as const) {
      const amd64 = image.manifests.find((m) => m.platform === 'linux/amd64')
      assert.ok(amd64 != null && image.index != null)
      await dockerd?.docker(['pull', '--quiet', ref])
      const img = await inspect(ref)
      assert.equal(img.Id, amd64.config.digest)
      assert.ok(img.RepoDigests.some((r) => r.endsWith(`@${image.index?.digest ?? ''}`)), img.RepoDigests.join(' '))
      assert.deepEqual(img.RootFS.Layers, image.layers.map((l) => l.diffId))
    }
    await origin?.flushLog()
    assert.equal(origin?.blobRequests(list.layers[0].digest), 1, 'the base layer shared by app and list left the origin once')
    for (const l of [...multi.layers, ...list.layers]) assert.equal(origin?.blobRequests(l.digest), 1)
  })
})
