import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Registry } from 'prom-client'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { SwarmNetwork } from '../../../dfdaemon/swarm/swarm-network.js'
import type { SupernodeClient } from '../../../dfdaemon/swarm/supernode-client.js'
import { DaemonMetrics } from '../../../dfdaemon/metrics.js'
import type { DamselflyNode } from '../../../shared/p2p/node.js'
import { digestOf } from '../../../shared/oci/digest.js'
import { UnavailableError } from '../../../shared/errors.js'
import { Bitfield } from '../../../shared/pieces/bitfield.js'
import { until } from '../../helpers/until.js'

const logger = pino({ level: 'silent' })

/** A SwarmNetwork over a node whose DHT only counts provides, and a supernode that is up or down. */
async function network (opts: { busy: () => boolean, trackerUp: boolean }): Promise<{ net: SwarmNetwork, provided: string[] }> {
  const provided: string[] = []
  const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const libp2p = {
    peerId,
    getMultiaddrs: () => [],
    contentRouting: { provide: async (cid: { toString: () => string }) => { provided.push(cid.toString()) } }
  } as unknown as DamselflyNode
  const supernode = {
    peerId: async () => { if (!opts.trackerUp) throw new UnavailableError('supernode unreachable'); return peerId }
  } as unknown as SupernodeClient
  const net = new SwarmNetwork({ libp2p, supernode, metrics: new DaemonMetrics(new Registry()), logger, busy: opts.busy }, { quietPollMs: 5 })
  return { net, provided }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('SwarmNetwork provider records', () => {
  it('wait while downloads run and go out once the host is quiet', async () => {
    let busy = true
    const { net, provided } = await network({ busy: () => busy, trackerUp: true })
    net.provide(digestOf('layer one'))
    net.provide(digestOf('layer two'))
    await sleep(60)
    assert.equal(provided.length, 0, 'nothing published during the pull')
    busy = false
    assert.ok(await until(async () => provided.length === 2, 100, 20), 'both published once quiet')
    net.close()
  })

  it('go out at once when the tracker cannot be reached, downloads or not', async () => {
    const { net, provided } = await network({ busy: () => true, trackerUp: false })
    const digest = digestOf('layer')
    assert.equal(await net.announce([{ digest, bitfield: new Bitfield(4), wantPeers: true }]), undefined)
    net.provide(digest)
    assert.ok(await until(async () => provided.length === 1, 100, 20))
    net.close()
  })

  it('a waiting provide is dropped when the network closes', async () => {
    const { net, provided } = await network({ busy: () => true, trackerUp: true })
    net.provide(digestOf('layer'))
    await sleep(20)
    net.close()
    await sleep(30)
    assert.equal(provided.length, 0)
  })
})
