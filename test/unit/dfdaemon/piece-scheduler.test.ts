import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { Registry } from 'prom-client'
import { BlobStore } from '../../../shared/store/blob-store.js'
import type { PartialBlob } from '../../../shared/store/partial-blob.js'
import { digestOf } from '../../../shared/oci/digest.js'
import { newManifest } from '../../../shared/pieces/piece-manifest.js'
import { DEFER_MS, PieceScheduler, SWARM_SUPERNODE_IN_FLIGHT } from '../../../dfdaemon/swarm/piece-scheduler.js'
import { TooManyRequestsError } from '../../../shared/errors.js'
import { RarestFirstPolicy } from '../../../dfdaemon/swarm/piece-policy.js'
import { DaemonMetrics } from '../../../dfdaemon/metrics.js'
import type { PieceSource, SourceKind } from '../../../dfdaemon/swarm/piece-source.js'

const logger = pino({ level: 'silent' })
const PIECE = 1 << 10
const PIECES = 16

/** A source holding `holds` whose answers never come: what it was asked is what is in flight. */
function pendingSource (id: string, kind: SourceKind, maxInFlight: number, holds: (i: number) => boolean): PieceSource & { asked: number[] } {
  const asked: number[] = []
  return {
    id, kind, maxInFlight, asked,
    has: holds,
    fetch: async (index, signal) => {
      asked.push(index)
      return await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason as Error) }, { once: true }) })
    }
  }
}

describe('PieceScheduler request depth', () => {
  let dir: string
  let store: BlobStore

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-sched-'))
    store = new BlobStore({ dir, logger })
    await store.init()
  })

  after(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  async function scheduler (seed: string, hashed: (i: number) => boolean = () => true): Promise<PieceScheduler> {
    return (await schedulerOver(seed, hashed)).scheduler
  }

  /** A scheduler over a fresh partial blob whose hashes `hashed` are known; the partial too, to learn more of them. */
  async function schedulerOver (seed: string, hashed: (i: number) => boolean): Promise<{ scheduler: PieceScheduler, partial: PartialBlob }> {
    const manifest = newManifest(digestOf(seed), PIECES * PIECE, PIECE)
    manifest.pieces.forEach((_, i) => { if (hashed(i)) manifest.pieces[i] = '0'.repeat(64) })
    const partial = await store.openPartial(manifest)
    const scheduler = new PieceScheduler({
      partial,
      policy: new RarestFirstPolicy(),
      metrics: new DaemonMetrics(new Registry()),
      logger,
      onPiece: () => {},
      onFatal: (err) => { throw err },
      urgent: () => undefined
    })
    return { scheduler, partial }
  }

  it('keeps the configured depth to the supernode while the daemon is alone', async () => {
    const s = await scheduler('alone')
    const supernode = pendingSource('sn', 'supernode', 4, () => true)
    s.addSource(supernode)
    assert.equal(supernode.asked.length, 4)
    s.stop()
  })

  it('asks the supernode for fewer pieces at once once neighbours exist, and each neighbour for its own depth', async () => {
    const s = await scheduler('swarm')
    const peer = pendingSource('peer-1', 'peer', 2, (i) => i % 2 === 0)
    const supernode = pendingSource('sn', 'supernode', 4, () => true)
    s.addSource(peer)
    s.addSource(supernode)
    assert.equal(peer.asked.length, 2)
    assert.equal(supernode.asked.length, SWARM_SUPERNODE_IN_FLIGHT)
    // super-seeding: the supernode is asked only for pieces the neighbour does not hold
    assert.ok(supernode.asked.every(i => i % 2 === 1), `asked the supernode for ${supernode.asked.join(', ')}`)
    // what a stalled download's log line reports
    const state = s.describe()
    assert.deepEqual(state.sources.map(({ id, holds, load }) => ({ id, holds, load })), [
      { id: 'peer-1', holds: PIECES / 2, load: 2 },
      { id: 'sn', holds: PIECES, load: SWARM_SUPERNODE_IN_FLIGHT }
    ])
    assert.equal(state.missing, PIECES)
    assert.equal(state.inFlight.length, 2 + SWARM_SUPERNODE_IN_FLIGHT)
    s.stop()
  })

  it('races no piece while the supernode is still fetching: the last known pieces all in flight is not the endgame', async () => {
    // the supernode has told us the first half's hashes so far; a neighbour holding it takes them all
    const half = PIECES / 2
    const { scheduler: s, partial } = await schedulerOver('keeping-up', (i) => i < half)
    const first = pendingSource('peer-1', 'peer', half, () => true)
    s.addSource(first)
    assert.equal(first.asked.length, half)
    // an idle neighbour holding everything: nothing it could be asked for yet, and no duplicate
    const second = pendingSource('peer-2', 'peer', 2, () => true)
    s.addSource(second)
    assert.deepEqual(second.asked, [], 'no piece asked twice while hashes are still to come')
    // the rest of the hashes: new pieces for the idle neighbour, still no duplicate
    for (let i = half; i < PIECES; i++) partial.setPieceHash(i, '0'.repeat(64))
    s.pump()
    assert.equal(second.asked.length, 2)
    assert.ok(second.asked.every(i => i >= half), `asked ${second.asked.join(', ')}`)
    s.stop()
  })

  it('in endgame, with every hash known and every missing piece in flight, races the remaining pieces on an idle source', async () => {
    const s = await scheduler('endgame')
    const first = pendingSource('peer-1', 'peer', PIECES, () => true)
    s.addSource(first)
    assert.equal(first.asked.length, PIECES)
    const second = pendingSource('peer-2', 'peer', 2, () => true)
    s.addSource(second)
    assert.equal(second.asked.length, 2, 'the idle neighbour races two of the pieces in flight')
    s.stop()
  })

  it('in endgame, races a piece the origin is fetching on others only once its hash is known', async () => {
    // the supernode has told us the hash of the last piece only; the origin (checked by the
    // whole-blob digest) takes every piece, and a neighbour holding everything joins
    const s = await scheduler('endgame-unhashed', (i) => i === PIECES - 1)
    const origin = pendingSource('origin', 'origin', PIECES, () => true)
    s.addSource(origin)
    assert.deepEqual([...origin.asked].sort((a, b) => a - b), [...Array(PIECES).keys()])
    const peer = pendingSource('peer-1', 'peer', 2, () => true)
    s.addSource(peer)
    // it races the piece it can be checked on; asking for one without a hash could only fail
    assert.deepEqual(peer.asked, [PIECES - 1])
    s.stop()
  })

  it('asks the supernode again for every piece it deferred, also when the deferrals end at different times', async () => {
    // two pieces: the supernode refuses both ("ask your neighbours"), the second 50 ms after
    // the first, and holds every later request open; no neighbour, nothing else wakes the scheduler
    const s = await scheduler('deferred', (i) => i < 2)
    const asked: number[] = []
    let wake: () => void = () => {}
    const supernode: PieceSource = {
      id: 'sn',
      kind: 'supernode',
      maxInFlight: 4,
      has: (i) => i < 2,
      fetch: async (index, signal) => {
        asked.push(index)
        wake()
        if (asked.filter(i => i === index).length === 1) {
          await new Promise(resolve => setTimeout(resolve, index * 50))
          throw new TooManyRequestsError('ask your neighbours')
        }
        return await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason as Error) }, { once: true }) })
      }
    }
    s.addSource(supernode)
    const deadline = Date.now() + 10 * DEFER_MS
    while (asked.length < 4 && Date.now() < deadline) {
      await new Promise<void>(resolve => { wake = resolve; setTimeout(resolve, DEFER_MS) })
    }
    s.stop()
    assert.deepEqual([...asked].sort(), [0, 0, 1, 1], `asked for ${asked.join(', ')}`)
  })
})
