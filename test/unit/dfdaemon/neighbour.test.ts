import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { streamPair } from '@libp2p/utils'
import type { PeerId, Stream } from '@libp2p/interface'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pino } from 'pino'
import { FramedStream } from '../../../shared/p2p/codec.js'
import { Bitfield } from '../../../shared/pieces/bitfield.js'
import { Neighbour } from '../../../dfdaemon/swarm/neighbour.js'

const logger = pino({ level: 'silent' })

describe('Neighbour', () => {
  let peers: PeerId[]
  const raw: Stream[] = []
  // in-memory streams hold no handle: keep the loop alive while a read waits
  let keepAlive: NodeJS.Timeout
  before(async () => {
    keepAlive = setInterval(() => {}, 60_000)
    peers = await Promise.all([0, 1].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
  })
  after(() => {
    clearInterval(keepAlive)
    for (const s of raw) s.abort(new Error('test over'))
  })

  /**
   * Two neighbours over an in-memory stream pair: `ours` sends, `theirs` listens.
   * `sends` counts the writes on our side; `hear(n)` waits until n haves arrived.
   */
  async function pair (length: number, told?: Bitfield): Promise<{ ours: Neighbour, theirs: Neighbour, sends: number[], heard: number[], hear: (n: number) => Promise<void> }> {
    const [rawA, rawB] = await streamPair()
    raw.push(rawA, rawB)
    const sends: number[] = []
    const send = rawA.send.bind(rawA)
    rawA.send = (data) => { sends.push(data.byteLength); return send(data) }
    const ours = new Neighbour(peers[1], new Bitfield(length), new FramedStream(rawA), logger, true, told)
    const theirs = new Neighbour(peers[0], new Bitfield(length), new FramedStream(rawB), logger, false)
    const heard: number[] = []
    let wake: () => void = () => {}
    theirs.start({ onHave: (i) => { heard.push(i); wake() }, onClose: () => {} })
    const hear = async (n: number): Promise<void> => {
      while (heard.length < n) await new Promise<void>(resolve => { wake = resolve })
    }
    return { ours, theirs, sends, heard, hear }
  }

  it('sends the haves of pieces completed together in one write, and the other side learns each', async () => {
    const { ours, theirs, sends, heard, hear } = await pair(16)

    // three pieces complete in the same turn: one write carries all three
    for (const i of [3, 7, 11]) ours.sendHave(i)
    await hear(3)
    assert.deepEqual(heard, [3, 7, 11])
    assert.equal(sends.length, 1)
    assert.deepEqual([3, 7, 11].map(i => theirs.bitfield.has(i)), [true, true, true])

    // a piece completing later goes out on its own, at once
    ours.sendHave(5)
    await hear(4)
    assert.equal(sends.length, 2)
    assert.equal(theirs.bitfield.count, 4)

    // a have the other side already knew of is not reported again
    ours.sendHave(5)
    ours.sendHave(6)
    await hear(5)
    assert.deepEqual(heard, [3, 7, 11, 5, 6])
    ours.close()
    theirs.close()
  })

  it('catches a neighbour up on the pieces its greeting did not mention, in one write', async () => {
    const told = new Bitfield(8)
    for (const i of [0, 1]) told.set(i)
    const held = new Bitfield(8)
    for (const i of [0, 1, 2, 5]) held.set(i)
    const { ours, theirs, sends, heard, hear } = await pair(8, told)

    ours.catchUp(held)
    await hear(2)
    assert.deepEqual(heard, [2, 5], 'only the pieces the greeting left out')
    assert.equal(sends.length, 1)

    // nothing new since: nothing sent
    ours.catchUp(told)
    ours.sendHave(7)
    await hear(3)
    assert.deepEqual(heard, [2, 5, 7])
    assert.equal(sends.length, 2)
    ours.close()
    theirs.close()
  })
})
