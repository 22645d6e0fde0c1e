/**
 * The swarm end to end: eight dfdaemons (separate processes) pull the same
 * image at the same moment with skopeo. The origin serves each blob once, the
 * supernode little more than one copy, and most piece bytes travel between
 * daemons. Then the supernode goes away and a new daemon, bootstrapped from a
 * peer, still gets the image from the others through the DHT.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { skopeoCopy, dirBlobs } from '../helpers/skopeo.js'
import { peerIdOf } from '../helpers/peer-id.js'

const DAEMONS = 8

describe('eight hosts pulling one image at once', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let imageBytes: number
  let supernode: SupernodeProcess
  const daemons: DaemonProcess[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-swarm-'))
    origin = await startRegistry({ auth: 'none' })
    image = await pushImage(origin, { repository: 'team/big', tag: 'v1', layers: [{ size: 64 << 20, seed: 'swarm-big' }, { size: 2 << 20, seed: 'swarm-mid' }, { size: 4000, seed: 'swarm-small' }] })
    imageBytes = image.config.size + image.layers.reduce((n, l) => n + l.size, 0)
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    for (let i = 0; i < DAEMONS; i++) {
      daemons.push(await startDaemon({ name: `daemon-${i}`, supernode: supernode.url, upstream: origin.url, dataDir: join(dir, `d${i}`), logDir: dir }))
    }
  })

  after(async () => {
    await Promise.allSettled([...daemons.map(async d => { await d.stop() }), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  const expected = (): string[] => [image.config.digest, ...image.layers.map(l => l.digest)].map(d => d.slice(7)).sort()

  it('every host gets every blob right; origin once, supernode under 2.5 copies, most bytes from peers', async () => {
    await Promise.all(daemons.map(async (d, i) => {
      const dest = join(dir, `pull-${i}`)
      await skopeoCopy(`${d.host}/team/big:v1`, dest)
      const got = await dirBlobs(dest)
      assert.deepEqual([...got.keys()].sort(), expected(), `daemon ${i} got the image's blobs`)
      for (const [name, sha] of got) assert.equal(sha, name, `daemon ${i}: ${name} hashes to its name`)
    }))
    await origin.flushLog()
    for (const d of [image.config.digest, ...image.layers.map(l => l.digest)]) assert.equal(origin.blobRequests(d), 1, `origin served ${d} once`)

    let fromPeers = 0
    let fromSupernode = 0
    for (const d of daemons) {
      fromPeers += await scrapeMetric(d.url, 'damselfly_dfdaemon_piece_bytes_total', { source: 'peer' })
      fromSupernode += await scrapeMetric(d.url, 'damselfly_dfdaemon_piece_bytes_total', { source: 'supernode' })
    }
    const uploaded = await scrapeMetric(supernode.url, 'damselfly_supernode_upload_bytes_total')
    const share = fromPeers / (fromPeers + fromSupernode)
    process.stdout.write(`# swarm: ${(share * 100).toFixed(1)}% of piece bytes from peers; supernode uploaded ${(uploaded / imageBytes).toFixed(2)} copies\n`)
    assert.equal(fromPeers + fromSupernode, DAEMONS * imageBytes, 'every piece byte counted once')
    assert.ok(share >= 0.6, `peers delivered ${(share * 100).toFixed(1)}% of piece bytes`)
    assert.ok(uploaded < 2.5 * imageBytes, `supernode uploaded ${(uploaded / imageBytes).toFixed(2)} copies`)
    let lookups = 0
    for (const d of daemons) lookups += await scrapeMetric(d.url, 'damselfly_dfdaemon_dht_lookups_total')
    assert.equal(lookups, 0, 'with the tracker answering, no daemon asked the DHT for peers')
  })

  it('with the supernode gone, a new daemon bootstrapped from a peer pulls from peers via the DHT', async () => {
    // wait (bounded) until the daemons have published provider records
    for (let i = 0; i < 300; i++) {
      let provided = 0
      for (const d of daemons) provided += await scrapeMetric(d.url, 'damselfly_dfdaemon_dht_provides_total', { result: 'ok' })
      if (provided >= DAEMONS) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    await supernode.stop()
    const peer = await peerIdOf(join(dir, 'd0'))
    const newcomer = await startDaemon({
      name: 'daemon-new',
      supernode: supernode.url,
      upstream: origin.url,
      dataDir: join(dir, 'new'),
      logDir: dir,
      extraArgs: ['--bootstrap', `/ip4/127.0.0.1/tcp/${daemons[0].p2pPort}/p2p/${peer}`]
    })
    daemons.push(newcomer)
    const dest = join(dir, 'pull-new')
    await skopeoCopy(`${newcomer.host}/team/big:v1`, dest)
    const got = await dirBlobs(dest)
    assert.deepEqual([...got.keys()].sort(), expected())
    for (const [name, sha] of got) assert.equal(sha, name)
    await origin.flushLog()
    for (const d of image.layers.map(l => l.digest)) assert.equal(origin.blobRequests(d), 1, 'the origin was not asked again')
    assert.equal(await scrapeMetric(newcomer.url, 'damselfly_dfdaemon_piece_bytes_total', { source: 'peer' }), imageBytes)
    assert.ok(await scrapeMetric(newcomer.url, 'damselfly_dfdaemon_dht_lookups_total', { result: 'found' }) >= 1, 'the newcomer found its peers on the DHT')
  })
})
