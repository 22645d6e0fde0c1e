import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createNode, type DamselflyNode } from '../../../shared/p2p/node.js'
import { PieceServer, type FetchPieceOptions } from '../../../shared/p2p/piece-protocol.js'
import { PieceClient } from '../../../shared/p2p/piece-client.js'
import { PIECE_PROTOCOL } from '../../../shared/p2p/protocols.js'
import { digestOf, sha256Hex, type Digest } from '../../../shared/oci/digest.js'
import { pieceSha256Hex } from '../../../shared/pieces/piece-bytes.js'
import { rejectsWithName } from '../../helpers/assertions.js'

const logger = pino({ level: 'silent' })

describe('piece client: requests one after another on kept streams', () => {
  let server: DamselflyNode
  let node: DamselflyNode
  let pieceServer: PieceServer
  let client: PieceClient
  const blob = digestOf('pieces on kept streams')
  const pieces = new Map<number, Uint8Array>()
  const lie = new Map<number, Uint8Array>()
  const refused = new Set<number>()

  const add = (digest: Digest, index: number, bytes: Uint8Array): FetchPieceOptions => {
    pieces.set(index, bytes)
    return { digest, index, sha256: sha256Hex(bytes), length: bytes.byteLength }
  }
  /** Piece streams open on the server's side of the connection now. */
  const serverStreams = (): number => server.getConnections(node.peerId).flatMap(c => c.streams).filter(s => s.protocol === PIECE_PROTOCOL).length

  before(async () => {
    server = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })
    node = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })
    await server.start()
    await node.start()
    pieceServer = new PieceServer({
      libp2p: server,
      logger,
      source: { readPiece: async (_d, index) => lie.get(index) ?? pieces.get(index) }
    }, { messageTimeoutMs: 5_000, admit: (_d, index) => !refused.has(index) })
    await pieceServer.start()
    await node.dial(server.getMultiaddrs())
    client = new PieceClient(node, { idleTimeoutMs: 10_000 })
  })

  after(async () => {
    client?.close()
    for (const stop of [async () => { await pieceServer?.stop() }, async () => { await node?.stop() }, async () => { await server?.stop() }]) {
      await stop().catch(() => {})
    }
  })

  it('fetches many pieces one after another over a single stream', async () => {
    const opts = Array.from({ length: 6 }, (_, i) => add(blob, i, randomBytes(100_000 + i)))
    for (const o of opts) assert.equal(pieceSha256Hex(await client.fetch(server.peerId, o)), o.sha256)
    assert.equal(serverStreams(), 1, 'one stream served every request')
  })

  it('opens a stream per concurrent request, and no more', async () => {
    const opts = Array.from({ length: 8 }, (_, i) => add(blob, 10 + i, randomBytes(200_000)))
    await Promise.all(opts.slice(0, 4).map(async (o) => { assert.equal(pieceSha256Hex(await client.fetch(server.peerId, o)), o.sha256) }))
    const open = serverStreams()
    assert.ok(open >= 1 && open <= 4, `${open} streams for 4 concurrent requests`)
    await Promise.all(opts.slice(4).map(async (o) => { assert.equal(pieceSha256Hex(await client.fetch(server.peerId, o)), o.sha256) }))
    assert.equal(serverStreams(), open, 'the next four reused them')
  })

  it('keeps a stream after a refusal, and passes the refusal on typed', async () => {
    const before = serverStreams()
    const o = add(blob, 30, randomBytes(1000))
    refused.add(30)
    try {
      await rejectsWithName(client.fetch(server.peerId, o), 'TooManyRequestsError')
      await rejectsWithName(client.fetch(server.peerId, { ...o, index: 999 }), 'BlobUnknownError')
    } finally {
      refused.delete(30)
    }
    assert.equal(pieceSha256Hex(await client.fetch(server.peerId, o)), o.sha256)
    assert.equal(serverStreams(), before, 'no new stream after refusals')
  })

  it('drops a stream that delivered bad bytes; the next request gets a fresh one', async () => {
    const o = add(blob, 40, randomBytes(5000))
    lie.set(40, randomBytes(5000))
    try {
      await rejectsWithName(client.fetch(server.peerId, o), 'DigestMismatchError')
    } finally {
      lie.delete(40)
    }
    assert.equal(pieceSha256Hex(await client.fetch(server.peerId, o)), o.sha256)
  })

  it('closes its idle streams on close()', async () => {
    const o = add(blob, 60, randomBytes(3000))
    const before = serverStreams()
    const c = new PieceClient(node)
    await c.fetch(server.peerId, o)
    assert.equal(serverStreams(), before + 1)
    c.close()
    for (let i = 0; i < 100 && serverStreams() > before; i++) await sleep(20)
    assert.equal(serverStreams(), before)
  })
})

describe('piece client: a holder that closes idle streams', () => {
  let server: DamselflyNode
  let node: DamselflyNode
  let pieceServer: PieceServer
  const blob = digestOf('pieces after an idle close')
  const bytes = randomBytes(3000)

  before(async () => {
    server = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })
    node = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })
    await server.start()
    await node.start()
    pieceServer = new PieceServer({ libp2p: server, logger, source: { readPiece: async () => bytes } }, { idleTimeoutMs: 300 })
    await pieceServer.start()
    await node.dial(server.getMultiaddrs())
  })

  after(async () => {
    for (const stop of [async () => { await pieceServer?.stop() }, async () => { await node?.stop() }, async () => { await server?.stop() }]) {
      await stop().catch(() => {})
    }
  })

  it('lets the stream go when the holder closes it, and asks on a new one', async () => {
    const client = new PieceClient(node, { idleTimeoutMs: 60_000 })
    const streams = (): number => node.getConnections(server.peerId).flatMap(c => c.streams).filter(s => s.protocol === PIECE_PROTOCOL).length
    const o = { digest: blob, index: 0, sha256: sha256Hex(bytes), length: bytes.byteLength }
    try {
      await client.fetch(server.peerId, o)
      assert.equal(streams(), 1)
      for (let i = 0; i < 100 && streams() > 0; i++) await sleep(20) // the server's 300 ms idle timeout
      assert.equal(streams(), 0, 'the closed stream is gone at both ends')
      assert.equal(pieceSha256Hex(await client.fetch(server.peerId, o)), o.sha256)
      assert.equal(streams(), 1)
    } finally {
      client.close()
    }
  })
})
