/**
 * A bounded fuzz of every libp2p protocol handler, over real in-process
 * libp2p nodes: the piece server (on a supernode and on a daemon), the
 * supernode's task and tracker handlers, and the daemon's swarm handler.
 * A fixed seed drives a few hundred streams per protocol carrying random
 * bytes, broken framing, oversize and truncated frames, schema-breaking and
 * out-of-order messages, and requests for pieces out of range. Each stream
 * must end (aborted, or answered with an error) without anyone waiting on
 * it; streams that never speak are closed by the handler's own deadline; and
 * afterwards every handler still answers a good request.
 *
 * The origin behind the supernode is an in-memory stub: nothing leaves the
 * process but loopback libp2p and HTTP traffic.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { request } from 'undici'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId, Stream } from '@libp2p/interface'
import { encode as encodeVarint } from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { createNode, type DamselflyNode } from '../../../shared/p2p/node.js'
import { FramedStream } from '../../../shared/p2p/codec.js'
import { PIECE_PROTOCOL, SWARM_PROTOCOL, TASK_PROTOCOL, TRACKER_PROTOCOL } from '../../../shared/p2p/protocols.js'
import { fetchPiece } from '../../../shared/p2p/piece-protocol.js'
import { TaskAnswer } from '../../../shared/p2p/task-messages.js'
import { TrackerAnswer } from '../../../shared/p2p/tracker-messages.js'
import { SwarmWelcome } from '../../../shared/p2p/swarm-messages.js'
import { manifestFromWire, type PieceManifest } from '../../../shared/pieces/piece-manifest.js'
import { Bitfield } from '../../../shared/pieces/bitfield.js'
import { digestOf, sha256Hex } from '../../../shared/oci/digest.js'
import { BlobUnknownError } from '../../../shared/errors.js'
import type { BlobResult, GetBlobOptions } from '../../../shared/oci/registry-types.js'
import type { RegistryEndpoint } from '../../../shared/oci/endpoints.js'
import { createSupernode, type Supernode } from '../../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../../supernode/config.js'
import { createDaemon, type Daemon } from '../../../dfdaemon/daemon.js'
import { DAEMON_DEFAULTS } from '../../../dfdaemon/config.js'
import { deterministicBytes } from '../../helpers/images.js'
import { freePort } from '../../helpers/ports.js'
import { seededRandom } from '../../helpers/prng.js'
import { pieceCount, pieceSizeFor } from '../../../shared/pieces/piece-math.js'

const logger = pino({ level: 'silent' })
const SEED = 0x5eed
const ITERATIONS = 300
/** Longest a fuzzed stream may stay open: the handlers' deadline (10 s) and some slack. */
const STREAM_BOUND_MS = 20_000
/** The registry name requests use: a closed loopback port (the stub origin answers for it). */
let REGISTRY = '127.0.0.1:1'
const REPOSITORY = 'fuzz/app'
const BLOB = deterministicBytes('fuzz-blob', (3 << 20) + 12_345)
const DIGEST = digestOf(BLOB)

class Rng {
  private readonly next: () => number
  constructor (seed: number) { this.next = seededRandom(seed) }
  int (max: number): number { return Math.floor(this.next() * max) }
  pick<T>(items: readonly T[]): T { return items[this.int(items.length)] }
  bytes (n: number): Buffer {
    const b = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i++) b[i] = this.int(256)
    return b
  }
}

function frame (body: Uint8Array | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body)
  return Buffer.concat([encodeVarint(b.length), b])
}

const json = (v: unknown): Buffer => frame(JSON.stringify(v))

/** Values that break a field: wrong types, huge, empty, hostile strings. */
function badValue (rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => null,
    () => -1,
    () => 2 ** 53,
    () => 1.5,
    () => '',
    () => 'x'.repeat(100_000),
    () => '../../etc/passwd',
    () => ({ nested: { deeper: [1, 2, 3] } }),
    () => [],
    () => true,
    () => '\u0000\uffff',
    () => rng.bytes(20).toString('base64'),
    () => 'sha256:' + 'z'.repeat(64)
  ])()
}

/** A request that was valid, with one field broken, removed or added. */
function mutate (rng: Rng, valid: Record<string, unknown>): Record<string, unknown> {
  const out = { ...valid }
  const keys = Object.keys(out)
  switch (rng.int(3)) {
    case 0: out[rng.pick(keys)] = badValue(rng); break
    case 1: delete out[rng.pick(keys)]; break
    default: out[`extra${rng.int(10)}`] = badValue(rng)
  }
  return out
}

/**
 * One fuzz case: the bytes to send, whether to end our side afterwards, and
 * whether the message could pass the schema (then any well-formed answer is
 * fine; otherwise only an error answer or none).
 */
interface Case { kind: string, bytes: Buffer, mayBeValid: boolean }

/** The cases every protocol gets: framing-level garbage, plus the protocol's own valid and mutated messages. */
function fuzzCase (rng: Rng, valid: () => Record<string, unknown>, outOfOrder: () => Buffer[]): Case {
  switch (rng.int(10)) {
    case 0: return { kind: 'noise', bytes: rng.bytes(1 + rng.int(4096)), mayBeValid: false }
    case 1: return { kind: 'oversize prefix', bytes: Buffer.concat([encodeVarint((4 << 20) + 1 + rng.int(1 << 26)), rng.bytes(rng.int(64))]), mayBeValid: false }
    case 2: return { kind: 'overlong varint', bytes: Buffer.concat([Buffer.alloc(6 + rng.int(4), 0xff), rng.bytes(8)]), mayBeValid: false }
    case 3: {
      const whole = json(valid())
      return { kind: 'truncated', bytes: whole.subarray(0, 1 + rng.int(whole.length - 1)), mayBeValid: false }
    }
    case 4: return { kind: 'not json', bytes: frame(rng.bytes(1 + rng.int(500))), mayBeValid: false }
    case 5: return { kind: 'json, wrong shape', bytes: json(rng.pick([null, 42, 'hello', [1, 2], { type: 'have', index: 3 }, {}])), mayBeValid: false }
    case 6: return { kind: 'mutated', bytes: json(mutate(rng, valid())), mayBeValid: true }
    case 7: return { kind: 'out of order', bytes: Buffer.concat(outOfOrder()), mayBeValid: true }
    case 8: return { kind: 'empty frame', bytes: frame(Buffer.alloc(0)), mayBeValid: false }
    default: return { kind: 'valid then noise', bytes: Buffer.concat([json(valid()), rng.bytes(1 + rng.int(300))]), mayBeValid: true }
  }
}

interface Outcome { received: Buffer, error: boolean, hung: boolean }

/**
 * Send `bytes`, end our side (unless `speak` is false), and collect what
 * comes back until the stream closes, or STREAM_BOUND_MS pass (hung).
 */
async function exchange (stream: Stream, bytes: Buffer | undefined, boundMs = STREAM_BOUND_MS): Promise<Outcome> {
  const chunks: Buffer[] = []
  const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => { chunks.push(Buffer.from(evt.data.subarray())) }
  stream.addEventListener('message', onMessage)
  // the handler is done with the stream when it closes or resets it, or ends its side
  const closed = new Promise<{ error: boolean }>(resolve => {
    stream.addEventListener('close', evt => { resolve({ error: evt.error != null }) }, { once: true })
    stream.addEventListener('remoteCloseWrite', () => { resolve({ error: false }) }, { once: true })
  })
  if (bytes != null) {
    if (!stream.send(bytes)) await stream.onDrain({ signal: AbortSignal.timeout(boundMs) }).catch(() => {})
    await stream.close({ signal: AbortSignal.timeout(boundMs) }).catch(() => {})
  }
  let timer: NodeJS.Timeout | undefined
  const result = await Promise.race([
    closed.then(c => ({ ...c, hung: false })),
    new Promise<{ error: boolean, hung: boolean }>(resolve => { timer = setTimeout(() => { resolve({ error: false, hung: true }) }, boundMs) })
  ])
  clearTimeout(timer)
  stream.removeEventListener('message', onMessage)
  if (result.hung) stream.abort(new Error('fuzz: stream hung'))
  else if (stream.status === 'open') await stream.close({ signal: AbortSignal.timeout(boundMs) }).catch(() => { stream.abort(new Error('fuzz: done')) })
  return { received: Buffer.concat(chunks), ...result }
}

/** The JSON frames in `bytes`, up to the first that is not JSON (a piece payload). */
function frames (bytes: Buffer): unknown[] {
  const out: unknown[] = []
  let off = 0
  while (off < bytes.length) {
    let len = 0
    let shift = 0
    let b: number
    do {
      if (off >= bytes.length) return out
      b = bytes[off++]
      len += (b & 0x7f) * 2 ** shift
      shift += 7
    } while ((b & 0x80) !== 0)
    const body = bytes.subarray(off, off + len)
    off += len
    try {
      out.push(JSON.parse(body.toString('utf8')))
    } catch {
      return out
    }
  }
  return out
}

function isErrorAnswer (m: unknown): boolean {
  if (m == null || typeof m !== 'object') return false
  const o = m as Record<string, unknown>
  return o.ok === false || o.type === 'error' || (typeof o.error === 'object' && o.error !== null)
}

function errorCode (m: unknown): string {
  const o = m as { code?: unknown, error?: { code?: unknown } }
  return String(o.code ?? o.error?.code ?? '?')
}

describe('fuzzing the libp2p protocol handlers', { timeout: 600_000 }, () => {
  let dir: string
  let supernode: Supernode | undefined
  let daemon: Daemon | undefined
  let fuzzer: DamselflyNode | undefined
  let manifest: PieceManifest
  let supernodePeer: PeerId
  let daemonPeer: PeerId
  const originCalls = { get: 0 }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-fuzz-'))
    REGISTRY = `127.0.0.1:${await freePort()}`
    // the origin: one blob, in memory; anything else is unknown
    const client = {
      getBlob: async (_ep: RegistryEndpoint, repository: string, digest: string, opts: GetBlobOptions): Promise<BlobResult> => {
        originCalls.get++
        if (repository !== REPOSITORY || digest !== DIGEST.value) throw new BlobUnknownError()
        const start = opts.range?.start ?? 0
        const end = opts.range?.end ?? BLOB.length - 1
        const body = BLOB.subarray(start, end + 1)
        return { status: opts.range != null ? 206 : 200, size: BLOB.length, start, length: body.length, body: (async function * () { yield body })(), cancel: () => {} }
      },
      close: async () => {}
    }
    const accessClient = {
      headBlob: async (_ep: RegistryEndpoint, repository: string, digest: string): Promise<unknown> => {
        if (repository !== REPOSITORY || digest !== DIGEST.value) throw new BlobUnknownError()
        return { size: BLOB.length }
      }
    }
    supernode = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: join(dir, 'supernode'), port: 0, p2pPort: 0 }, { logger, client, accessClient })
    await supernode.start()
    daemon = await createDaemon({
      ...DAEMON_DEFAULTS,
      supernode: supernode.httpAddress as string,
      upstream: `http://${REGISTRY}`,
      dataDir: join(dir, 'daemon'),
      port: 0,
      p2pPort: 0,
      logLevel: 'silent'
    }, { logger })
    await daemon.start()
    fuzzer = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
    await fuzzer.start()
    supernodePeer = supernode.node.peerId
    daemonPeer = daemon.node.peerId
    await fuzzer.dial(supernode.node.getMultiaddrs())
    await fuzzer.dial(daemon.node.getMultiaddrs())

    // the daemon pulls the blob once, so it holds it whole and serves it
    const res = await request(`${daemon.mirrorUrl}/v2/${REPOSITORY}/blobs/${DIGEST.value}`)
    const body = Buffer.from(await res.body.arrayBuffer())
    assert.equal(res.statusCode, 200)
    assert.equal(sha256Hex(body), DIGEST.hex)
    manifest = await askManifest()
    assert.equal(manifest.pieces.length, pieceCount(BLOB.length, pieceSizeFor(BLOB.length)), 'the blob is several pieces')
    assert.ok(manifest.pieces.length > 2)
  })

  after(async () => {
    for (const stop of [async () => { await fuzzer?.stop() }, async () => { await daemon?.stop() }, async () => { await supernode?.stop() }]) {
      await stop().catch(() => {})
    }
    await rm(dir, { recursive: true, force: true })
  })

  async function open (peer: PeerId, protocol: string): Promise<Stream> {
    const node = fuzzer as DamselflyNode
    const conn = node.getConnections(peer).find(c => c.status === 'open') ?? await node.dial(peer)
    return await conn.newStream(protocol, { signal: AbortSignal.timeout(10_000) })
  }

  /** A good task request, read to `done`; its manifest. */
  async function askManifest (): Promise<PieceManifest> {
    const framed = new FramedStream(await open(supernodePeer, TASK_PROTOCOL))
    await framed.writeMessage({ registry: REGISTRY, repository: REPOSITORY, digest: DIGEST.value })
    let m: PieceManifest | undefined
    for (;;) {
      const a = await framed.readMessage(TaskAnswer)
      if (a.type === 'manifest') m = manifestFromWire(a.manifest)
      else if (a.type === 'piece' && m != null) m.pieces[a.index] = a.sha256
      else if (a.type === 'error') throw new Error(`task error ${a.code}`)
      else if (a.type === 'done') break
    }
    await framed.close()
    assert.ok(m != null)
    return m
  }

  /** Fetch and check piece `index`; a super-seeding supernode says "ask your neighbours" for a while, then serves (bounded). */
  async function goodPiece (peer: PeerId, index: number): Promise<void> {
    const sha = manifest.pieces[index] as string
    const length = Math.min(manifest.pieceSize, manifest.size - index * manifest.pieceSize)
    for (let attempt = 0; ; attempt++) {
      try {
        const bytes = await fetchPiece(fuzzer as DamselflyNode, peer, { digest: DIGEST, index, sha256: sha, length })
        assert.equal(sha256Hex(bytes), sha)
        return
      } catch (err) {
        if ((err as Error).name !== 'TooManyRequestsError' || attempt >= 40) throw err
        await new Promise(resolve => setTimeout(resolve, 250))
      }
    }
  }

  async function goodAnnounce (): Promise<void> {
    const framed = new FramedStream(await open(supernodePeer, TRACKER_PROTOCOL))
    await framed.writeMessage({ addrs: [], blobs: [{ digest: DIGEST.value, pieces: manifest.pieces.length, complete: true, wantPeers: true }] })
    const a = await framed.readMessage(TrackerAnswer)
    await framed.close()
    assert.ok('blobs' in a, 'the tracker answers with peers')
    assert.equal(a.blobs[0].digest, DIGEST.value)
  }

  async function goodHello (): Promise<void> {
    const framed = new FramedStream(await open(daemonPeer, SWARM_PROTOCOL))
    await framed.writeMessage({ type: 'hello', digest: DIGEST.value, have: '' })
    const w = await framed.readMessage(SwarmWelcome)
    await framed.close()
    assert.equal(w.type, 'welcome')
    if (w.type !== 'welcome') return
    assert.equal(Bitfield.fromBase64(manifest.pieces.length, w.have).count, manifest.pieces.length, 'the daemon holds every piece')
  }

  /** Run ITERATIONS cases against one protocol; returns counts by outcome for the log line. */
  async function fuzz (name: string, peer: PeerId, protocol: string, seed: number, valid: (rng: Rng) => Record<string, unknown>, outOfOrder: (rng: Rng) => Buffer[]): Promise<void> {
    const rng = new Rng(seed)
    const tally = { aborted: 0, errorAnswer: 0, answered: 0, closedSilently: 0 }
    const codes = new Map<string, number>()
    for (let i = 0; i < ITERATIONS; i++) {
      const c = fuzzCase(rng, () => valid(rng), () => outOfOrder(rng))
      const stream = await open(peer, protocol)
      const out = await exchange(stream, c.bytes)
      assert.equal(out.hung, false, `${name} #${i} (${c.kind}): the stream was still open after ${STREAM_BOUND_MS} ms`)
      const msgs = frames(out.received)
      if (out.error) tally.aborted++
      if (msgs.length === 0) {
        if (!out.error) tally.closedSilently++
        continue
      }
      if (isErrorAnswer(msgs[0])) {
        tally.errorAnswer++
        const code = errorCode(msgs[0])
        codes.set(code, (codes.get(code) ?? 0) + 1)
        continue
      }
      tally.answered++
      assert.ok(c.mayBeValid, `${name} #${i} (${c.kind}): a message that cannot pass the schema got a success answer: ${JSON.stringify(msgs[0]).slice(0, 200)}`)
    }
    process.stdout.write(`# fuzz ${name}: ${ITERATIONS} streams; ${JSON.stringify(tally)}; error codes ${JSON.stringify(Object.fromEntries(codes))}\n`)
    assert.equal(tally.aborted + tally.errorAnswer + tally.answered + tally.closedSilently >= ITERATIONS, true)
  }

  const randomIndex = (rng: Rng): number => rng.pick([0, 1, 3, 4, 5, 1000, (1 << 20), -1, 2 ** 31])

  const pieceRequest = (rng: Rng): Record<string, unknown> => ({
    digest: rng.int(3) === 0 ? digestOf(rng.bytes(8)).value : DIGEST.value,
    index: randomIndex(rng)
  })

  it('the supernode piece server survives, refuses pieces out of range, and still serves', async () => {
    await fuzz('piece@supernode', supernodePeer, PIECE_PROTOCOL, SEED + 1, pieceRequest, (rng) => [json(pieceRequest(rng)), json(pieceRequest(rng)), frame(rng.bytes(100))])
    // a super-seeding supernode may answer "ask your neighbours" before it looks at the index: a refusal either way
    for (const index of [manifest.pieces.length, manifest.pieces.length + 1, 1 << 20]) {
      await assert.rejects(goodPieceAt(supernodePeer, index), (err: Error) => { assert.ok(['BlobUnknownError', 'TooManyRequestsError'].includes(err.name), `piece ${index} is out of range: ${err.name} ${err.message}`); return true })
    }
    await goodPiece(supernodePeer, 0)
    await goodPiece(supernodePeer, manifest.pieces.length - 1)
  })

  it('the daemon piece server survives, refuses pieces out of range, and still serves', async () => {
    await fuzz('piece@daemon', daemonPeer, PIECE_PROTOCOL, SEED + 2, pieceRequest, (rng) => [json(pieceRequest(rng)), json({ ok: true, length: 10 }), rng.bytes(10)])
    for (const index of [manifest.pieces.length, 1 << 20]) {
      await assert.rejects(goodPieceAt(daemonPeer, index), (err: Error) => { assert.equal(err.name, 'BlobUnknownError', `piece ${index} is out of range: ${err.name} ${err.message}`); return true })
    }
    for (let i = 0; i < manifest.pieces.length; i++) await goodPiece(daemonPeer, i)
  })

  /** A request for piece `index` that claims a one-byte piece: only its refusal matters. */
  async function goodPieceAt (peer: PeerId, index: number): Promise<Uint8Array> {
    return await fetchPiece(fuzzer as DamselflyNode, peer, { digest: DIGEST, index, sha256: sha256Hex('x'), length: 1 })
  }

  const taskRequest = (rng: Rng): Record<string, unknown> => ({
    registry: rng.pick([REGISTRY, REGISTRY, 'not a host', 'UPPER..case', '']),
    repository: rng.pick([REPOSITORY, 'fuzz/other', '../etc', 'A/B']),
    digest: rng.pick([DIGEST.value, digestOf(rng.bytes(8)).value, 'sha256:short']),
    ...(rng.int(4) === 0 ? { authorization: rng.pick(['Basic Zm9vOmJhcg==', 'x'.repeat(17_000)]) } : {})
  })

  it('the supernode task handler survives and still answers', async () => {
    await fuzz('task', supernodePeer, TASK_PROTOCOL, SEED + 3, taskRequest, (rng) => [json({ type: 'done' }), json(taskRequest(rng))])
    const m = await askManifest()
    assert.deepEqual(m.pieces, manifest.pieces)
    assert.equal(originCalls.get, 1, 'the origin was asked for the blob once, whatever the fuzzing')
  })

  const announce = (rng: Rng): Record<string, unknown> => ({
    addrs: rng.pick([[], ['/ip4/127.0.0.1/tcp/1'], ['not a multiaddr'], [`/ip4/127.0.0.1/tcp/1/p2p/${supernodePeer.toString()}`]]),
    blobs: Array.from({ length: rng.int(4) }, () => ({
      digest: rng.pick([DIGEST.value, 'sha256:nope', digestOf(rng.bytes(4)).value]),
      pieces: rng.pick([0, 4, 1 << 20]),
      ...(rng.int(2) === 0 ? { have: rng.bytes(rng.int(40)).toString('base64') } : {}),
      complete: rng.int(2) === 0,
      wantPeers: rng.int(2) === 0
    }))
  })

  it('the supernode tracker handler survives and still answers', async () => {
    await fuzz('tracker', supernodePeer, TRACKER_PROTOCOL, SEED + 4, announce, (rng) => [json({ blobs: [], ttl: 5 }), json(announce(rng))])
    await goodAnnounce()
  })

  const hello = (rng: Rng): Record<string, unknown> => ({
    type: 'hello',
    digest: rng.pick([DIGEST.value, digestOf(rng.bytes(8)).value, 'sha256:zz']),
    have: rng.pick(['', 'AAAA', '////', rng.bytes(rng.int(64)).toString('base64'), '!!not base64!!'])
  })

  it('the daemon swarm handler survives and still welcomes', async () => {
    await fuzz('swarm', daemonPeer, SWARM_PROTOCOL, SEED + 5, hello, (rng) => [json({ type: 'have', index: rng.int(8) }), json(hello(rng))])
    await goodHello()
  })

  it('streams that open and never speak are closed by each handler\'s deadline', async () => {
    const targets: Array<[string, PeerId, string]> = [
      ['piece@supernode', supernodePeer, PIECE_PROTOCOL],
      ['piece@daemon', daemonPeer, PIECE_PROTOCOL],
      ['task', supernodePeer, TASK_PROTOCOL],
      ['tracker', supernodePeer, TRACKER_PROTOCOL],
      ['swarm', daemonPeer, SWARM_PROTOCOL]
    ]
    // silent streams, all at once; and ones that send half a frame and then nothing
    const outcomes = await Promise.all(targets.flatMap(([name, peer, protocol]) => [
      (async () => ({ name: `${name} silent`, out: await exchange(await open(peer, protocol), undefined) }))(),
      (async () => {
        const stream = await open(peer, protocol)
        stream.send(Buffer.concat([encodeVarint(200), Buffer.from('{"digest":')]))
        return { name: `${name} half a frame`, out: await exchange(stream, undefined) }
      })()
    ]))
    for (const { name, out } of outcomes) {
      assert.equal(out.hung, false, `${name}: the handler left the stream open`)
      const first = frames(out.received)[0]
      assert.ok(first === undefined || isErrorAnswer(first), `${name}: only an error answer, got ${JSON.stringify(first)}`)
    }
    // and everyone still answers
    await goodPiece(supernodePeer, 1)
    await goodPiece(daemonPeer, 2)
    await askManifest()
    await goodAnnounce()
    await goodHello()
  })
})
