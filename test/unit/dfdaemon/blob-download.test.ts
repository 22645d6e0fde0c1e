import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { Registry } from 'prom-client'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { BlobStore } from '../../../shared/store/blob-store.js'
import { digestOf, sha256Hex, type Digest } from '../../../shared/oci/digest.js'
import { pieceCount, pieceRange, pieceSizeFor } from '../../../shared/pieces/piece-math.js'
import { createNode, type DamselflyNode } from '../../../shared/p2p/node.js'
import type { TaskAnswer } from '../../../shared/p2p/task-messages.js'
import { BlobDownload } from '../../../dfdaemon/swarm/blob-download.js'
import { RarestFirstPolicy } from '../../../dfdaemon/swarm/piece-policy.js'
import { SupernodeClient } from '../../../dfdaemon/swarm/supernode-client.js'
import { SwarmNetwork, type AnnounceEntry } from '../../../dfdaemon/swarm/swarm-network.js'
import { DaemonMetrics } from '../../../dfdaemon/metrics.js'
import type { PieceSource } from '../../../dfdaemon/swarm/piece-source.js'
import { Neighbour } from '../../../dfdaemon/swarm/neighbour.js'
import { FramedStream } from '../../../shared/p2p/codec.js'
import { Bitfield } from '../../../shared/pieces/bitfield.js'
import { TooManyRequestsError, UnavailableError } from '../../../shared/errors.js'
import { signTicket } from '../../../shared/security/ticket.js'

const logger = pino({ level: 'silent' })

/** What a test of BlobDownload plugs in besides the task: neighbours, and what it watches. */
interface DownloadHooks {
  joined?: (d: BlobDownload) => void
  peerSource?: (neighbour: Neighbour) => PieceSource
  onGrant?: (digest: string, ticket: string | undefined) => void
  /** Each announce to the tracker, before it goes out. */
  onAnnounce?: (entries: AnnounceEntry[], d: BlobDownload) => void
}

/** A blob cut into pieces the way the supernode cuts it, with each piece's bytes and hash. */
function pieced (blob: Buffer): { digest: Digest, size: number, pieceSize: number, pieces: Array<{ bytes: Buffer, sha256: string }> } {
  const pieceSize = pieceSizeFor(blob.byteLength)
  const pieces = Array.from({ length: pieceCount(blob.byteLength, pieceSize) }, (_, i) => {
    const { start, end } = pieceRange(blob.byteLength, pieceSize, i)
    const bytes = blob.subarray(start, end)
    return { bytes, sha256: sha256Hex(bytes) }
  })
  return { digest: digestOf(blob), size: blob.byteLength, pieceSize, pieces }
}

/** The blob's piece manifest as a task sends it: every hash, or the ones given. */
function wireManifest (blob: ReturnType<typeof pieced>, hashes: Array<string | null> = blob.pieces.map(p => p.sha256)): Extract<TaskAnswer, { type: 'manifest' }>['manifest'] {
  return { digest: blob.digest.value, size: blob.size, pieceSize: blob.pieceSize, pieces: hashes }
}

/** A task for a blob the supernode already holds: the manifest with every hash, then done. */
function wholeTask (blob: ReturnType<typeof pieced>): () => AsyncGenerator<TaskAnswer> {
  return async function * () {
    yield { type: 'manifest', manifest: wireManifest(blob) }
    yield { type: 'done' }
  }
}

describe('BlobDownload', () => {
  let dir: string
  let store: BlobStore
  let node: DamselflyNode
  // in-memory streams hold no handle: keep the loop alive while a neighbour's read waits
  let keepAlive: NodeJS.Timeout

  before(async () => {
    keepAlive = setInterval(() => {}, 60_000)
    dir = await mkdtemp(join(tmpdir(), 'damselfly-download-'))
    store = new BlobStore({ dir, logger })
    await store.init()
    // a node that is never started: the tracker (no supernode here) and the DHT find nobody
    node = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })
  })

  after(async () => {
    clearInterval(keepAlive)
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  /**
   * Run a download of `blob` whose supernode task gives `answers` and whose supernode
   * serves each piece once `served` resolves (or refuses it: `served` rejects); an
   * origin that is only recorded when added. Neighbours come from `joined`, called
   * once the download has started, as pieces sources made by `peerSource`.
   * Resolves when the download is done.
   */
  async function download (blob: ReturnType<typeof pieced>, answers: () => AsyncGenerator<TaskAnswer>, served: Promise<void>, neighbours: DownloadHooks = {}): Promise<{ d: BlobDownload, error?: Error, originAdded: boolean, registry: Registry }> {
    const registry = new Registry()
    const metrics = new DaemonMetrics(registry)
    const supernode = new SupernodeClient({ libp2p: node, logger }, { url: 'http://127.0.0.1:9', infoTimeoutMs: 200 })
    const network = new SwarmNetwork({ libp2p: node, supernode, metrics, logger }, { announceTimeoutMs: 200, lookupTimeoutMs: 200 })
    const announce = network.announce.bind(network)
    network.announce = async (entries) => {
      neighbours.onAnnounce?.(entries, d)
      return await announce(entries)
    }
    let originAdded = false
    const d = new BlobDownload({
      store,
      metrics,
      logger,
      network,
      openTask: async () => ({ close: () => {}, [Symbol.asyncIterator]: answers }),
      onGrant: neighbours.onGrant,
      supernodeSource: (_manifest, has): PieceSource => ({
        id: 'supernode',
        kind: 'supernode',
        maxInFlight: 4,
        has,
        fetch: async (index) => {
          await served
          return blob.pieces[index]
        }
      }),
      peerSource: (_manifest, neighbour) => {
        if (neighbours.peerSource == null) throw new Error('no neighbours here')
        return neighbours.peerSource(neighbour)
      },
      origin: {
        manifest: async () => { throw new Error('the supernode answered') },
        source: (): PieceSource => {
          originAdded = true
          return { id: 'origin', kind: 'origin', maxInFlight: 4, has: () => true, fetch: async () => { throw new Error('origin not reachable in this test') } }
        }
      }
    }, { req: { registry: 'example.test', repository: 'team/app', digest: blob.digest }, policy: new RarestFirstPolicy(), noProgressTimeoutMs: 1000 })
    d.start()
    if (neighbours.joined != null) {
      await d.ready
      neighbours.joined(d)
    }
    try {
      await d.done
    } catch {
      // reported through `error`
    }
    network.close()
    return { d, error: d.error, originAdded, registry }
  }

  it('holding every piece, waits for the supernode\'s done past the no-progress deadline: no origin, no failure', async () => {
    const blob = pieced(Buffer.from('a one-piece blob whose task ends late'))
    // the manifest and the piece's hash at once, `done` only after three no-progress
    // deadlines (a supernode whose own commit is slow, as on a starved host)
    const answers = async function * (): AsyncGenerator<TaskAnswer> {
      yield { type: 'manifest', manifest: wireManifest(blob) }
      await sleep(3200)
      yield { type: 'done' }
    }
    const { error, originAdded, registry } = await download(blob, answers, Promise.resolve())
    assert.equal(error, undefined)
    assert.equal(originAdded, false, 'nothing is missing: no back-to-source')
    assert.match(await registry.getSingleMetricAsString('damselfly_dfdaemon_blob_downloads_total'), /result="success"} 1/)
    assert.ok(await store.getComplete(blob.digest) != null, 'the blob is in the store')
  })

  it('a one-piece blob comes from the supernode without looking for neighbours; a larger one looks for them', async () => {
    const small = pieced(Buffer.from('an image config: one piece'))
    const asked: boolean[] = []
    const one = await download(small, wholeTask(small), Promise.resolve(), { onAnnounce: (entries) => { asked.push(...entries.map(e => e.wantPeers)) } })
    assert.equal(one.error, undefined)
    assert.ok(await store.getComplete(small.digest) != null, 'the blob is in the store')
    // its holders are still told to the tracker once it is complete
    for (let i = 0; i < 100 && asked.length === 0; i++) await sleep(10)
    assert.deepEqual(asked, [false], 'one announce, of the complete blob, asking for no peers')

    const big = pieced(Buffer.alloc((2 << 20) + 1, 7))
    assert.ok(big.pieces.length > 1)
    const askedBig: boolean[] = []
    const many = await download(big, wholeTask(big), Promise.resolve(), { onAnnounce: (entries) => { askedBig.push(...entries.map(e => e.wantPeers)) } })
    assert.equal(many.error, undefined)
    assert.ok(askedBig.includes(true), 'a blob of several pieces asks the tracker for neighbours')
  })

  it('a one-piece blob the supernode answers for but fails to serve looks for neighbours, and takes it from one', async () => {
    const small = pieced(Buffer.from('an image config the supernode cannot serve'))
    // the task answers with the manifest and done; every piece request then fails, as from a
    // supernode that went away after answering (the origin is unreachable in this helper)
    const gone = Promise.reject(new UnavailableError('supernode went away'))
    gone.catch(() => {})
    const [ours, theirs] = await streamPair()
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const all = new Bitfield(1)
    all.set(0)
    const asked: boolean[] = []
    let joined = false
    let stuck: NodeJS.Timeout | undefined
    const { d, error } = await download(small, wholeTask(small), gone, {
      // the tracker answers the first announce asking for peers with a neighbour that holds the blob
      onAnnounce: (entries, d) => {
        asked.push(...entries.map(e => e.wantPeers))
        if (joined || !entries.some(e => e.wantPeers)) return
        joined = true
        d.addNeighbour(new Neighbour(peer, all, new FramedStream(ours), logger, false))
        stuck = setTimeout(() => { d.cancel(new Error('no piece came from the neighbour')) }, 5000)
      },
      peerSource: (n) => ({ id: n.id, kind: 'peer', maxInFlight: 2, has: (i) => n.bitfield.has(i), fetch: async (index) => small.pieces[index] })
    })
    clearTimeout(stuck)
    theirs.abort(new Error('test over'))
    assert.equal(error, undefined)
    assert.equal(asked[0], true, 'its first announce asks for peers')
    assert.equal(d.received.peer, small.size, 'the piece came from the neighbour')
    assert.ok(await store.getComplete(small.digest) != null, 'the blob is in the store')
  })

  it('does not go back to the origin while the supernode is still fetching the blob and advancing', async () => {
    // six pieces; the supernode learns them one by one from the origin, a piece's hash every
    // 0.3 s (well within the 1 s deadline), and no piece reaches us until its fetch is done
    // (a swarm slower than the deadline)
    const bytes = Buffer.alloc(6 * pieceSizeFor(1) - 100, 7)
    for (let i = 0; i < bytes.length; i += 4096) bytes[i] = i & 0xff
    const blob = pieced(bytes)
    assert.equal(blob.pieces.length, 6)
    let fetchedWhole!: () => void
    const whole = new Promise<void>(resolve => { fetchedWhole = resolve })
    const answers = async function * (): AsyncGenerator<TaskAnswer> {
      yield { type: 'manifest', manifest: wireManifest(blob, blob.pieces.map(() => null)) }
      for (const [index, piece] of blob.pieces.entries()) {
        await sleep(300)
        yield { type: 'piece', index, sha256: piece.sha256 }
      }
      fetchedWhole()
      yield { type: 'done' }
    }
    const { error, originAdded } = await download(blob, answers, whole)
    assert.equal(error, undefined)
    assert.equal(originAdded, false, 'the supernode kept advancing: no back-to-source')
    assert.ok(await store.getComplete(blob.digest) != null, 'the blob is in the store')
  })

  /** A blob of three pieces, its bytes set by `fill`, and a task that has every hash at once. */
  function threePieces (fill: number): { blob: ReturnType<typeof pieced>, answers: () => AsyncGenerator<TaskAnswer> } {
    const blob = pieced(Buffer.alloc(3 * pieceSizeFor(1) - 100, fill))
    assert.equal(blob.pieces.length, 3)
    return { blob, answers: wholeTask(blob) }
  }

  it('keeps a neighbour that holds every piece as a source when its stream ends: it finished and seeds the blob', async () => {
    const { blob, answers } = threePieces(11)
    // the supernode sent every piece to that neighbour and refuses us ("ask your neighbours")
    const refused = Promise.reject(new TooManyRequestsError('ask your neighbours'))
    refused.catch(() => {})
    const [ours, theirs] = await streamPair()
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const all = new Bitfield(3)
    for (let i = 0; i < 3; i++) all.set(i)
    const neighbour = new Neighbour(peer, all, new FramedStream(ours), logger, false)
    let stuck: NodeJS.Timeout | undefined
    const { d, error, originAdded, registry } = await download(blob, answers, refused, {
      // it greets us holding everything and then ends its stream, as a daemon does that
      // finishes the blob while greeting
      joined: (d) => {
        d.addNeighbour(neighbour)
        void theirs.close()
        stuck = setTimeout(() => { d.cancel(new Error('no piece came from the seed')) }, 5000)
      },
      // its pieces come over streams of their own, asked for once its swarm stream has ended
      peerSource: (n) => ({
        id: n.id,
        kind: 'peer',
        maxInFlight: 2,
        has: (i) => n.bitfield.has(i),
        fetch: async (index, signal) => {
          while (!n.isClosed) await sleep(5)
          if (signal.aborted) throw signal.reason as Error
          return blob.pieces[index]
        }
      })
    })
    clearTimeout(stuck)
    theirs.abort(new Error('test over'))
    assert.equal(error, undefined)
    assert.equal(originAdded, false)
    assert.equal(d.received.peer, blob.pieces.reduce((n, p) => n + p.bytes.byteLength, 0), 'every piece came from the neighbour')
    // kept as a source after its stream ended, it leaves the neighbour count with the download
    assert.match(await registry.getSingleMetricAsString('damselfly_dfdaemon_neighbours'), /damselfly_dfdaemon_neighbours 0/)
    assert.ok(await store.getComplete(blob.digest) != null, 'the blob is in the store')
  })

  it('tells a neighbour greeted while the last pieces arrived that it holds them all before ending the stream', async () => {
    const { blob, answers } = threePieces(12)
    const { d, error } = await download(blob, answers, Promise.resolve())
    assert.equal(error, undefined)
    // our greeting went out holding piece 0 only; the download finished before the neighbour joined
    const told = new Bitfield(3)
    told.set(0)
    const [ours, theirs] = await streamPair()
    const [a, b] = await Promise.all([0, 1].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    const heard: number[] = []
    const theirView = Bitfield.fromBase64(3, told.toBase64())
    const ended = new Promise<void>(resolve => {
      new Neighbour(a, theirView, new FramedStream(theirs), logger, false).start({ onHave: (i) => { heard.push(i) }, onClose: resolve })
    })
    d.addNeighbour(new Neighbour(b, new Bitfield(3), new FramedStream(ours), logger, true, told))
    await ended
    assert.deepEqual(heard.sort(), [1, 2], 'a have for each piece the greeting did not mention, then the end')
    assert.ok(theirView.complete, 'the neighbour sees a seed')
  })

  it('asks the supernode again for a private blob before its ticket expires, and shows the new ticket from then on', async () => {
    const { blob } = threePieces(13)
    const key = await generateKeyPair('Ed25519')
    const first = await signTicket(key, { peer: 'p', digest: blob.digest.value, exp: Math.floor(Date.now() / 1000) + 2 })
    const second = await signTicket(key, { peer: 'p', digest: blob.digest.value, exp: Math.floor(Date.now() / 1000) + 3600 })
    let opened = 0
    let renewed!: () => void
    const renewal = new Promise<void>(resolve => { renewed = resolve })
    // the first task stays open while the pieces are slow to come; the second answers at once
    const answers = async function * (): AsyncGenerator<TaskAnswer> {
      const ticket = ++opened === 1 ? first : second
      yield { type: 'manifest', manifest: wireManifest(blob), ticket }
      if (opened === 1) await renewal
      yield { type: 'done' }
    }
    // bounded: without a renewal the pieces come after 10 s, and the assertions below fail
    const bound = setTimeout(() => { renewed() }, 10_000)
    const grants: Array<string | undefined> = []
    const { d, error } = await download(blob, answers, renewal, {
      onGrant: (_digest, ticket) => {
        grants.push(ticket)
        if (ticket === second) renewed()
      }
    })
    clearTimeout(bound)
    assert.equal(error, undefined)
    assert.equal(opened, 2, 'one task for the download, one for the renewal')
    assert.deepEqual(grants, [first, second])
    assert.equal(d.ticket, second)
  })
})
