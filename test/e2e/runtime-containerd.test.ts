/**
 * containerd through a dfdaemon: a private containerd started here, `ctr images pull
 * --hosts-dir` with a hosts.toml per registry whose mirror host is the daemon and whose
 * `server` is the registry itself. containerd adds `?ns=<registry>`: the daemon's default
 * upstream is a dead port, so only the `ns` (with `--registry-endpoint`) can reach the origin,
 * both for `docker.io` and for a made-up registry name.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { startContainerd, mirrorHostsToml, parseContentList, parseImageList, type ContainerdProcess } from '../helpers/containerd.js'

/** Nothing listens there: a request that ignored `ns` would fail instead of reaching the origin. */
const DEAD_UPSTREAM = 'http://127.0.0.1:9'
const MADE_UP = 'registry.example'

describe('containerd (ctr --hosts-dir) through a dfdaemon', () => {
  let dir: string
  let origin: TestRegistry
  let app: PushedImage
  let other: PushedImage
  let multi: PushedImage
  let list: PushedImage
  let fallback: PushedImage
  let supernode: SupernodeProcess | undefined
  let daemon: DaemonProcess | undefined
  let containerd: ContainerdProcess | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-ctr-'))
    origin = await startRegistry({ auth: 'none' })
    const base = { size: 3 << 20, seed: 'ctr-base' }
    app = await pushImage(origin, { repository: 'library/app', tag: 'v1', layers: [base, { size: 200 << 10, seed: 'ctr-app' }] })
    other = await pushImage(origin, { repository: 'team/other', tag: 'v1', layers: [base, { size: 100 << 10, seed: 'ctr-other' }] })
    multi = await pushImage(origin, { repository: 'library/multi', tag: 'v1', layers: [{ size: 150 << 10, seed: 'ctr-multi' }], platforms: ['linux/amd64', 'linux/arm64'] })
    list = await pushImage(origin, { repository: 'library/list', tag: 'v1', layers: [{ size: 120 << 10, seed: 'ctr-list' }], platforms: ['linux/amd64', 'linux/arm64'], format: 'docker' })
    fallback = await pushImage(origin, { repository: 'library/fallback', tag: 'v1', layers: [{ size: 90 << 10, seed: 'ctr-fallback' }] })
    // docker.io is always mapped to the local registry: nothing in this test can reach Docker Hub
    const endpoints = ['--registry-endpoint', `docker.io=${origin.url}`, '--registry-endpoint', `${MADE_UP}=${origin.url}`]
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, extraArgs: endpoints })
    daemon = await startDaemon({ name: 'daemon', supernode: supernode.url, upstream: DEAD_UPSTREAM, dataDir: join(dir, 'daemon'), logDir: dir, extraArgs: endpoints })
    containerd = await startContainerd(join(dir, 'containerd'))
    for (const registry of ['docker.io', MADE_UP]) await containerd.writeHosts(registry, mirrorHostsToml(origin.url, daemon.url))
  })

  after(async () => {
    await Promise.allSettled([containerd?.stop(), daemon?.stop(), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  const pull = async (ref: string): Promise<void> => {
    await containerd?.ctr(['images', 'pull', '--hosts-dir', containerd.hostsDir, '--snapshotter', 'native', ref])
  }

  /** The image's target digest in `ctr images ls`, and each digest present and hashing right in the content store. */
  const assertPulled = async (ref: string, target: string, digests: string[]): Promise<void> => {
    assert.ok(containerd != null)
    assert.equal(parseImageList(await containerd.ctr(['images', 'ls'])).get(ref), target, `${ref} resolves to ${target}`)
    const content = parseContentList(await containerd.ctr(['content', 'ls']))
    for (const d of digests) {
      assert.ok(content.has(d), `${d} is in the content store`)
      assert.equal(await containerd.contentDigest(d), d)
    }
  }

  const blobsServed = async (): Promise<number> => await scrapeMetric(daemon?.url ?? '', 'damselfly_dfdaemon_http_requests_total', { route: 'blobs', method: 'GET', status: '200' })
  const manifestsServed = async (): Promise<number> => await scrapeMetric(daemon?.url ?? '', 'damselfly_dfdaemon_http_requests_total', { route: 'manifests', status: '200' })

  it('pulls docker.io/library/app:v1 through the daemon (ns=docker.io), every blob leaving the origin once', async () => {
    const blobs = [app.config.digest, ...app.layers.map((l) => l.digest)]
    await pull('docker.io/library/app:v1')
    await assertPulled('docker.io/library/app:v1', app.manifestDigest, [app.manifestDigest, ...blobs])
    assert.equal(await blobsServed(), blobs.length, 'containerd fetched every blob from the daemon')
    assert.ok(await manifestsServed() >= 1)
    await origin.flushLog()
    for (const d of blobs) assert.equal(origin.blobRequests(d), 1, `origin served ${d} once`)
  })

  it('pulls from another registry name (ns=registry.example, mapped by --registry-endpoint); the shared base layer is not fetched again', async () => {
    const before = await blobsServed()
    const fromSupernode = await scrapeMetric(daemon?.url ?? '', 'damselfly_dfdaemon_piece_bytes_total', { source: 'supernode' })
    const ref = `${MADE_UP}/team/other:v1`
    await pull(ref)
    // the supernode resolved registry.example by its own --registry-endpoint (not a back-to-source by the daemon)
    assert.ok(await scrapeMetric(daemon?.url ?? '', 'damselfly_dfdaemon_piece_bytes_total', { source: 'supernode' }) - fromSupernode >= other.layers[1].size)
    await assertPulled(ref, other.manifestDigest, [other.manifestDigest, other.config.digest, ...other.layers.map((l) => l.digest)])
    // containerd already holds the base layer: only the config and the new layer are asked for
    assert.equal(await blobsServed() - before, 2)
    await origin.flushLog()
    assert.equal(origin.blobRequests(other.layers[0].digest), 1, 'the shared base layer left the origin once in all')
    assert.equal(origin.blobRequests(other.layers[1].digest), 1)
  })

  it('pulls a multi-arch OCI index and a Docker manifest list: the index and this platform\'s image', async () => {
    for (const [ref, image] of [['docker.io/library/multi:v1', multi], ['docker.io/library/list:v1', list]] as const) {
      assert.ok(image.index != null)
      const amd64 = image.manifests.find((m) => m.platform === 'linux/amd64')
      assert.ok(amd64 != null)
      await pull(ref)
      await assertPulled(ref, image.index.digest, [image.index.digest, amd64.digest, amd64.config.digest, ...image.layers.map((l) => l.digest)])
    }
    await origin.flushLog()
    for (const image of [multi, list]) for (const l of image.layers) assert.equal(origin.blobRequests(l.digest), 1)
  })

  it('falls back to the registry itself (server) when the daemon is stopped', async () => {
    await daemon?.stop()
    const blobs = [fallback.config.digest, ...fallback.layers.map((l) => l.digest)]
    await pull('docker.io/library/fallback:v1')
    await assertPulled('docker.io/library/fallback:v1', fallback.manifestDigest, [fallback.manifestDigest, ...blobs])
    await origin.flushLog()
    for (const d of blobs) assert.equal(origin.blobRequests(d), 1, `containerd fetched ${d} from the origin itself`)
  })
})
