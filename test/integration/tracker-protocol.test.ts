import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { encode as encodeVarint } from 'uint8-varint'
import { createNode, type DamselflyNode } from '../../shared/p2p/node.js'
import { FramedStream } from '../../shared/p2p/codec.js'
import { TRACKER_PROTOCOL } from '../../shared/p2p/protocols.js'
import { TrackerAnswer, type TrackerAnnounce, type TrackerReply } from '../../shared/p2p/tracker-messages.js'
import { announce } from '../../shared/p2p/tracker-client.js'
import { createSupernode, type Supernode } from '../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../supernode/config.js'
import { SwarmNetwork } from '../../dfdaemon/swarm/swarm-network.js'
import { SupernodeClient } from '../../dfdaemon/swarm/supernode-client.js'
import { DaemonMetrics } from '../../dfdaemon/metrics.js'
import { Bitfield } from '../../shared/pieces/bitfield.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { Registry } from 'prom-client'

const logger = pino({ level: 'silent' })
const BLOB = `sha256:${'1'.repeat(64)}`
const SPOOFED_BLOB = `sha256:${'2'.repeat(64)}`
const GARBAGE_BLOB = `sha256:${'3'.repeat(64)}`

function addrsOf (node: DamselflyNode): string[] {
  return node.getMultiaddrs().map(ma => ma.toString())
}

function blob (digest: string, fields: Partial<TrackerAnnounce['blobs'][number]> = {}): TrackerAnnounce['blobs'][number] {
  return { digest, pieces: 16, complete: false, wantPeers: true, ...fields }
}

function peersIn (reply: TrackerReply, digest: string): TrackerReply['blobs'][number]['peers'] {
  const entry = reply.blobs.find(b => b.digest === digest)
  assert.ok(entry != null, `reply has ${digest}`)
  return entry.peers
}

function metricValue (text: string, line: string): number | undefined {
  const found = text.split('\n').find(l => l.startsWith(`${line} `))
  return found == null ? undefined : Number(found.slice(line.length + 1))
}

describe('tracker protocol', () => {
  let dir: string | undefined
  let supernode: Supernode | undefined
  const nodes: DamselflyNode[] = []
  let target: Multiaddr

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-tracker-'))
    supernode = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: dir, host: '127.0.0.1', port: 0, p2pPort: 0 }, { logger })
    await supernode.start()
    target = multiaddr(supernode.multiaddrs[0])
    for (let i = 0; i < 3; i++) {
      const node = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
      await node.start()
      nodes.push(node)
    }
  })
  after(async () => {
    for (const node of nodes) await node.stop()
    await supernode?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('hands every daemon the others, with their addrs and progress, never itself', async () => {
    const [a, b, c] = nodes
    const half = Buffer.from([0xff, 0x00]).toString('base64') // 8 of 16 pieces
    const first = await announce(a, target, { addrs: addrsOf(a), blobs: [blob(BLOB, { complete: true })] })
    assert.deepEqual(peersIn(first, BLOB), [])
    assert.equal(first.ttl, 60)
    // b announces its address without /p2p/: the tracker appends b's id
    const bare = addrsOf(b).map(s => multiaddr(s).decapsulateCode(421).toString())
    const second = await announce(b, target, { addrs: bare, blobs: [blob(BLOB, { have: half })] })
    assert.deepEqual(peersIn(second, BLOB), [{ peerId: a.peerId.toString(), addrs: addrsOf(a), complete: true, have: 16 }])
    const third = await announce(c, target, { addrs: addrsOf(c), blobs: [blob(BLOB)] })
    assert.deepEqual(peersIn(third, BLOB), [
      { peerId: a.peerId.toString(), addrs: addrsOf(a), complete: true, have: 16 },
      { peerId: b.peerId.toString(), addrs: addrsOf(b), complete: false, have: 8 }
    ])
    for (const node of nodes) {
      const reply = await announce(node, target, { addrs: addrsOf(node), blobs: [blob(BLOB, { complete: node === a, have: node === b ? half : undefined })] })
      const others = nodes.filter(n => n !== node)
      assert.deepEqual(peersIn(reply, BLOB).map(p => p.peerId).sort(), others.map(n => n.peerId.toString()).sort())
      for (const p of peersIn(reply, BLOB)) assert.deepEqual(p.addrs, addrsOf(others.find(n => n.peerId.toString() === p.peerId) as DamselflyNode))
    }
    // a blob announced without wantPeers gets no entry in the reply
    const quiet = await announce(c, target, { addrs: addrsOf(c), blobs: [blob(BLOB, { wantPeers: false })] })
    assert.deepEqual(quiet.blobs, [])
  })

  it('refuses an announce naming another peer, or with a bad address or digest, and records nothing', async () => {
    const [a, b, c] = nodes
    const spoofed = addrsOf(a)
    await assert.rejects(announce(c, target, { addrs: spoofed, blobs: [blob(SPOOFED_BLOB, { complete: true })] }), { name: 'DeniedError' })
    await assert.rejects(announce(c, target, { addrs: ['not a multiaddr'], blobs: [blob(SPOOFED_BLOB, { complete: true })] }), { name: 'DeniedError' })
    await assert.rejects(announce(c, target, { addrs: addrsOf(c), blobs: [blob(SPOOFED_BLOB), blob('sha256:nothex')] }), { name: 'InvalidDigestError' })
    const reply = await announce(b, target, { addrs: addrsOf(b), blobs: [blob(SPOOFED_BLOB)] })
    assert.deepEqual(peersIn(reply, SPOOFED_BLOB), [])
  })

  it('aborts the stream of a garbage request; the next announce still works', async () => {
    const [a, b] = nodes
    const before = await (supernode as Supernode).metrics.metrics()
    const failedBefore = metricValue(before, 'damselfly_supernode_tracker_announces_total{result="failed"}') ?? 0

    for (const body of [Buffer.from('{"addrs": "nope"}'), Buffer.from('\u0000\u0001 not json')]) {
      const stream = await a.dialProtocol(target, TRACKER_PROTOCOL)
      stream.send(Buffer.concat([encodeVarint(body.byteLength), body]))
      // no answer: the tracker resets the stream
      await assert.rejects(new FramedStream(stream).readMessage(TrackerAnswer), { name: 'StreamResetError' })
    }

    await announce(a, target, { addrs: addrsOf(a), blobs: [blob(GARBAGE_BLOB, { complete: true })] })
    const reply = await announce(b, target, { addrs: addrsOf(b), blobs: [blob(GARBAGE_BLOB)] })
    assert.deepEqual(peersIn(reply, GARBAGE_BLOB).map(p => p.peerId), [a.peerId.toString()])

    const text = await (supernode as Supernode).metrics.metrics()
    assert.equal(metricValue(text, 'damselfly_supernode_tracker_announces_total{result="failed"}'), failedBefore + 2)
    assert.ok((metricValue(text, 'damselfly_supernode_tracker_announces_total{result="ok"}') ?? 0) >= 2)
    assert.ok((metricValue(text, 'damselfly_supernode_tracker_announces_total{result="refused"}') ?? 0) >= 1)
    assert.equal(metricValue(text, 'damselfly_supernode_tracker_blobs'), 3)
    assert.equal(metricValue(text, 'damselfly_supernode_tracker_peers'), 3)
  })

  it('reports a peer that does not run the tracker as unavailable', async () => {
    const [a, b] = nodes
    await assert.rejects(announce(a, b.getMultiaddrs()[0], { addrs: addrsOf(a), blobs: [] }), { name: 'UnavailableError' })
  })

  it('sends a daemon\'s announces made while one is in flight as one, each caller getting its blobs\' peers', async () => {
    const [a, , c] = nodes
    const sn = supernode as Supernode
    const digests = [...'56789a'].map(h => `sha256:${h.repeat(64)}`)
    await announce(a, target, { addrs: addrsOf(a), blobs: digests.map(d => blob(d, { complete: true })) })
    const client = new SupernodeClient({ libp2p: c, logger }, { url: sn.httpAddress as string })
    const net = new SwarmNetwork({ libp2p: c, supernode: client, metrics: new DaemonMetrics(new Registry()), logger })
    const okBefore = metricValue(await sn.metrics.metrics(), 'damselfly_supernode_tracker_announces_total{result="ok"}') ?? 0

    // six downloads announce in the same tick, two of them twice
    const calls = [...digests, digests[2], digests[5]].map(async (d, i) =>
      await net.announce([{ digest: parseDigest(d), bitfield: new Bitfield(16), wantPeers: i !== 7 }]))
    const replies = await Promise.all(calls)
    for (const [i, reply] of replies.entries()) {
      const d = i < 6 ? digests[i] : i === 6 ? digests[2] : digests[5]
      assert.deepEqual(reply?.get(d)?.map(p => p.peerId.toString()), [a.peerId.toString()], `call ${i} gets its blob's holder`)
    }
    const okAfter = metricValue(await sn.metrics.metrics(), 'damselfly_supernode_tracker_announces_total{result="ok"}') ?? 0
    // the first went at once, the seven made while it was in flight together
    assert.equal(okAfter - okBefore, 2)
    net.close()
  })
})
