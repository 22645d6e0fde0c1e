import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TrackerState, type TrackerStateInit } from '../../../supernode/tracker/tracker-state.js'
import { MAX_PEERS_PER_BLOB } from '../../../shared/p2p/tracker-messages.js'
import { Bitfield } from '../../../shared/pieces/bitfield.js'
import { seededRandom } from '../../helpers/prng.js'

const BLOB = `sha256:${'a'.repeat(64)}`
const OTHER = `sha256:${'b'.repeat(64)}`

function fakeClock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: ms => { t += ms } }
}

function addr (id: string): string[] {
  return [`/ip4/127.0.0.1/tcp/4001/p2p/${id}`]
}

function state (init: TrackerStateInit = {}): TrackerState {
  return new TrackerState({ random: seededRandom(1), ...init })
}

function ids (peers: Array<{ peerId: string }>): string[] {
  return peers.map(p => p.peerId)
}

describe('TrackerState', () => {
  it('hands out completed peers first, then the most advanced, with their addrs and progress', () => {
    const s = state()
    s.announce('done-1', addr('done-1'), { digest: BLOB, pieces: 80, complete: true })
    s.announce('low', addr('low'), { digest: BLOB, pieces: 80, have: 10, complete: false })
    s.announce('high-1', addr('high-1'), { digest: BLOB, pieces: 80, have: 70, complete: false })
    s.announce('none', addr('none'), { digest: BLOB, pieces: 80, complete: false })
    s.announce('done-2', addr('done-2'), { digest: BLOB, pieces: 80, complete: true })
    s.announce('high-2', addr('high-2'), { digest: BLOB, pieces: 80, have: 75, complete: false })
    const peers = s.peersFor(BLOB, 'asker')
    assert.deepEqual(new Set(ids(peers.slice(0, 2))), new Set(['done-1', 'done-2']))
    assert.deepEqual(new Set(ids(peers.slice(2, 4))), new Set(['high-1', 'high-2']))
    assert.deepEqual(ids(peers.slice(4)), ['low', 'none'])
    assert.deepEqual(peers.find(p => p.peerId === 'done-1'), { peerId: 'done-1', addrs: addr('done-1'), complete: true, have: 80 })
    assert.deepEqual(peers.find(p => p.peerId === 'low'), { peerId: 'low', addrs: addr('low'), complete: false, have: 10 })
    assert.deepEqual(s.peersFor(OTHER), [])
  })

  it('counts a bitfield, clamps a count to the blob, and treats complete as every piece', () => {
    const s = state()
    const bits = new Bitfield(20)
    for (const i of [0, 3, 7, 19]) bits.set(i)
    s.announce('bits', [], { digest: BLOB, pieces: 20, have: bits, complete: false })
    s.announce('over', [], { digest: BLOB, pieces: 20, have: 99, complete: false })
    s.announce('done', [], { digest: BLOB, pieces: 20, have: 3, complete: true })
    const have = Object.fromEntries(s.peersFor(BLOB).map(p => [p.peerId, p.have]))
    assert.deepEqual(have, { bits: 4, over: 20, done: 20 })
  })

  it('randomises the order among equally good peers', () => {
    const orderWith = (seed: number): string[] => {
      const s = state({ random: seededRandom(seed) })
      for (let i = 0; i < 10; i++) s.announce(`p${i}`, addr(`p${i}`), { digest: BLOB, pieces: 8, complete: true })
      return ids(s.peersFor(BLOB))
    }
    const a = orderWith(1)
    const b = orderWith(2)
    assert.notDeepEqual(a, b)
    assert.deepEqual([...a].sort(), [...b].sort())

    const s = state({ random: seededRandom(7) })
    for (let i = 0; i < 10; i++) s.announce(`p${i}`, addr(`p${i}`), { digest: BLOB, pieces: 8, complete: true })
    const firsts = new Map<string, number>()
    for (let i = 0; i < 500; i++) {
      const first = s.peersFor(BLOB, undefined, 3)[0].peerId
      firsts.set(first, (firsts.get(first) ?? 0) + 1)
    }
    assert.equal(firsts.size, 10, 'every peer is handed out first sometimes')
  })

  it('samples uniformly from a group larger than the limit', () => {
    const s = state({ random: seededRandom(3) })
    for (let i = 0; i < 40; i++) s.announce(`p${i}`, [], { digest: BLOB, pieces: 8, complete: true })
    const seen = new Set<string>()
    for (let i = 0; i < 100; i++) for (const p of s.peersFor(BLOB, undefined, 5)) seen.add(p.peerId)
    assert.equal(seen.size, 40)
  })

  it('bounds the list: default 20, the asked limit, never above MAX_PEERS_PER_BLOB', () => {
    const s = state()
    for (let i = 0; i < MAX_PEERS_PER_BLOB + 30; i++) s.announce(`p${i}`, [], { digest: BLOB, pieces: 4, have: i % 5, complete: false })
    assert.equal(s.peersFor(BLOB).length, 20)
    assert.equal(s.peersFor(BLOB, undefined, 5).length, 5)
    assert.equal(s.peersFor(BLOB, undefined, 0).length, 0)
    const all = s.peersFor(BLOB, undefined, 10_000)
    assert.equal(all.length, MAX_PEERS_PER_BLOB)
    assert.equal(new Set(ids(all)).size, MAX_PEERS_PER_BLOB, 'no peer twice')
  })

  it('never hands a peer itself', () => {
    const s = state()
    for (const id of ['a', 'b', 'c']) s.announce(id, addr(id), { digest: BLOB, pieces: 1, complete: true })
    for (let i = 0; i < 20; i++) assert.deepEqual(ids(s.peersFor(BLOB, 'b')).sort(), ['a', 'c'])
    const lone = state()
    lone.announce('a', addr('a'), { digest: BLOB, pieces: 1, complete: true })
    assert.deepEqual(lone.peersFor(BLOB, 'a'), [])
  })

  it('forgets an announce when its TTL passes, and a re-announce refreshes it', () => {
    const clock = fakeClock()
    const s = state({ now: clock.now, ttlMs: 1000 })
    s.announce('a', addr('a'), { digest: BLOB, pieces: 4, have: 1, complete: false })
    clock.advance(500)
    s.announce('b', addr('b'), { digest: BLOB, pieces: 4, have: 2, complete: false })
    clock.advance(400) // a at 900 ms, b at 400 ms
    s.announce('a', ['/ip4/127.0.0.2/tcp/1/p2p/a'], { digest: BLOB, pieces: 4, complete: true })
    clock.advance(300) // a refreshed 300 ms ago, b 700 ms ago; a's first announce would have expired
    assert.deepEqual(ids(s.peersFor(BLOB)), ['a', 'b'])
    assert.deepEqual(s.peersFor(BLOB)[0], { peerId: 'a', addrs: ['/ip4/127.0.0.2/tcp/1/p2p/a'], complete: true, have: 4 })
    clock.advance(300) // b exactly at its TTL
    assert.deepEqual(ids(s.peersFor(BLOB)), ['a'])
    assert.deepEqual(s.stats(), { blobs: 1, peers: 1, entries: 1 })
    clock.advance(700)
    assert.deepEqual(s.peersFor(BLOB), [])
    assert.deepEqual(s.stats(), { blobs: 0, peers: 0, entries: 0 })
  })

  it('expire() drops only stale entries and says how many', () => {
    const clock = fakeClock()
    const s = state({ now: clock.now, ttlMs: 1000 })
    s.announce('a', [], { digest: BLOB, pieces: 1, complete: true })
    s.announce('a', [], { digest: OTHER, pieces: 1, complete: true })
    clock.advance(600)
    s.announce('b', [], { digest: BLOB, pieces: 1, complete: true })
    assert.equal(s.expire(), 0)
    clock.advance(500)
    assert.equal(s.expire(), 2)
    assert.deepEqual(s.stats(), { blobs: 1, peers: 1, entries: 1 })
  })

  it('removePeer forgets a peer on every blob', () => {
    const s = state()
    s.announce('a', addr('a'), { digest: BLOB, pieces: 1, complete: true })
    s.announce('a', addr('a'), { digest: OTHER, pieces: 1, complete: true })
    s.announce('b', addr('b'), { digest: BLOB, pieces: 1, complete: true })
    assert.equal(s.removePeer('a'), true)
    assert.equal(s.removePeer('a'), false)
    assert.deepEqual(ids(s.peersFor(BLOB)), ['b'])
    assert.deepEqual(s.peersFor(OTHER), [])
    assert.deepEqual(s.stats(), { blobs: 1, peers: 1, entries: 1 })
  })

  it('bounds memory: the least recently announced entries are evicted first', () => {
    const s = state({ maxEntries: 10 })
    const digest = (i: number): string => `sha256:${i.toString(16).padStart(64, '0')}`
    for (let i = 0; i < 10; i++) s.announce(`p${i}`, [], { digest: digest(i), pieces: 1, complete: true })
    s.announce('p0', [], { digest: digest(0), pieces: 1, complete: true }) // refreshed: now the newest
    for (let i = 10; i < 15; i++) s.announce(`p${i}`, [], { digest: digest(i), pieces: 1, complete: true })
    assert.deepEqual(s.stats(), { blobs: 10, peers: 10, entries: 10 })
    assert.equal(s.peersFor(digest(0)).length, 1, 'refreshed entry kept')
    for (let i = 1; i <= 5; i++) assert.equal(s.peersFor(digest(i)).length, 0, `p${i} evicted`)
    for (let i = 6; i < 15; i++) assert.equal(s.peersFor(digest(i)).length, 1)
  })

  it('bounds peers per blob and blobs per peer', () => {
    const s = state({ maxPeersPerBlob: 3, maxBlobsPerPeer: 2 })
    for (let i = 0; i < 5; i++) s.announce(`p${i}`, [], { digest: BLOB, pieces: 1, complete: true })
    assert.deepEqual(ids(s.peersFor(BLOB)).sort(), ['p2', 'p3', 'p4'])
    s.announce('q', [], { digest: OTHER, pieces: 1, complete: true })
    s.announce('q', [], { digest: `sha256:${'c'.repeat(64)}`, pieces: 1, complete: true })
    s.announce('q', [], { digest: `sha256:${'d'.repeat(64)}`, pieces: 1, complete: true })
    assert.deepEqual(s.peersFor(OTHER), [])
    assert.deepEqual(s.stats(), { blobs: 3, peers: 4, entries: 5 })
  })

  it('rejects nonsense limits at construction', () => {
    assert.throws(() => new TrackerState({ ttlMs: 0 }), { name: 'RangeError' })
    assert.throws(() => new TrackerState({ maxEntries: -1 }), { name: 'RangeError' })
  })
})
