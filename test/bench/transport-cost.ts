/**
 * Transport cost: CPU seconds per GiB through each layer a piece crosses between two daemons,
 * on loopback in this process, with nothing else running (so both ends' CPU, kernel included,
 * and no wait for a core in it):
 *
 * - tcp: a plain socket pair, one piece-sized write after another;
 * - libp2p: one stream between two libp2p nodes as damselfly builds them (TCP + noise + yamux);
 * - pieces: damselfly's piece exchange over those nodes (request, header, payload, each piece's
 *   sha256 checked), four streams in flight as a relay keeps them;
 * - sha256: hashing the same bytes alone (once per piece at its receiver).
 *
 * Each moves the same bytes `repeats` times, interleaved, and the median is reported. Set
 * against what the swarm part's daemons spent per GiB they received, it says how much of a
 * relay's CPU the transport itself takes.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, connect, type AddressInfo, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { pino } from 'pino'
import { parseDigest } from '../../shared/oci/digest.js'
import { createNode, type DamselflyNode } from '../../shared/p2p/node.js'
import type { FramedStream } from '../../shared/p2p/codec.js'
import { exchangePiece, openPieceStream, PieceServer } from '../../shared/p2p/piece-protocol.js'
import { pieceSizeFor } from '../../shared/pieces/piece-math.js'
import { median } from './figures.js'
import type { TransportCostOptions } from './scenarios.js'

export type TransportPath = 'tcp' | 'libp2p' | 'pieces' | 'sha256'
export const TRANSPORT_PATHS: TransportPath[] = ['tcp', 'libp2p', 'pieces', 'sha256']

/** Piece streams kept in flight by the pieces path (a relay asks several pieces of each neighbour at once). */
export const PIECE_STREAMS = 4
const SINK_PROTOCOL = '/damselfly-bench/sink/1.0.0'
const GiB = 2 ** 30
/** A path that moves less than 1 MB/s (or less than all its bytes) fails the part instead of hanging it. */
const SLOWEST_BYTES_PER_SEC = 1e6

export interface TransportRow {
  path: TransportPath
  /** Medians over the repeats: CPU seconds of this process per GiB moved (both ends), and MB/s (10^6 bytes). */
  cpuSecPerGiB: number
  mbps: number
  runs: Array<{ cpuSec: number, wallSec: number }>
}

export interface TransportCostResult {
  /** Bytes each path moved per run, and the piece size they moved them in. */
  bytes: number
  pieceBytes: number
  repeats: number
  rows: TransportRow[]
}

type Log = (line: string) => void

/** Moves `bytes` once; resolves when the receiving end has them all. */
type Mover = (bytes: number) => Promise<void>

export async function runTransportCost (opts: TransportCostOptions, log: Log): Promise<TransportCostResult> {
  // the piece size the swarm part's layers are cut into (a 128 MiB layer's)
  const pieceBytes = pieceSizeFor(128 * 2 ** 20)
  const piece = randomBytes(pieceBytes)
  const bytes = Math.max(1, Math.round(opts.bytes / pieceBytes)) * pieceBytes
  log(`transport cost: ${(bytes / 2 ** 20).toFixed(0)} MiB through each of ${TRANSPORT_PATHS.join(', ')} in ${(pieceBytes / 1024).toFixed(0)} KiB pieces, ${opts.repeats} times`)
  const tcp = await tcpPair(piece)
  const nodes = await libp2pPair()
  try {
    const movers: Record<TransportPath, Mover> = {
      tcp: tcp.move,
      libp2p: await libp2pStream(nodes, piece),
      pieces: await pieceExchange(nodes, piece),
      sha256: async (n) => { for (let i = 0; i < n / pieceBytes; i++) createHash('sha256').update(piece).digest('hex') }
    }
    // compiled and connected before the clock starts
    for (const path of TRANSPORT_PATHS) await measure(path, async () => { await movers[path](Math.min(bytes, 8 * pieceBytes)) }, bytes)
    const runs = new Map<TransportPath, TransportRow['runs']>(TRANSPORT_PATHS.map((p) => [p, []]))
    for (let r = 0; r < opts.repeats; r++) {
      for (const path of TRANSPORT_PATHS) runs.get(path)?.push(await measure(path, async () => { await movers[path](bytes) }, bytes))
    }
    const rows = TRANSPORT_PATHS.map((path): TransportRow => {
      const each = runs.get(path) ?? []
      return {
        path,
        cpuSecPerGiB: median(each.map((x) => x.cpuSec / (bytes / GiB))),
        mbps: median(each.map((x) => bytes / 1e6 / x.wallSec)),
        runs: each
      }
    })
    for (const row of rows) log(`transport cost: ${row.path} ${row.cpuSecPerGiB.toFixed(2)} CPU-s/GiB, ${row.mbps.toFixed(0)} MB/s`)
    return { bytes, pieceBytes, repeats: opts.repeats, rows }
  } finally {
    tcp.close()
    await Promise.all(nodes.map(async (n) => { await n.stop() }))
  }
}

/** CPU and wall seconds of `work`; throws when it takes longer than its bytes at SLOWEST_BYTES_PER_SEC (plus 10 s). */
async function measure (path: TransportPath, work: () => Promise<void>, bytes: number): Promise<{ cpuSec: number, wallSec: number }> {
  const limitMs = 10_000 + 1000 * bytes / SLOWEST_BYTES_PER_SEC
  let timer: NodeJS.Timeout | undefined
  const tooSlow = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`transport cost: ${path} did not move ${bytes} bytes within ${limitMs} ms`)) }, limitMs)
  })
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  try {
    await Promise.race([work(), tooSlow])
  } finally {
    clearTimeout(timer)
  }
  const wallSec = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  return { cpuSec: (cpu.user + cpu.system) / 1e6, wallSec }
}

/** The receiving end's count: `expect(n)` resolves once n more bytes have been added. */
class Arrivals {
  private waiting: { left: number, done: () => void } | undefined

  async expect (bytes: number): Promise<void> {
    await new Promise<void>((resolve) => { this.waiting = { left: bytes, done: resolve } })
  }

  add (bytes: number): void {
    if (this.waiting === undefined) return
    this.waiting.left -= bytes
    if (this.waiting.left <= 0) {
      const { done } = this.waiting
      this.waiting = undefined
      done()
    }
  }
}

/** A loopback socket pair: the client writes pieces, the server counts what arrives. */
async function tcpPair (piece: Buffer): Promise<{ move: Mover, close: () => void }> {
  const arrivals = new Arrivals()
  const server = createServer((sock) => {
    sock.on('data', (chunk: Buffer) => { arrivals.add(chunk.byteLength) })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client: Socket = connect((server.address() as AddressInfo).port, '127.0.0.1')
  await once(client, 'connect')
  const move = async (bytes: number): Promise<void> => {
    const arrived = arrivals.expect(bytes)
    for (let sent = 0; sent < bytes; sent += piece.byteLength) {
      if (!client.write(piece)) await once(client, 'drain')
    }
    await arrived
  }
  return { move, close: () => { client.destroy(); server.close() } }
}

async function libp2pPair (): Promise<DamselflyNode[]> {
  const nodes = await Promise.all([0, 1].map(async () => await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0 })))
  try {
    for (const n of nodes) await n.start()
  } catch (err) {
    await Promise.all(nodes.map(async (n) => { await n.stop() }))
    throw err
  }
  return nodes
}

/** One raw libp2p stream from the second node to the first, kept open; the first counts what arrives. */
async function libp2pStream ([server, client]: DamselflyNode[], piece: Buffer): Promise<Mover> {
  const arrivals = new Arrivals()
  await server.handle(SINK_PROTOCOL, async (stream) => {
    for await (const chunk of stream) arrivals.add(chunk.byteLength)
  })
  const stream = await client.dialProtocol(server.getMultiaddrs()[0], SINK_PROTOCOL)
  return async (bytes) => {
    const arrived = arrivals.expect(bytes)
    for (let sent = 0; sent < bytes; sent += piece.byteLength) {
      if (!stream.send(piece)) await once(stream, 'drain')
    }
    await arrived
  }
}

/** The piece server on the first node, answering every request with `piece`; the second asks over PIECE_STREAMS streams. */
async function pieceExchange ([server, client]: DamselflyNode[], piece: Buffer): Promise<Mover> {
  const pieces = new PieceServer({ libp2p: server, source: { readPiece: async () => piece }, logger: pino({ level: 'silent' }) })
  await pieces.start()
  const sha256 = createHash('sha256').update(piece).digest('hex')
  const digest = parseDigest(`sha256:${sha256}`)
  const streams: FramedStream[] = []
  for (let i = 0; i < PIECE_STREAMS; i++) streams.push(await openPieceStream(client, server.getMultiaddrs()[0], {}))
  return async (bytes) => {
    let left = bytes / piece.byteLength
    await Promise.all(streams.map(async (framed) => {
      while (left > 0) {
        left--
        const answer = await exchangePiece(framed, { digest, index: 0, sha256, length: piece.byteLength })
        if (answer.refused !== undefined) throw answer.refused
      }
    }))
  }
}
