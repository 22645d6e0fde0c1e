import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId, Stream, StreamCloseEvent } from '@libp2p/interface'
import { encode as encodeVarint } from 'uint8-varint'
import { createNode, type DamselflyNode } from '../../../shared/p2p/node.js'
import { PieceServer, fetchPiece, type FetchPieceOptions, type PieceSource } from '../../../shared/p2p/piece-protocol.js'
import { PIECE_PROTOCOL } from '../../../shared/p2p/protocols.js'
import { digestOf, sha256Hex, type Digest } from '../../../shared/oci/digest.js'
import { rejectsWithName } from '../../helpers/assertions.js'

const logger = pino({ level: 'silent' })

/** Pieces held in memory; `lie` makes it answer with other bytes for a piece. */
class MemorySource implements PieceSource {
  readonly pieces = new Map<string, Uint8Array>()
  readonly lie = new Map<string, Uint8Array>()
  reads = 0

  async readPiece (digest: Digest, index: number): Promise<Uint8Array | undefined> {
    this.reads++
    const key = `${digest.value}/${index}`
    return this.lie.get(key) ?? this.pieces.get(key)
  }

  add (digest: Digest, index: number, bytes: Uint8Array): FetchPieceOptions {
    this.pieces.set(`${digest.value}/${index}`, bytes)
    return { digest, index, sha256: sha256Hex(bytes), length: bytes.byteLength }
  }
}

async function untilClosed (stream: Stream): Promise<StreamCloseEvent> {
  return await new Promise(resolve => {
    stream.addEventListener('close', evt => { resolve(evt) }, { once: true })
  })
}

describe('piece protocol', () => {
  let server: DamselflyNode
  let client: DamselflyNode
  let pieceServer: PieceServer
  const source = new MemorySource()
  const uploads: Array<{ bytes: number, peer: PeerId }> = []
  const refused = new Set<number>()
  const blob = digestOf('a blob made of pieces')

  before(async () => {
    server = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })
    client = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })
    await server.start()
    await client.start()
    pieceServer = new PieceServer({ libp2p: server, source, logger }, {
      messageTimeoutMs: 5_000,
      onUpload: (bytes, peer) => { uploads.push({ bytes, peer }) },
      admit: (_d, index) => !refused.has(index)
    })
    await pieceServer.start()
    await client.dial(server.getMultiaddrs())
  })

  after(async () => {
    // each in turn, whatever failed before
    for (const stop of [async () => { await pieceServer?.stop() }, async () => { await client?.stop() }, async () => { await server?.stop() }]) {
      await stop().catch(() => {})
    }
  })

  it('fetches a verified piece', async () => {
    const bytes = randomBytes((1 << 20) + 333)
    const opts = source.add(blob, 0, bytes)
    const got = await fetchPiece(client, server.peerId, opts)
    assert.ok(Buffer.from(got).equals(bytes))
  })

  it('fetches by multiaddr too', async () => {
    const bytes = randomBytes(4096)
    const opts = source.add(blob, 1, bytes)
    const got = await fetchPiece(client, server.getMultiaddrs()[0], opts)
    assert.ok(Buffer.from(got).equals(bytes))
  })

  it('reports a piece the server does not hold as BlobUnknownError', async () => {
    await rejectsWithName(fetchPiece(client, server.peerId, { digest: blob, index: 99, sha256: sha256Hex('x'), length: 1 }), 'BlobUnknownError')
    await rejectsWithName(fetchPiece(client, server.peerId, { digest: digestOf('other'), index: 0, sha256: sha256Hex('x'), length: 1 }), 'BlobUnknownError')
  })

  it('refuses bytes that do not match the piece hash', async () => {
    const bytes = randomBytes(10_000)
    const opts = source.add(blob, 2, bytes)
    source.lie.set(`${blob.value}/2`, randomBytes(10_000))
    try {
      await rejectsWithName(fetchPiece(client, server.peerId, opts), 'DigestMismatchError')
    } finally {
      source.lie.delete(`${blob.value}/2`)
    }
  })

  it('refuses a piece of the wrong length', async () => {
    const bytes = randomBytes(10_000)
    const opts = source.add(blob, 3, bytes)
    source.lie.set(`${blob.value}/3`, bytes.subarray(0, 9_999))
    try {
      await rejectsWithName(fetchPiece(client, server.peerId, opts), 'ProtocolError')
    } finally {
      source.lie.delete(`${blob.value}/3`)
    }
  })

  it('passes on a refusal as TooManyRequestsError', async () => {
    const opts = source.add(blob, 4, randomBytes(100))
    refused.add(4)
    try {
      await rejectsWithName(fetchPiece(client, server.peerId, opts), 'TooManyRequestsError')
    } finally {
      refused.delete(4)
    }
  })

  it('aborts a stream that sends garbage and keeps serving', { timeout: 30_000 }, async () => {
    const good = source.add(blob, 5, randomBytes(50_000))
    const junk = [
      // a frame that is not JSON
      Buffer.concat([encodeVarint(40), Buffer.from([0xff]), randomBytes(39)]),
      // JSON, but not a piece request
      Buffer.concat([encodeVarint(13), Buffer.from('{"digest": 1}')]),
      // a request for a malformed digest
      (() => { const b = Buffer.from(JSON.stringify({ digest: 'sha256:zz', index: 0 })); return Buffer.concat([encodeVarint(b.length), b]) })(),
      // an oversize frame
      encodeVarint(64 << 20),
      // plain noise
      randomBytes(8192)
    ]
    for (const bytes of junk) {
      const reads = source.reads
      const stream = await client.dialProtocol(server.peerId, PIECE_PROTOCOL)
      const closed = untilClosed(stream)
      stream.send(bytes)
      const evt = await closed
      assert.ok(evt.error != null, 'the server closed a garbage stream cleanly instead of aborting it')
      assert.equal(source.reads, reads, 'the server read a piece for a garbage request')
      const got = await fetchPiece(client, server.peerId, good)
      assert.equal(sha256Hex(got), good.sha256)
    }
  })

  it('counts uploaded bytes per peer', { timeout: 30_000 }, async () => {
    uploads.length = 0
    const a = source.add(blob, 6, randomBytes(70_000))
    const b = source.add(blob, 7, randomBytes(1234))
    await fetchPiece(client, server.peerId, a)
    await fetchPiece(client, server.peerId, b)
    await rejectsWithName(fetchPiece(client, server.peerId, { ...a, index: 1000 }), 'BlobUnknownError')
    // the server reports an upload once its last byte is handed to the stream,
    // which may be just after the client has the piece
    while (uploads.length < 2) await sleep(10)
    await sleep(50)
    assert.deepEqual(uploads.map(u => u.bytes), [70_000, 1234])
    for (const u of uploads) assert.ok(u.peer.equals(client.peerId))
  })
})
