/**
 * The tracker's workload, shared by the in-process and the over-the-wire runs: which blobs each
 * peer holds and the two announces a real daemon sends — a seeder's (every blob it holds whole,
 * no peers wanted, dfdaemon/swarm/seeder.ts) and a downloader's (one blob, its bitfield, peers
 * wanted, dfdaemon/swarm/blob-download.ts) — and a runner that times announces in lanes.
 */
import { createHash } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { Bitfield } from '../../shared/pieces/bitfield.js'
import type { TrackerAnnounce } from '../../shared/p2p/tracker-messages.js'
import { median, percentile } from './figures.js'
import { seededRandom } from '../helpers/prng.js'

/** No phase runs longer than this; what is left is not sent and the phase is marked truncated. */
export const PHASE_DEADLINE_MS = 120_000

/** Pieces of every simulated blob, and how many a downloader holds when it announces. */
const PIECES = 128
export const HELD_PIECES = 64

export interface Workload {
  digests: string[]
  /** Per peer: the blobs it seeds, then the one it downloads (indexes into `digests`). */
  seeds: number[][]
  downloads: number[]
}

/** Each peer seeds `perPeer` distinct blobs and downloads one more, all uniformly at random (seeded, so runs compare). */
export function workload (peers: number, blobs: number, perPeer: number, seed = 1): Workload {
  const random = seededRandom(seed)
  const digests = Array.from({ length: blobs }, (_, j) => `sha256:${createHash('sha256').update(`damselfly-bench-blob-${j}`).digest('hex')}`)
  const seeds: number[][] = []
  const downloads: number[] = []
  for (let i = 0; i < peers; i++) {
    const picked = new Set<number>()
    while (picked.size < perPeer + 1) picked.add(Math.floor(random() * blobs))
    const all = [...picked]
    downloads.push(all.pop()!)
    seeds.push(all)
  }
  return { digests, seeds, downloads }
}

const HALF = ((): string => {
  const b = new Bitfield(PIECES)
  for (let i = 0; i < HELD_PIECES; i++) b.set(i)
  return b.toBase64()
})()

export function seedAnnounce (addrs: string[], digests: string[]): TrackerAnnounce {
  return { addrs, blobs: digests.map((digest) => ({ digest, pieces: PIECES, complete: true, wantPeers: false })) }
}

export function downloadAnnounce (addrs: string[], digest: string): TrackerAnnounce {
  return { addrs, blobs: [{ digest, pieces: PIECES, have: HALF, complete: false, wantPeers: true }] }
}

export interface PhaseFigures {
  announces: number
  /** (blob, peer) pairs those announces carried. */
  blobEntries: number
  failures: number
  error?: string
  /** Stopped at the deadline before every announce was sent. */
  truncated: boolean
  /** Wall clock of the phase. */
  wallSec: number
  /** Announces per second: over the wall clock (wire), or over the summed announce times (in-process, one at a time). */
  announcesPerSec: number
  entriesPerSec: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** Peers handed out per wanted blob, median (0 for seed announces). */
  peersPerReply: number
}

/** What one announce reports: its own time, the blob entries it carried, the peers it got back. */
export interface AnnounceOutcome { ms: number, entries: number, peers: number }

/**
 * `lanes` run at once, each sending its `perLane` announces one after another (a daemon has one
 * announce in flight); no lane starts another after `deadlineMs`. `throughput` says what the
 * announces per second are taken over.
 */
export async function runPhase (lanes: number, perLane: number, deadlineMs: number, throughput: 'wall' | 'busy', one: (lane: number, j: number) => Promise<AnnounceOutcome>): Promise<PhaseFigures> {
  const ms: number[] = []
  const peers: number[] = []
  let entries = 0
  let failures = 0
  let error: string | undefined
  let truncated = false
  const t0 = performance.now()
  await Promise.all(Array.from({ length: lanes }, async (_, lane) => {
    for (let j = 0; j < perLane; j++) {
      if (performance.now() - t0 > deadlineMs) { truncated = true; return }
      try {
        const o = await one(lane, j)
        ms.push(o.ms)
        entries += o.entries
        if (o.peers >= 0) peers.push(o.peers)
      } catch (err) {
        failures++
        error ??= `${(err as Error)?.name ?? 'Error'}: ${String((err as Error)?.message ?? err).slice(0, 500)}`
      }
    }
  }))
  const wallSec = (performance.now() - t0) / 1000
  const sorted = [...ms].sort((a, b) => a - b)
  const over = throughput === 'wall' ? wallSec : ms.reduce((a, b) => a + b, 0) / 1000
  return {
    announces: ms.length,
    blobEntries: entries,
    failures,
    ...(error !== undefined ? { error } : {}),
    truncated,
    wallSec,
    announcesPerSec: ms.length / over,
    entriesPerSec: entries / over,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1] : NaN,
    peersPerReply: peers.length === 0 ? 0 : median(peers)
  }
}

