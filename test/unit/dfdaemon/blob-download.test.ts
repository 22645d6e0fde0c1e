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
import { digestOf, sha256Hex } from '../../../shared/oci/digest.js'
import { pieceSizeFor } from '../../../shared/pieces/piece-math.js'
import { createNode, type DamselflyNode } from '../../../shared/p2p/node.js'
import type { TaskAnswer } from '../../../shared/p2p/task-messages.js'
import { BlobDownload } from '../../../dfdaemon/swarm/blob-download.js'
import { RarestFirstPolicy } from '../../../dfdaemon/swarm/piece-policy.js'
import { SupernodeClient } from '../../../dfdaemon/swarm/supernode-client.js'
import { SwarmNetwork } from '../../../dfdaemon/swarm/swarm-network.js'
import { DaemonMetrics } from '../../../dfdaemon/metrics.js'
import type { PieceSource } from '../../../dfdaemon/swarm/piece-source.js'

const logger = pino({ level: 'silent' })

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

  it('holding every piece, waits for the supernode\'s done past the no-progress deadline: no origin, no failure', async () => {
    const blob = Buffer.from('a one-piece blob whose task ends late')
    const digest = digestOf(blob)
    const sha = sha256Hex(blob)
    const registry = new Registry()
    const metrics = new DaemonMetrics(registry)
    const supernode = new SupernodeClient({ libp2p: node, logger }, { url: 'http://127.0.0.1:9', infoTimeoutMs: 200 })
    const network = new SwarmNetwork({ libp2p: node, supernode, metrics, logger }, { announceTimeoutMs: 200, lookupTimeoutMs: 200 })
    // the supernode's task: the manifest and the piece's hash at once, `done` only after
    // three no-progress deadlines (a supernode whose own commit is slow, as on a starved host)
    const answers = async function * (): AsyncGenerator<TaskAnswer> {
      yield { type: 'manifest', manifest: { digest: digest.value, size: blob.byteLength, pieceSize: pieceSizeFor(blob.byteLength), pieces: [sha] } }
      await sleep(3200)
      yield { type: 'done' }
    }
    let originAdded = false
    const download = new BlobDownload({
      store,
      metrics,
      logger,
      network,
      openTask: async () => ({ close: () => {}, [Symbol.asyncIterator]: answers }),
      supernodeSource: (_manifest, has): PieceSource => ({ id: 'supernode', kind: 'supernode', maxInFlight: 4, has, fetch: async () => ({ bytes: blob, sha256: sha }) }),
      peerSource: () => { throw new Error('no neighbours here') },
      origin: {
        manifest: async () => { throw new Error('the supernode answered') },
        source: (): PieceSource => {
          originAdded = true
          return { id: 'origin', kind: 'origin', maxInFlight: 4, has: () => true, fetch: async () => { throw new Error('origin not reachable in this test') } }
        }
      }
    }, { req: { registry: 'example.test', repository: 'team/app', digest }, policy: new RarestFirstPolicy(), noProgressTimeoutMs: 1000 })
    download.start()
    await download.done
    assert.equal(download.error, undefined)
    assert.equal(originAdded, false, 'nothing is missing: no back-to-source')
    assert.match(await registry.getSingleMetricAsString('damselfly_dfdaemon_blob_downloads_total'), /result="success"} 1/)
    assert.ok(await store.getComplete(digest) != null, 'the blob is in the store')
    network.close()
  })

  it('does not go back to the origin while the supernode is still fetching the blob and advancing', async () => {
    // four pieces; the supernode learns them one by one from the origin, a piece's hash every
    // 0.6 s, and no piece reaches us until its fetch is done (a swarm slower than the deadline)
    const pieceSize = pieceSizeFor(1)
    const blob = Buffer.alloc(4 * pieceSize - 100, 7)
    for (let i = 0; i < blob.length; i += 4096) blob[i] = i & 0xff
    const digest = digestOf(blob)
    const hashes = [0, 1, 2, 3].map(i => sha256Hex(blob.subarray(i * pieceSize, Math.min(blob.length, (i + 1) * pieceSize))))
    const registry = new Registry()
    const metrics = new DaemonMetrics(registry)
    const supernode = new SupernodeClient({ libp2p: node, logger }, { url: 'http://127.0.0.1:9', infoTimeoutMs: 200 })
    const network = new SwarmNetwork({ libp2p: node, supernode, metrics, logger }, { announceTimeoutMs: 200, lookupTimeoutMs: 200 })
    let fetchedWhole!: () => void
    const whole = new Promise<void>(resolve => { fetchedWhole = resolve })
    const answers = async function * (): AsyncGenerator<TaskAnswer> {
      yield { type: 'manifest', manifest: { digest: digest.value, size: blob.byteLength, pieceSize, pieces: [null, null, null, null] } }
      for (let i = 0; i < 4; i++) {
        await sleep(600)
        yield { type: 'piece', index: i, sha256: hashes[i] }
      }
      fetchedWhole()
      yield { type: 'done' }
    }
    let originAdded = false
    const download = new BlobDownload({
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
          await whole
          return { bytes: blob.subarray(index * pieceSize, Math.min(blob.length, (index + 1) * pieceSize)), sha256: hashes[index] }
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
    }, { req: { registry: 'example.test', repository: 'team/app', digest }, policy: new RarestFirstPolicy(), noProgressTimeoutMs: 1000 })
    download.start()
    await download.done
    assert.equal(download.error, undefined)
    assert.equal(originAdded, false, 'the supernode kept advancing: no back-to-source')
    assert.ok(await store.getComplete(digest) != null, 'the blob is in the store')
    network.close()
  })
})
