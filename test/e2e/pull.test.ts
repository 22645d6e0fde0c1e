/**
 * End to end on the real parts: a distribution registry with a pushed image,
 * a supernode and two dfdaemons as separate processes, and skopeo pulling
 * through each daemon's mirror.
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
import { skopeoCopy, dirBlobs } from '../helpers/skopeo.js'

describe('pull through dfdaemon and the supernode', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let supernode: SupernodeProcess
  let daemonA: DaemonProcess
  let daemonB: DaemonProcess

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-e2e-'))
    origin = await startRegistry({ auth: 'none' })
    // a multi-piece layer, a small one and a tiny one
    image = await pushImage(origin, { repository: 'test/app', tag: 'v1', layers: [{ size: 9 << 20, seed: 'big' }, { size: 300 << 10, seed: 'small' }, { size: 1000, seed: 'tiny' }] })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    daemonA = await startDaemon({ name: 'daemon-a', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'a'), logDir: dir })
    daemonB = await startDaemon({ name: 'daemon-b', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'b'), logDir: dir })
  })

  after(async () => {
    await Promise.allSettled([daemonA?.stop(), daemonB?.stop(), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  const expectedBlobs = (): Map<string, string> => {
    const m = new Map<string, string>()
    for (const d of [image.config.digest, ...image.layers.map(l => l.digest)]) m.set(d.slice('sha256:'.length), d.slice('sha256:'.length))
    return m
  }

  it('skopeo pulls the image through each daemon with every digest right, each blob leaving the origin once', async () => {
    for (const [name, daemon] of [['a', daemonA], ['b', daemonB]] as const) {
      const dest = join(dir, `pull-${name}`)
      await skopeoCopy(`${daemon.host}/test/app:v1`, dest)
      const got = await dirBlobs(dest)
      // every file skopeo wrote hashes to its name, and they are exactly the image's blobs
      assert.deepEqual(new Map([...got].sort()), new Map([...expectedBlobs()].sort()))
    }
    await origin.flushLog()
    for (const d of [image.config.digest, ...image.layers.map(l => l.digest)]) {
      assert.equal(origin.blobRequests(d), 1, `origin served ${d} once`)
    }
    assert.ok(await scrapeMetric(daemonA.url, 'damselfly_dfdaemon_piece_bytes_total', { source: 'supernode' }) > 0)
    assert.ok(await scrapeMetric(supernode.url, 'damselfly_supernode_origin_bytes_total') >= image.layers.reduce((n, l) => n + l.size, 0))
  })

  it('a second pull on the same host is served from its store, without the supernode', async () => {
    const before = await scrapeMetric(daemonA.url, 'damselfly_dfdaemon_piece_bytes_total')
    await supernode.stop()
    const dest = join(dir, 'pull-a-again')
    await skopeoCopy(`${daemonA.host}/test/app:v1`, dest)
    assert.deepEqual(new Map([...(await dirBlobs(dest))].sort()), new Map([...expectedBlobs()].sort()))
    assert.equal(await scrapeMetric(daemonA.url, 'damselfly_dfdaemon_piece_bytes_total'), before)
    assert.ok(await scrapeMetric(daemonA.url, 'damselfly_dfdaemon_local_hits_total') >= 4)
  })

  it('HEAD on a blob returns its size and digest', async () => {
    const layer = image.layers[0]
    const res = await request(`${daemonA.url}/v2/test/app/blobs/${layer.digest}`, { method: 'HEAD' })
    await res.body.dump()
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-length'], String(layer.size))
    assert.equal(res.headers['docker-content-digest'], layer.digest)
  })

  it('bad requests get OCI errors and the daemon keeps serving', async () => {
    const cases: Array<[string, number, string]> = [
      ['/v2/test/app/blobs/sha256:xyz', 400, 'DIGEST_INVALID'],
      ['/v2/test/app/blobs/sha256:' + 'ab'.repeat(32), 404, 'BLOB_UNKNOWN'],
      ['/v2/Test/App/blobs/' + image.layers[0].digest, 400, 'NAME_INVALID']
    ]
    // the unknown blob goes to the supernode, which must be back for that
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, name: 'supernode-2', port: supernode.port, p2pPort: supernode.p2pPort })
    for (const [path, status, code] of cases) {
      const res = await request(`${daemonB.url}${path}`)
      const body = await res.body.json() as { errors: Array<{ code: string }> }
      assert.equal(res.statusCode, status, path)
      assert.equal(body.errors[0].code, code, path)
    }
    const ping = await request(`${daemonB.url}/v2/`)
    await ping.body.dump()
    assert.equal(ping.statusCode, 200)
    const dest = join(dir, 'pull-b-again')
    await skopeoCopy(`${daemonB.host}/test/app:v1`, dest)
    assert.equal((await dirBlobs(dest)).size, 4)
  })
})
