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
import { TASK_PROTOCOL } from '../../shared/p2p/protocols.js'
import { TaskAnswer, type TaskRequest } from '../../shared/p2p/task-messages.js'
import { fetchPiece } from '../../shared/p2p/piece-protocol.js'
import { manifestFromWire, type PieceManifest } from '../../shared/pieces/piece-manifest.js'
import { pieceLength } from '../../shared/pieces/piece-math.js'
import { digestOf, parseDigest } from '../../shared/oci/digest.js'
import { createSupernode, type Supernode } from '../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../supernode/config.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'

const logger = pino({ level: 'silent' })
const repository = 'team/app'

/** Read task answers until done, error or the end of the stream; a reset stream yields `aborted`. */
async function readAnswers (framed: FramedStream): Promise<Array<TaskAnswer | { type: 'aborted' }>> {
  const out: Array<TaskAnswer | { type: 'aborted' }> = []
  try {
    for (;;) {
      const a = await framed.readMessage(TaskAnswer, { allowEnd: true })
      if (a == null) break
      out.push(a)
      if (a.type === 'done' || a.type === 'error') break
    }
  } catch {
    out.push({ type: 'aborted' })
  }
  return out
}

describe('supernode task and piece protocols', () => {
  let reg: TestRegistry | undefined
  let dir: string | undefined
  let supernode: Supernode | undefined
  let client: DamselflyNode | undefined
  let image: PushedImage
  let target: Multiaddr

  before(async () => {
    reg = await startRegistry()
    image = await pushImage(reg, { repository, tag: 'v1', layers: [{ size: 5 << 20 }, { size: 100 << 10 }] })
    dir = await mkdtemp(join(tmpdir(), 'damselfly-supernode-'))
    supernode = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: dir, port: 0, p2pPort: 0 }, { logger })
    await supernode.start()
    target = multiaddr(supernode.multiaddrs[0])
    client = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
    await client.start()
  })
  after(async () => {
    await client?.stop()
    await supernode?.stop()
    await reg?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  async function askTask (req: TaskRequest): Promise<Array<TaskAnswer | { type: 'aborted' }>> {
    const framed = new FramedStream(await (client as DamselflyNode).dialProtocol(target, TASK_PROTOCOL))
    await framed.writeMessage(req)
    const answers = await readAnswers(framed)
    await framed.close()
    return answers
  }

  /** Send raw bytes (not a valid frame) as the request. */
  async function askRaw (bytes: Uint8Array): Promise<Array<TaskAnswer | { type: 'aborted' }>> {
    const stream = await (client as DamselflyNode).dialProtocol(target, TASK_PROTOCOL)
    const framed = new FramedStream(stream)
    stream.send(bytes)
    const answers = await readAnswers(framed)
    await framed.close()
    return answers
  }

  async function fetchBlob (digest: string): Promise<{ manifest: PieceManifest, answers: TaskAnswer[] }> {
    const answers = await askTask({ registry: (reg as TestRegistry).host, repository, digest })
    assert.equal(answers[0]?.type, 'manifest')
    assert.equal(answers.at(-1)?.type, 'done')
    const first = answers[0] as Extract<TaskAnswer, { type: 'manifest' }>
    const manifest = manifestFromWire(first.manifest)
    for (const a of answers.slice(1, -1)) {
      assert.equal(a.type, 'piece')
      if (a.type === 'piece') manifest.pieces[a.index] = a.sha256
    }
    return { manifest, answers: answers as TaskAnswer[] }
  }

  it('answers a task with the manifest, piece updates and done; every piece fetches, verified', async () => {
    const layer = image.layers[0]
    const { manifest } = await fetchBlob(layer.digest)
    assert.equal(manifest.size, layer.size)
    assert.ok(manifest.pieces.length > 1)
    assert.ok(manifest.pieces.every(p => p != null), 'every piece hash known by done')
    const node = client as DamselflyNode
    const pieces = await Promise.all(manifest.pieces.map(async (sha256, index) => await fetchPiece(node, target, {
      digest: manifest.digest, index, sha256: sha256 as string, length: pieceLength(manifest.size, manifest.pieceSize, index)
    })))
    assert.equal(digestOf(Buffer.concat(pieces)).value, layer.digest)
    await (reg as TestRegistry).flushLog()
    assert.equal((reg as TestRegistry).blobRequests(layer.digest), 1)
  })

  it('answers a completed blob with a full manifest and done, without the origin', async () => {
    const layer = image.layers[0]
    const { answers, manifest } = await fetchBlob(layer.digest)
    assert.equal(answers.length, 2)
    assert.ok(manifest.pieces.every(p => p != null))
    await (reg as TestRegistry).flushLog()
    assert.equal((reg as TestRegistry).blobRequests(layer.digest), 1)
  })

  it('answers an unknown blob with BLOB_UNKNOWN', async () => {
    const answers = await askTask({ registry: (reg as TestRegistry).host, repository, digest: digestOf('missing').value })
    assert.deepEqual(answers.map(a => a.type), ['error'])
    assert.equal((answers[0] as { code: string }).code, 'BLOB_UNKNOWN')
  })

  it('rejects malformed requests and keeps serving', async () => {
    const host = (reg as TestRegistry).host
    const bad = await askTask({ registry: host, repository, digest: 'sha256:not-hex' })
    assert.equal(bad[0].type, 'error')
    assert.equal((bad[0] as { code: string }).code, 'DIGEST_INVALID')

    const badName = await askTask({ registry: host, repository: 'UPPER/Case', digest: image.layers[1].digest })
    assert.equal((badName[0] as { code: string }).code, 'NAME_INVALID')

    const notSchema = await askRaw(Buffer.concat([encodeVarint(11), Buffer.from('{"hello":1}').subarray(0, 11)]))
    assert.ok(['error', 'aborted'].includes(notSchema[0]?.type), `got ${notSchema[0]?.type}`)

    const garbage = await askRaw(Buffer.alloc(16, 0xff))
    assert.ok(['error', 'aborted'].includes(garbage[0]?.type), `got ${garbage[0]?.type}`)

    const oversize = await askRaw(encodeVarint(64 << 20))
    assert.ok(['error', 'aborted'].includes(oversize[0]?.type), `got ${oversize[0]?.type}`)

    const layer = image.layers[1]
    const { manifest } = await fetchBlob(layer.digest)
    assert.equal(manifest.size, layer.size)
  })

  it('survives a client that goes away mid-task', async () => {
    const stream = await (client as DamselflyNode).dialProtocol(target, TASK_PROTOCOL)
    const framed = new FramedStream(stream)
    await framed.writeMessage({ registry: (reg as TestRegistry).host, repository, digest: image.config.digest })
    const first = await framed.readMessage(TaskAnswer)
    assert.equal(first.type, 'manifest')
    framed.abort(new Error('client gone'))
    const { manifest } = await fetchBlob(image.config.digest)
    assert.equal(manifest.digest.value, parseDigest(image.config.digest).value)
  })
})
