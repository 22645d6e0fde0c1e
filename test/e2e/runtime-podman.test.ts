/**
 * podman (vfs storage) and skopeo through dfdaemons, configured with a registries.conf whose
 * `[[registry.mirror]]` carries the registry as a path prefix (`127.0.0.1:PORT/docker.io`).
 * The registries' own locations are a dead local port, so a pull that did not go through the
 * mirror fails instead of silently reaching the origin; the daemons reach it only through
 * `--registry-endpoint` (docker.io and a made-up `registry.example`).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { makeLayer, pushImage, type LayerSpec, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { dirBlobs } from '../helpers/skopeo.js'
import { registriesConf, setupPodman, type Podman } from '../helpers/podman.js'

const DEAD = '127.0.0.1:9'
const MADE_UP = 'registry.example'
const hex = (digest: string): string => digest.slice('sha256:'.length)

describe('podman and skopeo (registries.conf mirror with a path prefix) through dfdaemons', () => {
  let dir: string
  let origin: TestRegistry
  let app: PushedImage
  let other: PushedImage
  let multi: PushedImage
  const base: LayerSpec = { size: 3 << 20, seed: 'pod-base' }
  let supernode: SupernodeProcess | undefined
  let daemonA: DaemonProcess | undefined
  let daemonB: DaemonProcess | undefined
  let podA: Podman
  let podB: Podman

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-podman-'))
    origin = await startRegistry({ auth: 'none' })
    app = await pushImage(origin, { repository: 'library/app', tag: 'v1', layers: [base, { size: 200 << 10, seed: 'pod-app' }] })
    other = await pushImage(origin, { repository: 'team/other', tag: 'v1', layers: [base, { size: 100 << 10, seed: 'pod-other' }] })
    multi = await pushImage(origin, { repository: 'team/multi', tag: 'v1', layers: [{ size: 150 << 10, seed: 'pod-multi' }], platforms: ['linux/amd64', 'linux/arm64'] })
    const endpoints = ['--registry-endpoint', `docker.io=${origin.url}`, '--registry-endpoint', `${MADE_UP}=${origin.url}`]
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, extraArgs: endpoints })
    daemonA = await startDaemon({ name: 'daemon-a', supernode: supernode.url, upstream: `http://${DEAD}`, dataDir: join(dir, 'a'), logDir: dir, extraArgs: endpoints })
    daemonB = await startDaemon({ name: 'daemon-b', supernode: supernode.url, upstream: `http://${DEAD}`, dataDir: join(dir, 'b'), logDir: dir, extraArgs: endpoints })
    const registries = [{ prefix: 'docker.io', location: DEAD }, { prefix: MADE_UP, location: DEAD }]
    podA = await setupPodman(join(dir, 'podman-a'), registriesConf(daemonA.host, registries))
    podB = await setupPodman(join(dir, 'podman-b'), registriesConf(daemonB.host, registries))
  })

  after(async () => {
    await Promise.allSettled([daemonA?.stop(), daemonB?.stop(), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  const blobsServed = async (daemon: DaemonProcess | undefined): Promise<number> =>
    await scrapeMetric(daemon?.url ?? '', 'damselfly_dfdaemon_http_requests_total', { route: 'blobs', method: 'GET', status: '200' })

  it('podman pulls docker.io/library/app:v1 through daemon A: image id, manifest digest and layer diff ids right', async () => {
    await podA.podman(['pull', '--quiet', '--signature-policy', podA.policy, 'docker.io/library/app:v1'])
    const img = await podA.inspect('docker.io/library/app:v1')
    assert.equal(img.Id, hex(app.config.digest))
    assert.equal(img.Digest, app.manifestDigest)
    assert.deepEqual(img.RootFS.Layers, app.layers.map((l) => l.diffId))
    assert.equal(await blobsServed(daemonA), 1 + app.layers.length, 'every blob came from the mirror')
    await origin.flushLog()
    for (const d of [app.config.digest, ...app.layers.map((l) => l.digest)]) assert.equal(origin.blobRequests(d), 1)
  })

  it('skopeo copies registry.example/team/other:v1 through daemon B: the base layer shared with app leaves the origin only once', async () => {
    const dest = join(dir, 'skopeo-other')
    await podB.skopeo(['copy', '--quiet', '--retry-times', '0', '--policy', podB.policy, `docker://${MADE_UP}/team/other:v1`, `dir:${dest}`])
    const blobs = await dirBlobs(dest)
    const want = [other.config.digest, ...other.layers.map((l) => l.digest)].map(hex)
    assert.deepEqual([...blobs.keys()].sort(), want.sort())
    for (const [name, sum] of blobs) assert.equal(sum, name, `${name} hashes to its name`)
    assert.equal(await blobsServed(daemonB), want.length)
    await origin.flushLog()
    assert.equal(origin.blobRequests(other.layers[0].digest), 1, 'shared base layer fetched from the origin once over both images and both daemons')
    assert.equal(origin.blobRequests(other.layers[1].digest), 1)
  })

  it('podman pulls a multi-arch index by the path prefix and picks this platform', async () => {
    await podB.podman(['pull', '--quiet', '--signature-policy', podB.policy, '--platform', 'linux/arm64', `${MADE_UP}/team/multi:v1`])
    const img = await podB.inspect(`${MADE_UP}/team/multi:v1`)
    const arm = multi.manifests.find((m) => m.platform === 'linux/arm64')
    assert.ok(arm != null && multi.index != null)
    assert.equal(img.Id, hex(arm.config.digest))
    assert.equal(img.Digest, multi.index.digest, 'podman records the digest the tag resolved to: the index')
    assert.ok(img.RepoDigests.some((r) => r.endsWith(`@${multi.index?.digest ?? ''}`)), `the index digest among ${img.RepoDigests.join(' ')}`)
    assert.deepEqual(img.RootFS.Layers, multi.layers.map((l) => l.diffId))
  })

  it('skopeo --all copies every platform of the index through the mirror', async () => {
    const dest = join(dir, 'skopeo-multi-all')
    await podA.skopeo(['copy', '--quiet', '--all', '--retry-times', '0', '--policy', podA.policy, `docker://${MADE_UP}/team/multi:v1`, `dir:${dest}`])
    const blobs = await dirBlobs(dest)
    for (const [name, sum] of blobs) assert.equal(sum, name)
    const want = [...multi.manifests.map((m) => m.config.digest), ...multi.layers.map((l) => l.digest)].map(hex)
    for (const d of want) assert.ok(blobs.has(d), `${d} copied`)
  })

  it('HEAD on manifests (tag and digest) and blobs, and Range on a blob, by path prefix', async () => {
    const prefix = `${daemonA?.url ?? ''}/v2/docker.io/library/app`
    for (const ref of ['v1', app.manifestDigest]) {
      const res = await request(`${prefix}/manifests/${ref}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
      await res.body.dump()
      assert.equal(res.statusCode, 200, ref)
      assert.equal(res.headers['docker-content-digest'], app.manifestDigest)
      assert.equal(res.headers['content-length'], String(app.manifests[0].size))
    }
    const layer = app.layers[0]
    const head = await request(`${prefix}/blobs/${layer.digest}`, { method: 'HEAD' })
    await head.body.dump()
    assert.equal(head.statusCode, 200)
    assert.equal(head.headers['content-length'], String(layer.size))
    assert.equal(head.headers['docker-content-digest'], layer.digest)

    const bytes = makeLayer(base, 'unused').blob
    const [start, end] = [1_000_000, 1_065_535]
    const ranged = await request(`${prefix}/blobs/${layer.digest}`, { headers: { range: `bytes=${start}-${end}` } })
    const body = Buffer.from(await ranged.body.arrayBuffer())
    assert.equal(ranged.statusCode, 206)
    assert.equal(ranged.headers['content-range'], `bytes ${start}-${end}/${layer.size}`)
    assert.ok(body.equals(bytes.subarray(start, end + 1)), 'the range holds the right bytes')
    const tail = await request(`${prefix}/blobs/${layer.digest}`, { headers: { range: 'bytes=-100' } })
    const tailBody = Buffer.from(await tail.body.arrayBuffer())
    assert.equal(tail.statusCode, 206)
    assert.ok(tailBody.equals(bytes.subarray(bytes.length - 100)), 'a suffix range holds the last bytes')
  })
})
