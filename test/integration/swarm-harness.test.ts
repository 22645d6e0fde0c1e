/**
 * The many-peer harness: one process runs a real registry, an in-process
 * supernode and a dozen-odd in-process dfdaemons, and pulls blobs through
 * their mirror endpoints. What it checks is how the swarm shares: the origin
 * sends each blob once, the supernode about one copy, the daemons trade the
 * rest; a slow or vanishing peer costs time, never a pull; the upload and
 * download bounds hold.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { request } from 'undici'
import type { Counter } from 'prom-client'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createDaemon, type Daemon } from '../../dfdaemon/daemon.js'
import { DAEMON_DEFAULTS, type DaemonConfig } from '../../dfdaemon/config.js'
import { createSupernode, type Supernode } from '../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../supernode/config.js'
import { createNode, type DamselflyNode } from '../../shared/p2p/node.js'
import { fetchPiece } from '../../shared/p2p/piece-protocol.js'
import { FramedStream } from '../../shared/p2p/codec.js'
import { SWARM_PROTOCOL } from '../../shared/p2p/protocols.js'
import { SwarmHello, SwarmUpdate } from '../../shared/p2p/swarm-messages.js'
import { announce } from '../../shared/p2p/tracker-client.js'
import { Bitfield } from '../../shared/pieces/bitfield.js'
import { parseDigest, sha256Hex } from '../../shared/oci/digest.js'
import { pieceCount, pieceLength, pieceRange, pieceSizeFor } from '../../shared/pieces/piece-math.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { rejectsWithName } from '../helpers/assertions.js'

// DAMSELFLY_HARNESS_LOG=<file>: every node's debug log there, to see why a scenario went wrong
const logFile = process.env.DAMSELFLY_HARNESS_LOG
const logger = logFile != null ? pino({ level: 'debug' }, pino.destination(logFile)) : pino({ level: 'silent' })
const repository = 'team/harness'
const CROWD = 10
/** Generous: a pull that takes this long has hung, whatever the machine. */
const PULL_DEADLINE_MS = 240_000

type Layer = PushedImage['layers'][number]

/** Sum of a counter's values whose labels include `labels`. */
async function counterValue (c: Counter<string>, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await c.get()
  return values
    .filter(v => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((n, v) => n + v.value, 0)
}

async function sumOver (daemons: Daemon[], pick: (d: Daemon) => Counter<string>, labels: Record<string, string> = {}): Promise<number> {
  let n = 0
  for (const d of daemons) n += await counterValue(pick(d), labels)
  return n
}

describe('swarm harness: many daemons in one process', () => {
  let root: string | undefined
  let reg: TestRegistry | undefined
  let supernode: Supernode | undefined
  let image: PushedImage
  const daemons: Daemon[] = []
  const stopped = new Set<Daemon>()
  const nodes: DamselflyNode[] = []
  // layers: one per scenario so the swarms do not mix
  let crowdLayer: Layer
  let slowLayer: Layer
  let vanishLayer: Layer
  let limitsLayer: Layer
  let catchUpLayer: Layer

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'damselfly-harness-'))
    reg = await startRegistry()
    image = await pushImage(reg, {
      repository,
      tag: 'v1',
      layers: [
        { size: 24 << 20, seed: 'harness-crowd' },
        { size: 8 << 20, seed: 'harness-slow' },
        { size: 8 << 20, seed: 'harness-vanish' },
        { size: 3 << 20, seed: 'harness-limits' },
        { size: 4 << 20, seed: 'harness-catch-up' }
      ]
    })
    ;[crowdLayer, slowLayer, vanishLayer, limitsLayer, catchUpLayer] = image.layers
    supernode = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: join(root, 'supernode'), host: '127.0.0.1', port: 0, p2pPort: 0, logLevel: 'silent' }, { logger })
    await supernode.start()
  })

  after(async () => {
    const results = await Promise.allSettled([
      ...daemons.filter(d => !stopped.has(d)).map(async d => { await d.stop() }),
      ...nodes.map(async n => { await n.stop() })
    ])
    await supernode?.stop()
    await reg?.stop()
    if (root != null) await rm(root, { recursive: true, force: true })
    for (const r of results) if (r.status === 'rejected') throw r.reason
  })

  /** A started daemon on loopback with its own data dir; registered for cleanup first. */
  async function startDaemon (name: string, overrides: Partial<DaemonConfig> = {}): Promise<Daemon> {
    const sn = supernode as Supernode
    const d = await createDaemon({
      ...DAEMON_DEFAULTS,
      supernode: sn.httpAddress as string,
      dataDir: join(root as string, name),
      host: '127.0.0.1',
      port: 0,
      p2pPort: 0,
      upstream: (reg as TestRegistry).url,
      logLevel: 'silent',
      // back-to-source would hide a swarm that does not deliver: keep it far away
      noProgressTimeoutMs: 120_000,
      ...overrides
    }, { logger: logger.child({ daemon: name }) })
    daemons.push(d)
    await d.start()
    return d
  }

  /**
   * Daemons started one by one, each connected to the supernode before the next starts.
   * Every node here dials from 127.0.0.1, and libp2p refuses more than 5 inbound
   * connections a second from one host (inboundConnectionThreshold): hosts of a real
   * cluster have an address each. Pacing the dials stands in for that.
   */
  async function startDaemons (prefix: string, n: number, overrides: Partial<DaemonConfig> = {}): Promise<Daemon[]> {
    const out: Daemon[] = []
    for (let i = 0; i < n; i++) {
      const d = await startDaemon(`${prefix}-${i}`, overrides)
      out.push(d)
      await dialPaced(d, supernodeAddr())
    }
    return out
  }

  function supernodeAddr (): Multiaddr {
    return multiaddr((supernode as Supernode).multiaddrs[0])
  }

  /** Dial (or reuse) a connection, then wait out the receiver's per-host inbound rate. */
  async function dialPaced (from: Daemon | DamselflyNode, to: Multiaddr): Promise<void> {
    const node = 'node' in from ? from.node : from
    const peer = to.toString().split('/p2p/')[1]
    if (peer != null && node.getConnections().some(c => c.remotePeer.toString() === peer && c.status === 'open')) return
    await node.dial(to, { signal: AbortSignal.timeout(10_000) })
    await sleep(250)
  }

  /**
   * Connect every daemon of `group` with every other and with each of `holders`,
   * in rounds where each node receives at most one dial (4 rounds a second),
   * the way daemons on separate hosts would connect when the pull starts.
   */
  async function mesh (group: Daemon[], holders: Daemon[] = []): Promise<void> {
    const n = group.length
    for (let r = 1; r <= Math.floor(n / 2); r++) {
      await Promise.all(group.map(async (d, i) => {
        const to = group[(i + r) % n]
        if (!d.node.getConnections(to.node.peerId).some(c => c.status === 'open')) await d.node.dial(to.node.getMultiaddrs()[0], { signal: AbortSignal.timeout(10_000) })
      }))
      await sleep(250)
    }
    for (const h of holders) for (const d of group) await dialPaced(d, h.node.getMultiaddrs()[0])
  }

  async function stopDaemon (d: Daemon): Promise<void> {
    stopped.add(d)
    await d.stop()
  }

  /** GET the blob through a daemon's mirror, streaming and hashing the body; returns its digest. */
  async function pull (d: Daemon, layer: Layer): Promise<string> {
    const ac = new AbortController()
    // a ref'd timer: it both bounds the pull and keeps the loop alive while we wait
    const timer = setTimeout(() => { ac.abort(new Error(`pull of ${layer.digest} from ${d.mirrorUrl} exceeded ${PULL_DEADLINE_MS} ms`)) }, PULL_DEADLINE_MS)
    try {
      const res = await request(`${d.mirrorUrl}/v2/${repository}/blobs/${layer.digest}`, { signal: ac.signal })
      if (res.statusCode !== 200) throw new Error(`mirror answered ${res.statusCode}: ${await res.body.text()}`)
      const hash = createHash('sha256')
      let size = 0
      for await (const chunk of res.body) {
        hash.update(chunk as Buffer)
        size += (chunk as Buffer).byteLength
      }
      assert.equal(size, layer.size, 'body length')
      return `sha256:${hash.digest('hex')}`
    } finally {
      clearTimeout(timer)
    }
  }

  async function supernodeUploaded (): Promise<number> {
    const metric = (supernode as Supernode).metrics.getSingleMetric('damselfly_supernode_upload_bytes_total')
    assert.ok(metric != null)
    return (await metric.get()).values.reduce((n, v) => n + v.value, 0)
  }

  /** Wait (bounded) until `cond` holds; false when it never did. */
  async function until (cond: () => Promise<boolean>, tries = 2000, everyMs = 10): Promise<boolean> {
    for (let i = 0; i < tries; i++) {
      if (await cond()) return true
      await sleep(everyMs)
    }
    return false
  }

  it(`${CROWD} daemons pulling one layer at once: origin once, supernode under 2 copies, most bytes between peers`, async () => {
    const r = reg as TestRegistry
    const crowd = await startDaemons('crowd', CROWD)
    await mesh(crowd)
    const snBefore = await supernodeUploaded()

    const digests = await Promise.all(crowd.map(async d => await pull(d, crowdLayer)))
    for (const [i, got] of digests.entries()) assert.equal(got, crowdLayer.digest, `daemon ${i} got the right bytes`)

    await r.flushLog(() => r.blobRequests(crowdLayer.digest) >= 1)
    assert.equal(r.blobRequests(crowdLayer.digest), 1, 'the origin served the layer once')

    const snUploaded = await supernodeUploaded() - snBefore
    const fromPeers = await sumOver(crowd, d => d.metrics.pieceBytes, { source: 'peer' })
    const fromSupernode = await sumOver(crowd, d => d.metrics.pieceBytes, { source: 'supernode' })
    const fromOrigin = await sumOver(crowd, d => d.metrics.pieceBytes, { source: 'origin' })
    const total = CROWD * crowdLayer.size
    const receivedFromPeers = (await Promise.all(crowd.map(async d => await counterValue(d.metrics.pieceBytes, { source: 'peer' })))).filter(n => n > 0).length
    const uploaders = (await Promise.all(crowd.map(async d => await counterValue(d.metrics.uploadBytes)))).filter(n => n > 0).length
    const wasted = await sumOver(crowd, d => d.metrics.wastedBytes)
    process.stdout.write(`# crowd: supernode sent ${(snUploaded / crowdLayer.size).toFixed(2)} copies; ${(100 * fromPeers / total).toFixed(1)}% of bytes from peers; ` +
      `${receivedFromPeers}/${CROWD} daemons got pieces from peers, ${uploaders}/${CROWD} uploaded; ${(wasted / crowdLayer.size).toFixed(2)} copies wasted in endgame\n`)

    assert.equal(fromPeers + fromSupernode + fromOrigin, total, 'every piece byte counted once')
    assert.equal(fromOrigin, 0, 'nobody went back to the source')
    assert.ok(snUploaded < 2 * crowdLayer.size, `supernode sent ${(snUploaded / crowdLayer.size).toFixed(2)} copies`)
    assert.ok(snUploaded >= fromSupernode, 'the supernode sent at least what the daemons kept from it')
    assert.ok(fromPeers > total / 2, `peers delivered ${(100 * fromPeers / total).toFixed(1)}% of the bytes`)
    // rarest first spreads pieces: most daemons both got pieces from peers and served some
    assert.ok(receivedFromPeers >= Math.ceil(CROWD * 0.7), `${receivedFromPeers} of ${CROWD} daemons received pieces from peers`)
    assert.ok(uploaders >= 2, `${uploaders} of ${CROWD} daemons uploaded pieces: not one hub`)
    // every byte a daemon kept from a peer was uploaded by one (some uploads lose an endgame race)
    assert.ok(await sumOver(crowd, d => d.metrics.uploadBytes) >= fromPeers, 'bytes uploaded by daemons cover the bytes received from peers')
  })

  it('a slow peer holding the whole layer does not stall the others', async () => {
    const [slow] = await startDaemons('slow', 1, { uploadLimit: '64K' })
    // the slow daemon gets the layer alone first: then it is a seed like the supernode
    assert.equal(await pull(slow, slowLayer), slowLayer.digest)
    const fresh = await startDaemons('fresh', 4)
    await mesh(fresh, [slow])

    const digests = await Promise.all(fresh.map(async d => await pull(d, slowLayer)))
    for (const [i, got] of digests.entries()) assert.equal(got, slowLayer.digest, `daemon ${i} got the right bytes`)

    const total = fresh.length * slowLayer.size
    const fromSlow = await counterValue(slow.metrics.uploadBytes)
    const received = await sumOver(fresh, d => d.metrics.pieceBytes)
    const fromOrigin = await sumOver(fresh, d => d.metrics.pieceBytes, { source: 'origin' })
    const failures = await sumOver(fresh, d => d.metrics.pieceFailures)
    const wasted = await sumOver(fresh, d => d.metrics.wastedBytes)
    process.stdout.write(`# slow peer: it sent ${(100 * fromSlow / total).toFixed(1)}% of the bytes; ${failures} failed requests, ${wasted} bytes wasted, ${fromOrigin} from the origin\n`)
    assert.equal(received, total, 'every piece byte counted once')
    assert.ok(fromSlow < total / 2, `the slow peer sent ${(100 * fromSlow / total).toFixed(1)}% of the bytes`)
  })

  it('a peer that stops answering mid-download: the pulls finish on the others (endgame)', async () => {
    const r = reg as TestRegistry
    const [holder] = await startDaemons('vanish-holder', 1)
    assert.equal(await pull(holder, vanishLayer), vanishLayer.digest)
    // bounded downloads make the pulls last long enough to lose the holder halfway
    const fresh = await startDaemons('vanish', 4, { downloadLimit: '2M' })
    await mesh(fresh, [holder])
    const pieces = pieceCount(vanishLayer.size, pieceSizeFor(vanishLayer.size))

    const pulls = fresh.map(async d => await pull(d, vanishLayer))
    // once the holder has sent something and nobody is done yet, it goes away
    const midway = await until(async () => await counterValue(holder.metrics.uploadBytes) > 0 && await sumOver(fresh, d => d.metrics.pieces) >= fresh.length)
    assert.ok(midway, 'the holder was asked for pieces')
    const heldAtStop = await sumOver(fresh, d => d.metrics.pieces)
    await stopDaemon(holder)

    const digests = await Promise.all(pulls)
    for (const [i, got] of digests.entries()) assert.equal(got, vanishLayer.digest, `daemon ${i} got the right bytes`)

    const wasted = await sumOver(fresh, d => d.metrics.wastedBytes)
    const received = await sumOver(fresh, d => d.metrics.pieceBytes)
    const failures = await sumOver(fresh, d => d.metrics.pieceFailures)
    await r.flushLog()
    const originGets = r.blobRequests(vanishLayer.digest)
    process.stdout.write(`# vanishing peer: stopped with ${heldAtStop}/${fresh.length * pieces} pieces in; ${failures} failed requests afterwards, ${wasted} bytes wasted, origin GETs ${originGets}\n`)
    assert.ok(heldAtStop < fresh.length * pieces, 'the holder went away before the pulls were done')
    assert.ok(wasted >= 0)
    assert.equal(received, fresh.length * vanishLayer.size, 'every piece byte counted once, duplicates only as waste')
  })

  it('limits hold: maxUploads answers TOOMANYREQUESTS beyond it; a download bound still completes', async () => {
    const [limited] = await startDaemons('limits-uploads', 1, { maxUploads: 1, uploadLimit: '256K' })
    assert.equal(await pull(limited, limitsLayer), limitsLayer.digest)

    // the piece hashes, from the bytes the mirror serves
    const res = await request(`${limited.mirrorUrl}/v2/${repository}/blobs/${limitsLayer.digest}`)
    const blob = Buffer.from(await res.body.arrayBuffer())
    assert.equal(sha256Hex(blob), parseDigest(limitsLayer.digest).hex)
    const pieceSize = pieceSizeFor(blob.byteLength)
    assert.ok(pieceCount(blob.byteLength, pieceSize) >= 3)
    const piece = (index: number): { digest: ReturnType<typeof parseDigest>, index: number, sha256: string, length: number, messageTimeoutMs: number } => {
      const { start, end } = pieceRange(blob.byteLength, pieceSize, index)
      return { digest: parseDigest(limitsLayer.digest), index, sha256: sha256Hex(blob.subarray(start, end)), length: pieceLength(blob.byteLength, pieceSize, index), messageTimeoutMs: 30_000 }
    }

    const asker = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
    nodes.push(asker)
    await asker.start()
    await dialPaced(asker, limited.node.getMultiaddrs()[0])
    // a whole piece beyond the upload bucket: the next upload waits for the debt, holding the only slot
    const first = await fetchPiece(asker, limited.node.peerId, piece(0))
    assert.equal(first.byteLength, pieceSize)
    const both = await Promise.allSettled([fetchPiece(asker, limited.node.peerId, piece(1)), fetchPiece(asker, limited.node.peerId, piece(2))])
    const ok = both.filter(s => s.status === 'fulfilled')
    const refused = both.filter((s): s is PromiseRejectedResult => s.status === 'rejected')
    assert.equal(ok.length, 1, 'one upload at a time is served')
    assert.equal(refused.length, 1, 'the other is told to try elsewhere')
    await rejectsWithName(Promise.reject(refused[0].reason), 'TooManyRequestsError')
    // the slot is free again afterwards
    assert.equal((await fetchPiece(asker, limited.node.peerId, piece(1))).byteLength, pieceLength(blob.byteLength, pieceSize, 1))

    const [bounded] = await startDaemons('limits-downloads', 1, { downloadLimit: '1M' })
    assert.equal(await pull(bounded, limitsLayer), limitsLayer.digest)
    assert.equal(await counterValue(bounded.metrics.pieceBytes), limitsLayer.size)
  })

  it('a neighbour hears of every piece, also those completed while the greeting was under way', async () => {
    const size = catchUpLayer.size
    const pieceSize = pieceSizeFor(size)
    const count = pieceCount(size, pieceSize)
    assert.ok(count >= 6)
    // A pulls at 1 MiB/s from the supernode; P is a peer speaking the swarm protocol itself
    const [a] = await startDaemons('catch-up', 1, { downloadLimit: '1M' })
    const p = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
    nodes.push(p)
    await p.start()
    await dialPaced(p, supernodeAddr())
    await dialPaced(p, a.node.getMultiaddrs()[0])

    let said: Bitfield | undefined
    let aAdvanced = false
    const heard = new Bitfield(count)
    await p.handle(SWARM_PROTOCOL, async (stream) => {
      const framed = new FramedStream(stream, { messageTimeoutMs: 30_000 })
      try {
        const hello = await framed.readMessage(SwarmHello)
        const told = hello.have === '' ? new Bitfield(count) : Bitfield.fromBase64(count, hello.have)
        said = told
        // P answers only once A holds two pieces more than its hello said: A learns of
        // those while greeting, and must tell P of them when P joins its download
        aAdvanced = await until(async () => await counterValue(a.metrics.pieces) >= told.count + 2)
        await framed.writeMessage({ type: 'welcome', manifest: { digest: catchUpLayer.digest, size, pieceSize, pieces: new Array(count).fill(null) }, have: '' })
        for (;;) {
          const msg = await framed.readMessage(SwarmUpdate, { allowEnd: true })
          if (msg == null) break
          heard.set(msg.index)
        }
      } catch {
        // the stream ends when the test is over
      }
    })
    // the tracker hands P to A: a peer of the blob holding nothing yet
    await announce(p, (supernode as Supernode).node.peerId, {
      addrs: p.getMultiaddrs().map(String),
      blobs: [{ digest: catchUpLayer.digest, pieces: count, complete: false, have: new Bitfield(count).toBase64(), wantPeers: false }]
    })

    assert.equal(await pull(a, catchUpLayer), catchUpLayer.digest)
    assert.ok(said != null, 'A greeted P')
    assert.ok(aAdvanced, 'A got two more pieces while P held its welcome')
    const told = said
    const known = async (): Promise<boolean> => { for (let i = 0; i < count; i++) if (!told.has(i) && !heard.has(i)) return false; return true }
    assert.ok(await until(known, 500), `P knows every piece A holds (hello said ${told.count}, haves told ${heard.count} of ${count})`)
  })
})
