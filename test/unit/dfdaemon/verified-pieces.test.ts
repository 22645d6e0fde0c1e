import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { open } from 'node:fs/promises'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { BlobStore } from '../../../shared/store/blob-store.js'
import { DaemonMetrics } from '../../../dfdaemon/metrics.js'
import { VerifiedPieces } from '../../../dfdaemon/swarm/verified-pieces.js'
import { tempStores } from '../../helpers/stores.js'
import { makeBlob, type TestBlob } from '../../helpers/blobs.js'

const logger = pino({ level: 'silent' })
const PIECE = 64 << 10
const FRESH_MS = 40

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('VerifiedPieces', () => {
  const stores = tempStores('verified-pieces')

  async function setup (): Promise<{ store: BlobStore, pieces: VerifiedPieces, metrics: DaemonMetrics, blob: TestBlob }> {
    const store = await stores.open()
    const metrics = new DaemonMetrics(new Registry())
    const pieces = new VerifiedPieces({ store, metrics, logger }, { freshMs: FRESH_MS })
    const blob = makeBlob(3 * PIECE + 10, PIECE)
    const p = await store.openPartial(blob.manifest())
    for (let i = 0; i < blob.count; i++) await p.writePiece(i, blob.piece(i))
    await store.commit(p)
    return { store, pieces, metrics, blob }
  }

  async function rot (store: BlobStore, blob: TestBlob, index: number): Promise<void> {
    const fh = await open(store.layout.completeData(blob.digest), 'r+')
    await fh.write(Buffer.from([blob.piece(index)[7] ^ 0xff]), 0, 1, index * PIECE + 7)
    await fh.close()
  }

  async function corrupt (metrics: DaemonMetrics): Promise<number> {
    return (await metrics.corruptPieces.get()).values[0]?.value ?? 0
  }

  it('refuses a piece that rotted on disk and drops the blob', async () => {
    const { store, pieces, metrics, blob } = await setup()
    await rot(store, blob, 1)
    assert.deepEqual(Buffer.from((await pieces.readPiece(blob.digest, 0))!), blob.piece(0))
    assert.equal(await pieces.readPiece(blob.digest, 1), undefined)
    assert.equal(await corrupt(metrics), 1)
    assert.equal(await store.getComplete(blob.digest), undefined, 'the blob is dropped so it is fetched again')
  })

  it('checks a piece again once it is no longer fresh', async () => {
    const { store, pieces, metrics, blob } = await setup()
    // checked when a download wrote it, or when it was first served
    pieces.vouch(blob.digest, 2)
    assert.deepEqual(Buffer.from((await pieces.readPiece(blob.digest, 1))!), blob.piece(1))
    await sleep(FRESH_MS * 3)
    await rot(store, blob, 2)
    assert.equal(await pieces.readPiece(blob.digest, 2), undefined)
    assert.equal(await corrupt(metrics), 1)
    assert.equal(await store.getComplete(blob.digest), undefined)
  })
})
