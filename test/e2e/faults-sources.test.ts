/**
 * Faults of the sources, caused for real: a supernode that is not there, one
 * killed (kill -9) mid-transfer, an origin stopped after a first pull, a
 * supernode restarted while the origin is down, and a piece rotting on a
 * daemon's disk. Every pull still ends with every digest right; the metrics
 * say where the bytes came from.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { MANIFEST_ACCEPT } from '../../shared/oci/media-types.js'
import { pieceSizeFor } from '../../shared/pieces/piece-math.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess, type RunningProcess } from '../helpers/processes.js'
import { skopeoCopy, dirBlobs } from '../helpers/skopeo.js'
import { freePort } from '../helpers/ports.js'
import { peerIdOf } from '../helpers/peer-id.js'
import { until } from '../helpers/until.js'

const PIECE_BYTES = 'damselfly_dfdaemon_piece_bytes_total'

function blobDigests (image: PushedImage): string[] {
  return [image.config.digest, ...image.layers.map(l => l.digest)]
}

function imageBytes (image: PushedImage): number {
  return image.config.size + image.layers.reduce((n, l) => n + l.size, 0)
}

/** skopeo copies `ref` into `dest`; every file is one of the image's blobs and hashes to its name. */
async function pullAndCheck (ref: string, dest: string, image: PushedImage): Promise<void> {
  await skopeoCopy(ref, dest)
  const got = await dirBlobs(dest)
  assert.deepEqual([...got.keys()].sort(), blobDigests(image).map(d => d.slice(7)).sort(), `${ref}: the image's blobs`)
  for (const [name, sha] of got) assert.equal(sha, name, `${ref}: ${name} hashes to its name`)
}

async function bytesBySource (daemon: DaemonProcess): Promise<{ origin: number, supernode: number, peer: number }> {
  return {
    origin: await scrapeMetric(daemon.url, PIECE_BYTES, { source: 'origin' }),
    supernode: await scrapeMetric(daemon.url, PIECE_BYTES, { source: 'supernode' }),
    peer: await scrapeMetric(daemon.url, PIECE_BYTES, { source: 'peer' })
  }
}

async function stopAll (procs: Array<RunningProcess | undefined>): Promise<void> {
  await Promise.allSettled(procs.map(async p => { await p?.stop() }))
}

describe('back to source', () => {
  let dir: string
  let origin: TestRegistry
  let small: PushedImage
  let big: PushedImage
  const procs: RunningProcess[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-faults-src-'))
    origin = await startRegistry({ auth: 'none' })
    small = await pushImage(origin, { repository: 'test/small', tag: 'v1', layers: [{ size: 3 << 20, seed: 'bts-small' }, { size: 2000, seed: 'bts-tiny' }] })
    big = await pushImage(origin, { repository: 'test/big', tag: 'v1', layers: [{ size: 48 << 20, seed: 'bts-big' }] })
  })

  after(async () => {
    await stopAll(procs)
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  it('with the supernode unreachable from the start and no peer, the pull comes from the origin', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}`
    const daemon = await startDaemon({ name: 'lonely', supernode: nowhere, upstream: origin.url, dataDir: join(dir, 'lonely'), logDir: dir })
    procs.push(daemon)
    await pullAndCheck(`${daemon.host}/test/small:v1`, join(dir, 'pull-lonely'), small)
    const got = await bytesBySource(daemon)
    assert.deepEqual(got, { origin: imageBytes(small), supernode: 0, peer: 0 })
  })

  it('with the supernode killed mid-transfer, the remaining pieces come from the origin', async () => {
    const supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    procs.push(supernode)
    const daemon = await startDaemon({
      name: 'orphan', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'orphan'), logDir: dir, extraArgs: ['--download-limit', '8M']
    })
    procs.push(daemon)
    const pull = pullAndCheck(`${daemon.host}/test/big:v1`, join(dir, 'pull-orphan'), big)
    pull.catch(() => {})
    // at 8 MiB/s the 48 MiB layer takes about six seconds: kill the supernode a few pieces in
    await until(async () => (await scrapeMetric(daemon.url, PIECE_BYTES, { source: 'supernode' })) >= 4 << 20)
    const before = await bytesBySource(daemon)
    assert.ok(before.supernode >= 4 << 20, 'the transfer was under way')
    assert.ok(before.supernode < imageBytes(big), 'the transfer was not over')
    await supernode.kill()
    await pull
    const got = await bytesBySource(daemon)
    assert.ok(got.origin > 0, 'pieces came from the origin')
    assert.equal(got.peer, 0)
    assert.equal(got.origin + got.supernode, imageBytes(big), 'every piece byte counted once')
  })
})

describe('origin down', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let supernode: SupernodeProcess
  let first: DaemonProcess
  let second: DaemonProcess
  const procs: RunningProcess[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-faults-origin-'))
    origin = await startRegistry({ auth: 'none' })
    image = await pushImage(origin, { repository: 'test/app', tag: 'v1', layers: [{ size: 5 << 20, seed: 'od-big' }, { size: 100 << 10, seed: 'od-small' }] })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    procs.push(supernode)
    first = await startDaemon({ name: 'first', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'first'), logDir: dir })
    second = await startDaemon({ name: 'second', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'second'), logDir: dir })
    procs.push(first, second)
  })

  after(async () => {
    await stopAll(procs)
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  it('a daemon that resolved the tag before pulls by tag and by digest from its manifest cache and the swarm', async () => {
    await pullAndCheck(`${first.host}/test/app:v1`, join(dir, 'pull-first'), image)
    // the second host resolved the tag while the origin was up (as a runtime does before a pull)
    const resolved = await request(`${second.url}/v2/test/app/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT.join(', ') } })
    await resolved.body.dump()
    assert.equal(resolved.statusCode, 200)
    assert.equal(resolved.headers['docker-content-digest'], image.tagDigest)

    await origin.stop()
    await pullAndCheck(`${second.host}/test/app:v1`, join(dir, 'pull-second-tag'), image)
    await pullAndCheck(`${second.host}/test/app@${image.tagDigest}`, join(dir, 'pull-second-digest'), image)
    const logs = (await second.logs()).split('\n').filter(l => l.includes('"level":40') && l.includes('last known digest'))
    assert.ok(logs.length >= 1, 'a warning says the tag fell back to its last known digest')
    const got = await bytesBySource(second)
    assert.equal(got.origin, 0)
    assert.equal(got.supernode + got.peer, imageBytes(image), 'every blob from the supernode and peers')

    // a digest the cache has served whole, with its media type
    const byDigest = await request(`${second.url}/v2/test/app/manifests/${image.tagDigest}`, { headers: { accept: MANIFEST_ACCEPT.join(', ') } })
    const body = Buffer.from(await byDigest.body.arrayBuffer())
    assert.equal(byDigest.statusCode, 200)
    assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, image.tagDigest)
    assert.equal(byDigest.headers['content-type'], image.manifests[0].mediaType)
    // a tag never seen is not invented
    const unknown = await request(`${second.url}/v2/test/app/manifests/v2`)
    await unknown.body.dump()
    assert.ok(unknown.statusCode >= 500, `an unknown tag with the origin down is an error (${unknown.statusCode})`)
  })

  it('a supernode restarted with the origin down still serves what it stored', async () => {
    await stopAll([first, second])
    await supernode.stop()
    const restarted = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, name: 'supernode-2', port: supernode.port, p2pPort: supernode.p2pPort })
    procs.push(restarted)
    const fresh = await startDaemon({ name: 'fresh', supernode: restarted.url, upstream: origin.url, dataDir: join(dir, 'fresh'), logDir: dir })
    procs.push(fresh)
    for (const digest of blobDigests(image)) {
      const res = await request(`${fresh.url}/v2/test/app/blobs/${digest}`)
      const body = Buffer.from(await res.body.arrayBuffer())
      assert.equal(res.statusCode, 200, digest)
      assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, digest)
    }
    assert.deepEqual(await bytesBySource(fresh), { origin: 0, supernode: imageBytes(image), peer: 0 })
    assert.equal(await scrapeMetric(restarted.url, 'damselfly_supernode_origin_bytes_total'), 0, 'nothing was fetched again')
  })
})

describe('a piece rotting on a daemon\'s disk', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let supernode: SupernodeProcess
  let rotten: DaemonProcess
  const procs: RunningProcess[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-faults-rot-'))
    origin = await startRegistry({ auth: 'none' })
    // 8 MiB: sixteen 512 KiB pieces (pieceSizeFor)
    image = await pushImage(origin, { repository: 'test/rot', tag: 'v1', layers: [{ size: 8 << 20, seed: 'rot-layer' }] })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    procs.push(supernode)
    // every piece it serves is hashed as it is read from disk, even one it has just checked
    rotten = await startDaemon({ name: 'rotten', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'rotten'), logDir: dir, extraArgs: ['--piece-recheck-ms', '0'] })
    procs.push(rotten)
  })

  after(async () => {
    await stopAll(procs)
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  it('is not spread to a peer, and its holder fetches the blob again', async () => {
    await pullAndCheck(`${rotten.host}/test/rot:v1`, join(dir, 'pull-rotten'), image)
    // its provider records are out before the supernode goes: the next daemon finds it on the DHT
    await until(async () => (await scrapeMetric(rotten.url, 'damselfly_dfdaemon_dht_provides_total', { result: 'ok' })) >= 2)
    const layer = image.layers[0]
    const fh = await open(join(dir, 'rotten', 'store', 'blobs', 'sha256', layer.digest.slice(7), 'data'), 'r+')
    try {
      await fh.write(Buffer.alloc(64, 0xff), 0, 64, (3 << 20) + 1000)
    } finally {
      await fh.close()
    }
    // with the supernode gone the rotten daemon is the only holder the newcomer finds
    await supernode.stop()
    const peer = await peerIdOf(join(dir, 'rotten'))
    const newcomer = await startDaemon({
      name: 'newcomer',
      supernode: supernode.url,
      upstream: origin.url,
      dataDir: join(dir, 'newcomer'),
      logDir: dir,
      extraArgs: ['--bootstrap', `/ip4/127.0.0.1/tcp/${rotten.p2pPort}/p2p/${peer}`, '--stall-timeout', '3000']
    })
    procs.push(newcomer)
    await pullAndCheck(`${newcomer.host}/test/rot:v1`, join(dir, 'pull-newcomer'), image)
    assert.ok(await scrapeMetric(rotten.url, 'damselfly_dfdaemon_corrupt_pieces_total') >= 1, 'the rotten piece was found')
    const newcomerBytes = await bytesBySource(newcomer)
    // at least the refused piece; more when the origin was added with others still missing
    const pieceSize = pieceSizeFor(layer.size)
    assert.ok(newcomerBytes.origin >= pieceSize, `the piece the rotten daemon refused came from the origin (origin sent ${newcomerBytes.origin} bytes, a piece is ${pieceSize})`)
    assert.equal(newcomerBytes.origin + newcomerBytes.peer, imageBytes(image))

    // the rotten daemon dropped the layer: its next pull fetches it again, and gets it right
    const before = await scrapeMetric(rotten.url, PIECE_BYTES)
    await pullAndCheck(`${rotten.host}/test/rot:v1`, join(dir, 'pull-rotten-again'), image)
    assert.equal(await scrapeMetric(rotten.url, PIECE_BYTES) - before, layer.size, 'the layer was fetched again')
  })
})
