/**
 * Tracker scale: the supernode's tracker under announces from many peers over many blobs.
 *
 * The handler records an announce under the connection's remote peer, so one connection cannot
 * speak for many peers, and 10,000 libp2p connections do not fit on one machine. Two honest runs:
 *
 * - in-process: the real TrackerHandler and TrackerState, configured as the supernode configures
 *   them (defaults, its metrics), driven by the real tracker client over in-memory stream pairs
 *   (the unit tests' @libp2p/utils streamPair: no TCP, no noise, no yamux), each announce from
 *   its own Ed25519 peer id; one announce at a time, so the latencies are the cost of one
 *   announce with no wait in them. Most of that is the in-memory streams' own machinery, so the
 *   same announces also go straight into a TrackerState ("state only"). Memory is the heap the
 *   state holds after a full GC.
 * - over the wire: a real supernode process and real libp2p nodes (shared/p2p/node.ts) in this
 *   process, each a peer of its own, all announcing at once (tracker-wire.ts).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, PeerId, StreamHandler } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { announce } from '../../shared/p2p/tracker-client.js'
import type { TrackerAnnounce } from '../../shared/p2p/tracker-messages.js'
import { createSupernodeMetrics } from '../../supernode/metrics.js'
import { TrackerHandler } from '../../supernode/tracker/tracker-handler.js'
import { DEFAULT_MAX_TRACKER_ENTRIES, DEFAULT_PEERS_PER_REPLY, TrackerState, type TrackerStats } from '../../supernode/tracker/tracker-state.js'
import type { Cleanup } from './cleanup.js'
import type { TrackerScaleOptions } from './scenarios.js'
import { downloadAnnounce, HELD_PIECES, PHASE_DEADLINE_MS, runPhase, seedAnnounce, workload, type AnnounceOutcome, type PhaseFigures } from './tracker-load.js'
import { runTrackerWire, type TrackerWireResult } from './tracker-wire.js'

export interface TrackerInProcessResult {
  peers: number
  blobs: number
  blobsPerPeer: number
  /** Seconds to make the peers' Ed25519 keys. */
  keygenSec: number
  /** Every peer announces the blobs it seeds (one announce each), then one blob it downloads. */
  seed: PhaseFigures
  download: PhaseFigures
  /** The same announces as TrackerState calls alone (no streams, framing, schema or address checks). */
  stateOnly: { seed: PhaseFigures, download: PhaseFigures }
  /** Distinct (blob, peer) pairs announced, and what the tracker holds at the end. */
  pairsAnnounced: number
  held: TrackerStats
  /** The tracker's cap on entries (least recently announced dropped beyond it). */
  maxEntries: number
  /** Heap the tracker holds (after a full GC once the heap settled, against before the first announce); null without GC. */
  heapBytes: number | null
  bytesPerEntry: number | null
  /** This process's RSS growth over the run (GC'd or not: an upper bound on the tracker's). */
  rssDeltaBytes: number
  gc: boolean
}

export interface TrackerScaleResult {
  inProcess: TrackerInProcessResult
  wire: TrackerWireResult
}

type Log = (line: string) => void

export async function runTrackerScale (opts: TrackerScaleOptions, workDir: string, cleanup: Cleanup, log: Log): Promise<TrackerScaleResult> {
  log(`tracker: ${opts.peers} peers over ${opts.blobs} blobs in-process (${opts.blobsPerPeer} seeded + 1 downloading each)`)
  const inProcess = await runInProcess(opts, log)
  log(`tracker: ${opts.wireNodes} real libp2p nodes announcing to a supernode process over TCP`)
  const wire = await runTrackerWire(opts, workDir, cleanup, log)
  return { inProcess, wire }
}

async function runInProcess (opts: TrackerScaleOptions, log: Log): Promise<TrackerInProcessResult> {
  const gc = exposeGc()
  const load = workload(opts.peers, opts.blobs, opts.blobsPerPeer)
  const k0 = performance.now()
  const ids: PeerId[] = []
  for (let i = 0; i < opts.peers; i++) ids.push(peerIdFromPrivateKey(await generateKeyPair('Ed25519')))
  const keygenSec = (performance.now() - k0) / 1000
  const addrs = ids.map((id, i) => [`/ip4/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/tcp/65002/p2p/${id.toString()}`])
  const seedOf = (i: number): TrackerAnnounce => seedAnnounce(addrs[i], load.seeds[i].map((j) => load.digests[j]))
  const downloadOf = (i: number): TrackerAnnounce => downloadAnnounce(addrs[i], load.digests[load.downloads[i]])
  // in-memory streams hold no handle: keep the event loop alive while a deadline is pending
  const keepAlive = setInterval(() => undefined, 60_000)
  const stops: Array<() => Promise<void>> = []
  try {
    // a throwaway round first, so code paths warmed up and allocated once are not counted below
    const warm = await rig(ids)
    stops.push(warm.stop)
    for (let i = 0; i < Math.min(200, opts.peers); i++) await warm.send(i, seedOf(i))
    gc?.()
    const heap0 = process.memoryUsage().heapUsed
    const rss0 = process.memoryUsage().rss
    const main = await rig(ids)
    stops.push(main.stop)
    const seed = await runPhase(1, opts.peers, PHASE_DEADLINE_MS, 'busy', async (_, i) => await main.send(i, seedOf(i)))
    log(`tracker in-process seed: ${seed.announcesPerSec.toFixed(0)} announces/s, p50 ${seed.p50Ms.toFixed(2)} ms, p99 ${seed.p99Ms.toFixed(2)} ms`)
    const download = await runPhase(1, opts.peers, PHASE_DEADLINE_MS, 'busy', async (_, i) => await main.send(i, downloadOf(i)))
    log(`tracker in-process download: ${download.announcesPerSec.toFixed(0)} announces/s, p50 ${download.p50Ms.toFixed(2)} ms, p99 ${download.p99Ms.toFixed(2)} ms, ${download.peersPerReply} peers per reply`)
    const heapBytes = gc === undefined ? null : await settledHeap(gc) - heap0
    const rssDeltaBytes = process.memoryUsage().rss - rss0
    const held = main.state.stats()
    log(`tracker in-process: ${held.entries} entries held (${held.peers} peers, ${held.blobs} blobs)${heapBytes === null ? '' : `, ${(heapBytes / 2 ** 20).toFixed(1)} MiB of heap`}`)

    // the same announces straight into a TrackerState: the share of the cost that is the state's
    const state = new TrackerState()
    const ownIds = ids.map(String)
    const stateSeed = await runPhase(1, opts.peers, PHASE_DEADLINE_MS, 'busy', async (_, i) => stateCalls(state, ownIds[i], addrs[i], seedOf(i)))
    const stateDownload = await runPhase(1, opts.peers, PHASE_DEADLINE_MS, 'busy', async (_, i) => stateCalls(state, ownIds[i], addrs[i], downloadOf(i)))
    log(`tracker state only: seed ${stateSeed.announcesPerSec.toFixed(0)} announces/s, download ${stateDownload.announcesPerSec.toFixed(0)} announces/s`)
    return {
      peers: opts.peers,
      blobs: opts.blobs,
      blobsPerPeer: opts.blobsPerPeer,
      keygenSec,
      seed,
      download,
      stateOnly: { seed: stateSeed, download: stateDownload },
      pairsAnnounced: seed.blobEntries + download.blobEntries,
      held,
      maxEntries: DEFAULT_MAX_TRACKER_ENTRIES,
      heapBytes,
      bytesPerEntry: heapBytes === null || held.entries === 0 ? null : heapBytes / held.entries,
      rssDeltaBytes,
      gc: gc !== undefined
    }
  } finally {
    clearInterval(keepAlive)
    for (const stop of stops) await stop()
  }
}

interface Rig {
  state: TrackerState
  /** One announce from peer `i`: the real client on one end of a fresh stream pair, the handler on the other. */
  send: (i: number, msg: TrackerAnnounce) => Promise<AnnounceOutcome>
  stop: () => Promise<void>
}

/** A TrackerHandler wired as the supernode wires it (supernode/supernode.ts), with a libp2p that hands the handler to us. */
async function rig (ids: PeerId[]): Promise<Rig> {
  let handler: StreamHandler | undefined
  const state = new TrackerState()
  const tracker = new TrackerHandler({
    libp2p: { handle: async (_protocol, h) => { handler = h }, unhandle: async () => undefined },
    state,
    logger: pino({ level: 'silent' }),
    metrics: createSupernodeMetrics(new Registry())
  })
  await tracker.start()
  return {
    state,
    send: async (i, msg) => {
      const [out, inbound] = await streamPair({ delay: 0 })
      const connection = { remotePeer: ids[i] } as unknown as Connection
      const t0 = performance.now()
      const served = handler!(inbound, connection)
      const reply = await announce({ dialProtocol: async () => out }, ids[i], msg, { timeoutMs: 30_000 })
      await served
      return { ms: performance.now() - t0, entries: msg.blobs.length, peers: reply.blobs.length === 0 ? -1 : reply.blobs[0].peers.length }
    },
    stop: async () => { await tracker.stop() }
  }
}

/** The TrackerState calls the handler makes for one announce (its record and gauge update), timed, without streams or parsing. */
function stateCalls (state: TrackerState, peerId: string, addrs: string[], msg: TrackerAnnounce): AnnounceOutcome {
  const t0 = performance.now()
  for (const b of msg.blobs) state.announce(peerId, addrs, { digest: b.digest, pieces: b.pieces, have: b.complete ? 0 : HELD_PIECES, complete: b.complete })
  const replies = msg.blobs.filter((b) => b.wantPeers).map((b) => state.peersFor(b.digest, peerId, DEFAULT_PEERS_PER_REPLY))
  state.stats()
  return { ms: performance.now() - t0, entries: msg.blobs.length, peers: replies.length === 0 ? -1 : replies[0].length }
}

/**
 * The heap after a full GC once it stops shrinking: closed in-memory streams stay reachable from
 * their queues' pending work for a few seconds after thousands of announces. At most 10 s.
 */
async function settledHeap (gc: () => void): Promise<number> {
  gc()
  let heap = process.memoryUsage().heapUsed
  for (let i = 0; i < 10; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    gc()
    const now = process.memoryUsage().heapUsed
    const shrank = heap - now
    heap = now
    if (shrank < 512 * 1024) break
  }
  return heap
}

/** `global.gc`, turned on at run time when node was started without --expose-gc; undefined if that fails. */
function exposeGc (): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc
  if (typeof g === 'function') return g
  try {
    setFlagsFromString('--expose-gc')
    return runInNewContext('gc') as () => void
  } catch {
    return undefined
  }
}
