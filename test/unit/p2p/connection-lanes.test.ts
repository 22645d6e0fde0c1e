import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { createNode, type DamselflyNode } from '../../../shared/p2p/node.js'
import { PieceServer, type FetchPieceOptions } from '../../../shared/p2p/piece-protocol.js'
import { PieceClient } from '../../../shared/p2p/piece-client.js'
import { ConnectionLanes } from '../../../shared/p2p/connection-lanes.js'
import { PIECE_PROTOCOL } from '../../../shared/p2p/protocols.js'
import { digestOf, sha256Hex } from '../../../shared/oci/digest.js'
import { pieceSha256Hex } from '../../../shared/pieces/piece-bytes.js'

const logger = pino({ level: 'silent' })
/** A protocol that stands for the messages (swarm, task, tracker): its streams are held open. */
const MESSAGES = '/damselfly-test/messages/1.0.0'

/** A node as a daemon runs it for this: lanes, a piece server told of them, a piece client using them. */
interface Host {
  node: DamselflyNode
  lanes: ConnectionLanes
  server: PieceServer
  client: PieceClient
  held: Stream[]
}

async function host (announce?: string[]): Promise<Host> {
  const node = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, announce })
  await node.start()
  const held: Stream[] = []
  await node.handle(MESSAGES, (stream) => { held.push(stream) })
  const lanes = new ConnectionLanes({ libp2p: node, logger })
  const bytes = piece.bytes
  const server = new PieceServer({ libp2p: node, logger, lanes, source: { readPiece: async () => bytes } })
  await server.start()
  return { node, lanes, server, client: new PieceClient(node, { lanes }), held }
}

async function stop (...hosts: Host[]): Promise<void> {
  for (const h of hosts) {
    h.client.close()
    for (const s of h.held) s.abort(new Error('test over'))
    await h.server.stop()
    await h.node.stop()
    h.lanes.stop()
  }
}

const piece = (() => {
  const bytes = randomBytes(300_000)
  const opts: FetchPieceOptions = { digest: digestOf('a blob on its lanes'), index: 0, sha256: sha256Hex(bytes), length: bytes.byteLength }
  return { bytes, opts }
})()

/** The open connection of `node` to `peer` that carries `stream`. */
function connectionOf (node: DamselflyNode, peer: PeerId, stream: Stream): Connection {
  const conn = node.getConnections(peer).find(c => c.streams.includes(stream))
  assert.ok(conn != null, 'the stream is on an open connection to the peer')
  return conn
}

/** For each open connection of `node` to `peer`, the protocols of its streams. */
function protocolsByConnection (node: DamselflyNode, peer: PeerId): string[][] {
  return node.getConnections(peer).filter(c => c.status === 'open').map(c => [...new Set(c.streams.map(s => s.protocol ?? '?'))].filter(p => p === PIECE_PROTOCOL || p === MESSAGES))
}

describe('connection lanes: piece bytes and messages on separate connections', () => {
  let a: Host
  let b: Host

  before(async () => {
    a = await host()
    b = await host()
    // the first contact, as a daemon makes it (a greeting, a task): one shared connection
    await a.node.dial(b.node.getMultiaddrs())
  })

  after(async () => { await stop(a, b) })

  it('sends each side\'s pieces on a connection it dialled for them, and its messages on another, both ways', async () => {
    const first = a.node.getConnections(b.node.peerId)
    assert.equal(first.length, 1)
    assert.equal(pieceSha256Hex(await a.client.fetch(b.node.peerId, piece.opts)), piece.opts.sha256)
    assert.equal(pieceSha256Hex(await b.client.fetch(a.node.peerId, piece.opts)), piece.opts.sha256)
    const fromA = await a.lanes.dialProtocol(b.node.peerId, MESSAGES)
    const fromB = await b.lanes.dialProtocol(a.node.peerId, MESSAGES)
    // each side's messages on the first connection, whoever dialled it
    assert.equal(connectionOf(a.node, b.node.peerId, fromA).id, first[0].id)
    assert.ok(!b.lanes.isPieceConnection(connectionOf(b.node, a.node.peerId, fromB)), 'b\'s messages keep off both piece connections')
    for (const [node, peer] of [[a.node, b.node.peerId], [b.node, a.node.peerId]] as const) {
      const lanes = protocolsByConnection(node, peer)
      assert.equal(lanes.length, 3, 'the first connection and one for each side\'s pieces')
      assert.ok(lanes.every(protocols => protocols.length <= 1), `no connection carries both pieces and messages: ${JSON.stringify(lanes)}`)
      assert.equal(lanes.filter(p => p[0] === PIECE_PROTOCOL).length, 2)
    }
  })

  it('reuses its piece connection for the next stream, and dials a new one once it has closed', async () => {
    const pieceConns = (): Connection[] => a.node.getConnections(b.node.peerId).filter(c => c.direction === 'outbound' && a.lanes.isPieceConnection(c))
    const [own] = pieceConns()
    assert.ok(own != null)
    // two at once: the kept stream, and a new one on the same connection
    await Promise.all([a.client.fetch(b.node.peerId, piece.opts), a.client.fetch(b.node.peerId, piece.opts)])
    assert.deepEqual(pieceConns().map(c => c.id), [own.id])
    await own.close()
    assert.equal(pieceSha256Hex(await a.client.fetch(b.node.peerId, piece.opts)), piece.opts.sha256)
    const now = pieceConns()
    assert.equal(now.length, 1)
    assert.notEqual(now[0].id, own.id, 'a fresh piece connection')
    const msg = await a.lanes.dialProtocol(b.node.peerId, MESSAGES)
    assert.ok(!a.lanes.isPieceConnection(connectionOf(a.node, b.node.peerId, msg)), 'messages still keep off it')
  })
})

describe('connection lanes: the first contact a piece stream, a peer that cannot be dialled', () => {
  it('gives messages a connection of their own when every connection to the peer carries pieces', async () => {
    const a = await host()
    const b = await host()
    try {
      await a.node.peerStore.merge(b.node.peerId, { multiaddrs: b.node.getMultiaddrs() })
      assert.equal(pieceSha256Hex(await a.client.fetch(b.node.peerId, piece.opts)), piece.opts.sha256)
      const conns = a.node.getConnections(b.node.peerId)
      assert.equal(conns.length, 1)
      assert.ok(a.lanes.isPieceConnection(conns[0]))
      const msg = await a.lanes.dialProtocol(b.node.peerId, MESSAGES)
      const conn = connectionOf(a.node, b.node.peerId, msg)
      assert.notEqual(conn.id, conns[0].id)
      assert.ok(!a.lanes.isPieceConnection(conn))
    } finally {
      await stop(a, b)
    }
  })

  it('fetches from a peer that reached us but cannot be dialled on the connection there is', async () => {
    const a = await host()
    // it tells its peers an address where nothing listens (a host behind NAT, say)
    const c = await host(['/ip4/127.0.0.1/tcp/9'])
    try {
      await c.node.dial(a.node.getMultiaddrs())
      // until a has the connection and, by identify, the address c tells
      for (let i = 0; i < 100 && (a.node.getConnections(c.node.peerId).length === 0 || (await a.node.peerStore.get(c.node.peerId).catch(() => undefined))?.addresses.length !== 1); i++) await sleep(20)
      assert.deepEqual((await a.node.peerStore.get(c.node.peerId)).addresses.map(x => x.multiaddr.toString()), ['/ip4/127.0.0.1/tcp/9'])
      assert.equal(pieceSha256Hex(await a.client.fetch(c.node.peerId, piece.opts)), piece.opts.sha256)
      const conns = a.node.getConnections(c.node.peerId).filter(conn => conn.status === 'open')
      assert.equal(conns.length, 1, 'still the one connection c opened')
      assert.equal(conns[0].direction, 'inbound')
      // and the next piece does not wait for another dial
      assert.equal(pieceSha256Hex(await a.client.fetch(c.node.peerId, { ...piece.opts })), piece.opts.sha256)
    } finally {
      await stop(a, c)
    }
  })
})
