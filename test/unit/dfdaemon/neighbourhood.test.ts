import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Registry } from 'prom-client'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { Neighbourhood, type DownloadState } from '../../../dfdaemon/swarm/neighbourhood.js'
import { Neighbour } from '../../../dfdaemon/swarm/neighbour.js'
import type { SwarmNetwork } from '../../../dfdaemon/swarm/swarm-network.js'
import type { PartialBlob } from '../../../shared/store/partial-blob.js'
import { DaemonMetrics } from '../../../dfdaemon/metrics.js'
import { Bitfield } from '../../../shared/pieces/bitfield.js'
import { digestOf } from '../../../shared/oci/digest.js'

const logger = pino({ level: 'silent' })

async function peerIds (n: number): Promise<PeerId[]> {
  const ids = await Promise.all(Array.from({ length: n }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
  return ids.sort((a, b) => a.toString() < b.toString() ? -1 : 1)
}

/**
 * A neighbourhood of a three-piece blob on a host whose tracker and DHT know nobody,
 * recording what it asks of the download.
 */
function setup (self: PeerId): { hood: Neighbourhood, registry: Registry, added: string[], removed: string[], setState: (s: DownloadState) => void } {
  const registry = new Registry()
  const added: string[] = []
  const removed: string[] = []
  let state: DownloadState = 'running'
  const network = {
    self,
    announce: async () => undefined,
    findProviders: async () => []
  } as unknown as SwarmNetwork
  const hood = new Neighbourhood({
    network,
    metrics: new DaemonMetrics(registry),
    logger,
    addSource: (n) => { added.push(n.id) },
    removeSource: (id) => { removed.push(id) },
    onHave: () => {},
    state: () => state,
    ticket: () => undefined
  }, { digest: digestOf(Buffer.from('neighbourhood')) })
  const partial = { manifest: { pieces: [null, null, null] }, bitfield: new Bitfield(3) } as unknown as PartialBlob
  hood.start(partial)
  return { hood, registry, added, removed, setState: (s) => { state = s } }
}

function seed (peer: PeerId, pieces = 3, outbound = false): Neighbour {
  const all = new Bitfield(pieces)
  for (let i = 0; i < pieces; i++) all.set(i)
  return new Neighbour(peer, all, undefined, logger, outbound)
}

async function gauge (registry: Registry): Promise<string> {
  return await registry.getSingleMetricAsString('damselfly_dfdaemon_neighbours')
}

describe('Neighbourhood', () => {
  it('keeps the stream the lower peer id opened when two daemons greet each other at once', async () => {
    const [low, high] = await peerIds(2)
    // we are the lower id: both sides keep the stream we opened
    const { hood, registry, added } = setup(low)
    const theirs = seed(high, 3, false)
    const ours = seed(high, 3, true)
    const late = seed(high, 3, false)
    hood.add(theirs)
    hood.add(ours)
    hood.add(late)
    assert.equal(theirs.isClosed, true, 'the stream they opened gives way to ours')
    assert.equal(ours.isClosed, false)
    assert.equal(late.isClosed, true, 'another stream they opened is refused')
    assert.equal(hood.size, 1)
    assert.deepEqual(added, [high.toString(), high.toString()], 'the kept stream replaced the other as the source')
    assert.match(await gauge(registry), /damselfly_dfdaemon_neighbours 1/)
    hood.close()
  })

  it('closes a neighbour that is not of this blob, and every neighbour once the download failed or finished', async () => {
    const [self, a, b, c] = await peerIds(4)
    const { hood, added, setState } = setup(self)
    const other = seed(a, 5)
    hood.add(other)
    assert.equal(other.isClosed, true, 'a bitfield of another piece count')
    setState('failed')
    const afterFailure = seed(b)
    hood.add(afterFailure)
    assert.equal(afterFailure.isClosed, true)
    setState('finished')
    const afterFinish = seed(c)
    hood.add(afterFinish)
    assert.equal(afterFinish.isClosed, true)
    assert.equal(hood.size, 0)
    assert.deepEqual(added, [], 'none became a source')
  })

  it('lets go of the neighbours that hold the whole blob when it finishes, and of all of them when it closes', async () => {
    const [self, a, b] = await peerIds(3)
    const { hood, registry, removed } = setup(self)
    const whole = seed(a)
    const some = new Neighbour(b, new Bitfield(3), undefined, logger, false)
    hood.add(whole)
    hood.add(some)
    assert.match(await gauge(registry), /damselfly_dfdaemon_neighbours 2/)
    hood.finish()
    assert.deepEqual(removed, [a.toString()])
    assert.equal(whole.isClosed, true)
    assert.equal(some.isClosed, false, 'still downloading: it may want our pieces')
    hood.close()
    assert.deepEqual(removed, [a.toString(), b.toString()])
    assert.equal(some.isClosed, true)
    assert.match(await gauge(registry), /damselfly_dfdaemon_neighbours 0/)
  })
})
