import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { digestOf } from '../../../shared/oci/digest.js'
import { SuperSeedPolicy } from '../../../supernode/p2p/super-seed.js'

const blob = digestOf('a layer the whole cluster wants')
const other = digestOf('another layer')

function fakeClock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_700_000_000_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

describe('SuperSeedPolicy', () => {
  const peers: PeerId[] = []

  before(async () => {
    for (let i = 0; i < 5; i++) peers.push(peerIdFromPrivateKey(await generateKeyPair('Ed25519')))
  })

  it('admits the first request for a piece and refuses a second peer within the window', () => {
    const clock = fakeClock()
    const policy = new SuperSeedPolicy({ windowMs: 10_000, graceMs: 2_000, now: clock.now })
    const [a, b, c] = peers
    assert.equal(policy.admit(blob, 0, a), true)
    assert.equal(policy.admit(blob, 0, b), false)
    clock.advance(1_000)
    assert.equal(policy.admit(blob, 0, c), false)
    assert.equal(policy.admit(blob, 0, b), false, 'still within its grace period')
  })

  it('admits a refused peer that asks again after the grace period, and only that one', () => {
    const clock = fakeClock()
    const policy = new SuperSeedPolicy({ windowMs: 10_000, graceMs: 2_000, now: clock.now })
    const [a, b, c] = peers
    assert.equal(policy.admit(blob, 3, a), true)
    assert.equal(policy.admit(blob, 3, b), false)
    clock.advance(1_999)
    assert.equal(policy.admit(blob, 3, b), false, 'grace runs from the first refusal, not the last')
    assert.equal(policy.admit(blob, 3, c), false)
    clock.advance(1)
    assert.equal(policy.admit(blob, 3, b), true, 'refused graceMs ago: nobody near it has the piece')
    assert.equal(policy.admit(blob, 3, b), false, 'served: its grace is spent')
    assert.equal(policy.admit(blob, 3, peers[3]), false, 'a peer never refused before gets no grace')
  })

  it('serves a blob of one piece to every asker, and still trades the pieces of a bigger one', () => {
    const clock = fakeClock()
    const policy = new SuperSeedPolicy({ windowMs: 10_000, graceMs: 2_000, now: clock.now })
    for (const p of peers) assert.equal(policy.admit(other, 0, p, 1), true, 'an image config: nothing to trade')
    assert.equal(policy.admit(blob, 0, peers[0], 2), true)
    assert.equal(policy.admit(blob, 0, peers[1], 2), false, 'two pieces: the second asker trades')
  })

  it('keeps pieces and blobs apart', () => {
    const clock = fakeClock()
    const policy = new SuperSeedPolicy({ windowMs: 10_000, graceMs: 2_000, now: clock.now })
    const [a, b] = peers
    assert.equal(policy.admit(blob, 0, a), true)
    assert.equal(policy.admit(blob, 1, b), true, 'a different piece')
    assert.equal(policy.admit(other, 0, b), true, 'the same index of a different blob')
    assert.equal(policy.admit(blob, 1, a), false)
    assert.equal(policy.admit(other, 0, a), false)
  })

  it('admits a new peer once the window has passed', () => {
    const clock = fakeClock()
    const policy = new SuperSeedPolicy({ windowMs: 10_000, graceMs: 60_000, now: clock.now })
    const [a, b, c] = peers
    assert.equal(policy.admit(blob, 0, a), true)
    clock.advance(9_999)
    assert.equal(policy.admit(blob, 0, b), false)
    clock.advance(1)
    assert.equal(policy.admit(blob, 0, c), true, 'the copy sent windowMs ago no longer counts')
    assert.equal(policy.admit(blob, 0, b), false, 'and the new copy fills the window again')
  })

  it('sends `copies` copies per window', () => {
    const clock = fakeClock()
    const policy = new SuperSeedPolicy({ copies: 3, windowMs: 10_000, graceMs: 60_000, now: clock.now })
    const admitted = peers.map(p => policy.admit(blob, 7, p))
    assert.deepEqual(admitted, [true, true, true, false, false])
    clock.advance(5_000)
    assert.equal(policy.admit(blob, 7, peers[3]), false)
    clock.advance(5_000)
    // all three copies were sent at the same moment: they leave the window together
    assert.deepEqual([peers[3], peers[4], peers[0], peers[1]].map(p => policy.admit(blob, 7, p)), [true, true, true, false])
  })

  it('counts only copies held by daemons still present: hosts pulling one after another each get the piece at once', () => {
    const clock = fakeClock()
    const present = new Set<string>()
    const policy = new SuperSeedPolicy({ windowMs: 10_000, graceMs: 2_000, now: clock.now, isPresent: (p) => present.has(p) })
    const [a, b, c] = peers
    present.add(a.toString())
    assert.equal(policy.admit(blob, 0, a), true)
    present.add(b.toString())
    assert.equal(policy.admit(blob, 0, b), false, 'a holds the piece and is still here: b trades with it')
    present.delete(a.toString())
    clock.advance(100)
    assert.equal(policy.admit(blob, 0, b), true, 'a has left: nobody else holds the piece')
    present.add(c.toString())
    assert.equal(policy.admit(blob, 0, c), false, 'b holds it now')
  })

  it('does not count a daemon\'s own earlier copy against it', () => {
    const clock = fakeClock()
    const policy = new SuperSeedPolicy({ windowMs: 10_000, graceMs: 2_000, now: clock.now })
    const [a] = peers
    assert.equal(policy.admit(blob, 0, a), true)
    assert.equal(policy.admit(blob, 0, a), true, 'asking again (a restart, a dropped piece): its own copy helps nobody')
  })

  it('uses its defaults: one copy per 15 s window, 2 s grace', () => {
    const clock = fakeClock()
    const policy = new SuperSeedPolicy({ now: clock.now })
    const [a, b, c] = peers
    assert.equal(policy.admit(blob, 0, a), true)
    assert.equal(policy.admit(blob, 0, b), false)
    clock.advance(2_000)
    assert.equal(policy.admit(blob, 0, b), true)
    clock.advance(12_999)
    assert.equal(policy.admit(blob, 0, c), false, 'b\'s copy is 13 s old')
    clock.advance(2_001)
    assert.equal(policy.admit(blob, 0, peers[3]), true, 'both copies older than 15 s')
  })
})
