import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { Registry } from 'prom-client'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { BlobStore } from '../../../shared/store/blob-store.js'
import { digestOf, sha256Hex, type Digest } from '../../../shared/oci/digest.js'
import { pieceCount, pieceRange, pieceSizeFor } from '../../../shared/pieces/piece-math.js'
import { createNode, type DamselflyNode } from '../../../shared/p2p/node.js'
import type { TaskAnswer } from '../../../shared/p2p/task-messages.js'
import { BlobDownload } from '../../../dfdaemon/swarm/blob-download.js'
import { RarestFirstPolicy } from '../../../dfdaemon/swarm/piece-policy.js'
import { SupernodeClient } from '../../../dfdaemon/swarm/supernode-client.js'
import { SwarmNetwork } from '../../../dfdaemon/swarm/swarm-network.js'
import { DaemonMetrics } from '../../../dfdaemon/metrics.js'
import type { PieceSource } from '../../../dfdaemon/swarm/piece-source.js'

const logger = pino({ level: 'silent' })

/** A blob cut into pieces the way the supernode cuts it, with each piece's bytes and hash. */
function pieced (blob: Buffer): { digest: Digest, pieceSize: number, pieces: Array<{ bytes: Buffer, sha256: string }> } {
  const pieceSize = pieceSizeFor(blob.byteLength)
  const pieces = Array.from({ length: pieceCount(blob.byteLength, pieceSize) }, (_, i) => {
    const { start, end } = pieceRange(blob.byteLength, pieceSize, i)
    const bytes = blob.subarray(start, end)
    return { bytes, sha256: sha256Hex(bytes) }
  })
  return { digest: digestOf(blob), pieceSize, pieces }
}

describe('BlobDownload', () => {
  let dir: string
  let store: BlobStore
  let node: DamselflyNode

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-download-'))
    store = new BlobStore({ dir, logger })
    await store.init()
    // a node that is never started: the tracker (no supernode here) and the DHT find nobody
    node = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })
  })

  after(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  /**
   * Run a download of `blob` whose supernode task gives `answers` and whose supernode
   * serves each piece once `served` resolves; no neighbours; an origin that is only
   * recorded when added. Resolves when the download is done.
   */
  async function download (blob: ReturnType<typeof pieced>, answers: () => AsyncGenerator<TaskAnswer>, served: Promise<void>): Promise<{ error?: Error, originAdded: boolean, registry: Registry }> {
    const registry = new Registry()
    const metrics = new DaemonMetrics(registry)
    const supernode = new SupernodeClient({ libp2p: node, logger }, { url: 'http://127.0.0.1:9', infoTimeoutMs: 200 })
    const network = new SwarmNetwork({ libp2p: node, supernode, metrics, logger }, { announceTimeoutMs: 200, lookupTimeoutMs: 200 })
    let originAdded = false
    const d = new BlobDownload({
      store,
      metrics,
      logger,
      network,
      openTask: async () => ({ close: () => {}, [Symbol.asyncIterator]: answers }),
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
      peerSource: () => { throw new Error('no neighbours here') },
      origin: {
        manifest: async () => { throw new Error('the supernode answered') },
        source: (): PieceSource => {
          originAdded = true
          return { id: 'origin', kind: 'origin', maxInFlight: 4, has: () => true, fetch: async () => { throw new Error('origin not reachable in this test') } }
        }
      }
    }, { req: { registry: 'example.test', repository: 'team/app', digest: blob.digest }, policy: new RarestFirstPolicy(), noProgressTimeoutMs: 1000 })
    d.start()
    try {
      await d.done
    } catch {
      // reported through `error`
    }
    network.close()
    return { error: d.error, originAdded, registry }
  }

  it('holding every piece, waits for the supernode\'s done past the no-progress deadline: no origin, no failure', async () => {
    const blob = pieced(Buffer.from('a one-piece blob whose task ends late'))
    // the manifest and the piece's hash at once, `done` only after three no-progress
    // deadlines (a supernode whose own commit is slow, as on a starved host)
    const answers = async function * (): AsyncGenerator<TaskAnswer> {
      yield { type: 'manifest', manifest: { digest: blob.digest.value, size: blob.pieces[0].bytes.byteLength, pieceSize: blob.pieceSize, pieces: [blob.pieces[0].sha256] } }
      await sleep(3200)
      yield { type: 'done' }
    }
    const { error, originAdded, registry } = await download(blob, answers, Promise.resolve())
    assert.equal(error, undefined)
    assert.equal(originAdded, false, 'nothing is missing: no back-to-source')
    assert.match(await registry.getSingleMetricAsString('damselfly_dfdaemon_blob_downloads_total'), /result="success"} 1/)
    assert.ok(await store.getComplete(blob.digest) != null, 'the blob is in the store')
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
      yield { type: 'manifest', manifest: { digest: blob.digest.value, size: bytes.byteLength, pieceSize: blob.pieceSize, pieces: blob.pieces.map(() => null) } }
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
})
