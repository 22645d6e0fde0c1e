/**
 * Peers dying mid-transfer, for real: eight dfdaemons (separate processes,
 * each held to 6 MB/s so transfers are surely in flight) pull the same image
 * at once; once pieces are moving, a third of them are killed with SIGKILL.
 * Every surviving pull completes with every digest right (requests that were
 * out to the dead peers fail by their deadline and go elsewhere), and the
 * survivors still serve: a newcomer gets the image from them.
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
import { until } from '../helpers/until.js'

const DAEMONS = 8
const KILLED = 3
const PIECE_BYTES = 'damselfly_dfdaemon_piece_bytes_total'

describe('a third of the swarm killed mid-transfer', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let imageBytes: number
  let supernode: SupernodeProcess | undefined
  const daemons: DaemonProcess[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-faults-peers-'))
    origin = await startRegistry({ auth: 'none' })
    image = await pushImage(origin, { repository: 'team/big', tag: 'v1', layers: [{ size: 48 << 20, seed: 'peers-big' }, { size: 2 << 20, seed: 'peers-mid' }, { size: 3000, seed: 'peers-small' }] })
    imageBytes = image.config.size + image.layers.reduce((n, l) => n + l.size, 0)
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    for (let i = 0; i < DAEMONS; i++) {
      daemons.push(await startDaemon({
        name: `daemon-${i}`,
        supernode: supernode.url,
        upstream: origin.url,
        dataDir: join(dir, `d${i}`),
        logDir: dir,
        extraArgs: ['--download-limit', '6M']
      }))
    }
  })

  after(async () => {
    await Promise.allSettled([...daemons.map(async d => { await d.stop() }), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  const expected = (): string[] => [image.config.digest, ...image.layers.map(l => l.digest)].map(d => d.slice(7)).sort()

  async function pullAndCheck (d: DaemonProcess, dest: string): Promise<void> {
    await skopeoCopy(`${d.host}/team/big:v1`, dest)
    const got = await dirBlobs(dest)
    assert.deepEqual([...got.keys()].sort(), expected(), `${d.name} got the image's blobs`)
    for (const [name, sha] of got) assert.equal(sha, name, `${d.name}: ${name} hashes to its name`)
  }

  it('every surviving pull completes with the right digests', { timeout: 600_000 }, async () => {
    const victims = daemons.slice(0, KILLED)
    const survivors = daemons.slice(KILLED)
    const pulls = daemons.map(async (d, i) => { await pullAndCheck(d, join(dir, `pull-${i}`)) })
    // the victims' pulls die with them
    for (const p of pulls.slice(0, KILLED)) p.catch(() => {})

    // pieces are moving between peers: every daemon has some, and the victims are serving others
    const uploads = async (): Promise<number> => (await Promise.all(victims.map(async d => await scrapeMetric(d.url, 'damselfly_dfdaemon_upload_bytes_total')))).reduce((a, b) => a + b, 0)
    const moving = await until(async () => {
      for (const d of daemons) if (await scrapeMetric(d.url, PIECE_BYTES) === 0) return false
      return await uploads() > 0
    }, 1200)
    assert.ok(moving, 'pieces reached every daemon, and the victims were uploading to peers')
    const uploadedByVictims = await uploads()
    let received = 0
    for (const d of survivors) received += await scrapeMetric(d.url, PIECE_BYTES)
    assert.ok(received < survivors.length * imageBytes, 'the survivors were still downloading at the kill')
    await Promise.all(victims.map(async d => { await d.kill() }))

    await Promise.all(pulls.slice(KILLED))

    let failedAtPeers = 0
    let peerBytes = 0
    for (const d of survivors) {
      assert.equal(await scrapeMetric(d.url, PIECE_BYTES), imageBytes, `${d.name}: every piece counted once`)
      failedAtPeers += await scrapeMetric(d.url, 'damselfly_dfdaemon_piece_failures_total', { source: 'peer' })
      peerBytes += await scrapeMetric(d.url, PIECE_BYTES, { source: 'peer' })
    }
    process.stdout.write(`# peers killed: victims had uploaded ${uploadedByVictims} bytes; survivors saw ${failedAtPeers} failed peer requests; ${peerBytes} of ${survivors.length * imageBytes} bytes came from peers\n`)
  })

  it('the survivors still serve: their pulls again, and a newcomer from them', { timeout: 600_000 }, async () => {
    const survivors = daemons.slice(KILLED)
    for (const [i, d] of survivors.entries()) {
      const before = await scrapeMetric(d.url, PIECE_BYTES)
      await pullAndCheck(d, join(dir, `again-${i}`))
      assert.equal(await scrapeMetric(d.url, PIECE_BYTES), before, `${d.name} served the image from its store`)
    }
    const sn = supernode as SupernodeProcess
    const uploaded = await scrapeMetric(sn.url, 'damselfly_supernode_upload_bytes_total')
    const newcomer = await startDaemon({ name: 'daemon-new', supernode: sn.url, upstream: origin.url, dataDir: join(dir, 'new'), logDir: dir })
    daemons.push(newcomer)
    await pullAndCheck(newcomer, join(dir, 'pull-new'))
    const fromPeers = await scrapeMetric(newcomer.url, PIECE_BYTES, { source: 'peer' })
    const fromSupernode = await scrapeMetric(newcomer.url, PIECE_BYTES, { source: 'supernode' })
    process.stdout.write(`# newcomer: ${fromPeers} bytes from peers, ${fromSupernode} from the supernode (which uploaded ${await scrapeMetric(sn.url, 'damselfly_supernode_upload_bytes_total') - uploaded})\n`)
    assert.equal(fromPeers + fromSupernode, imageBytes)
    assert.ok(fromPeers > 0, 'the survivors served the newcomer')
    await origin.flushLog()
    process.stdout.write(`# origin blob requests over the whole test: ${origin.blobRequests()}\n`)
  })
})
