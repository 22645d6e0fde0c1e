/**
 * What a bench run measures: which parts; for the swarm, which images, how many hosts, which
 * systems, on which network; for one host, the blob size; for the tracker, how many peers; for
 * the transport's cost, how many bytes.
 */
import type { ClientDest } from './client-dest.js'

export type SystemName = 'damselfly' | 'direct' | 'nginx' | 'bittorrent'
export const SYSTEMS: SystemName[] = ['damselfly', 'direct', 'nginx', 'bittorrent']

/**
 * swarm: N hosts at once; single: one host's throughput and time to first byte; tracker: announces
 * at scale; cost: CPU per GiB through each layer of the transport.
 */
export type BenchPart = 'swarm' | 'single' | 'tracker' | 'cost'
export const PARTS: BenchPart[] = ['swarm', 'single', 'tracker', 'cost']

export interface SingleHostOptions {
  /** Size of the one layer fetched. */
  blobBytes: number
  /** Runs of each path; the median is reported. */
  repeats: number
}

export interface TrackerScaleOptions {
  /** Simulated peers announcing to the tracker in-process (each its own peer id). */
  peers: number
  /** Distinct blobs they announce. */
  blobs: number
  /** Blobs each peer holds whole (announced seeding); each then announces one more while downloading it. */
  blobsPerPeer: number
  /** Real libp2p nodes announcing to a real supernode process over TCP. */
  wireNodes: number
  /** Announces of each kind per node over the wire. */
  wireRounds: number
}

export interface TransportCostOptions {
  /** Bytes moved through each path per run. */
  bytes: number
  /** Runs of each path, interleaved; the median is reported. */
  repeats: number
}

export interface ImageSpec { name: string, layers: number, layerBytes: number }

export interface BenchOptions {
  parts: BenchPart[]
  mode: 'netns' | 'loopback'
  /** Per-host cap, both directions (netns only), e.g. `100mbit`. */
  rate: string
  /** TCP congestion control for every emulated host (netns only); the kernel's default when unset. */
  tcpCc?: string
  /** Swarm on namespaces: one CPU group of equal weight per host (see cpu-groups.ts). */
  cpuGroups?: boolean
  /** Swarm: where the clients write what they pull (see client-dest.ts); memory on namespaces, disk on loopback unless given. */
  clientDest: ClientDest
  hostCounts: number[]
  images: ImageSpec[]
  systems: SystemName[]
  /** Where results.json, results.md and results.svg go. */
  outDir: string
  /** A label for the machine, printed with the table. */
  label: string
  /** Per pull, seconds, before it counts as failed. */
  pullTimeoutSec: number
  single: SingleHostOptions
  tracker: TrackerScaleOptions
  cost: TransportCostOptions
  /** Keep the work dir (logs of every process) instead of removing it. */
  keep?: boolean
  /** Swarm: after a system starts, wait up to this long for the machine to be quiet before the pull (0: pull at once). */
  settleSec: number
  /** Swarm: MiB of a one-layer image every host pulls through a freshly started system before the measured pull (0: none). */
  warmupMiB: number
}

const MiB = 1 << 20

export const QUICK_IMAGES: ImageSpec[] = [{ name: '1x128MiB', layers: 1, layerBytes: 128 * MiB }]
export const FULL_IMAGES: ImageSpec[] = [
  { name: '1x256MiB', layers: 1, layerBytes: 256 * MiB },
  { name: '8x32MiB', layers: 8, layerBytes: 32 * MiB },
  { name: '50x1MiB', layers: 50, layerBytes: MiB }
]
/** Swarm: the longest wait, after a system starts, for the machine to be quiet before the pull. */
export const DEFAULT_SETTLE_SEC = 10
/** Swarm: the warm-up image's one layer, MiB. */
export const DEFAULT_WARMUP_MIB = 32

export const SMOKE_IMAGES: ImageSpec[] = [{ name: '2x2MiB', layers: 2, layerBytes: 2 * MiB }]

export const FULL_SINGLE: SingleHostOptions = { blobBytes: 256 * MiB, repeats: 3 }
export const QUICK_SINGLE: SingleHostOptions = { blobBytes: 64 * MiB, repeats: 3 }
export const SMOKE_SINGLE: SingleHostOptions = { blobBytes: 4 * MiB, repeats: 1 }
export const FULL_TRACKER: TrackerScaleOptions = { peers: 10_000, blobs: 1_000, blobsPerPeer: 8, wireNodes: 100, wireRounds: 20 }
export const QUICK_TRACKER: TrackerScaleOptions = { peers: 10_000, blobs: 1_000, blobsPerPeer: 8, wireNodes: 50, wireRounds: 10 }
export const SMOKE_TRACKER: TrackerScaleOptions = { peers: 200, blobs: 20, blobsPerPeer: 4, wireNodes: 4, wireRounds: 2 }
export const FULL_COST: TransportCostOptions = { bytes: 1024 * MiB, repeats: 3 }
export const QUICK_COST: TransportCostOptions = { bytes: 256 * MiB, repeats: 3 }
export const SMOKE_COST: TransportCostOptions = { bytes: 8 * MiB, repeats: 1 }

export const USAGE = `usage: npm run bench -- [--quick] [--only swarm,single,tracker,cost] [--out DIR] [--label TEXT] [--keep]
                          [--hosts 1,2,4] [--systems damselfly,direct,nginx,bittorrent]
                          [--images 1x128MiB,8x32MiB] [--rate 100mbit] [--tcp-cc reno] [--cpu-groups] [--loopback]
                          [--client-dest memory|disk]
                          [--settle SECONDS] [--warmup MiB]
                          [--single-size MiB] [--repeats N]
                          [--tracker-peers N] [--tracker-blobs N] [--tracker-blobs-per-peer N] [--tracker-nodes N]
  --only      the parts to run (default: all four):
                swarm    N hosts pull one image at once: damselfly, direct, nginx, BitTorrent;
                         on namespaces also where the time went (each host's link counters)
                single   one dfdaemon on loopback, cold and warm, against curl and skopeo
                         straight from the origin: MB/s and time to first byte
                tracker  the tracker under announces from many peers: announces/s, latency, memory
                cost     CPU seconds per GiB through plain TCP, a libp2p stream, damselfly's piece
                         exchange and sha256, on loopback in the bench's process
  --quick     swarm: N = 1,2,4,8 and one 128 MiB layer; single: 64 MiB; tracker: 50 wire nodes;
              cost: 256 MiB (a few minutes in all)
  (default)   swarm: N = 1,2,4,8,16 and images 1x256MiB, 8x32MiB, 50x1MiB; single: 256 MiB, 3 runs
              of each; tracker: 10000 peers over 1000 blobs in-process, 100 nodes over the wire;
              cost: 1 GiB, 3 runs of each
  --images    image specs COUNTxSIZE (MiB), e.g. 4x16MiB
  --tcp-cc    swarm: TCP congestion control of every emulated host (default: the kernel's, which
              a namespace inherits); a namespace may use only those the host allows
              (net.ipv4.tcp_allowed_congestion_control)
  --cpu-groups  swarm: every emulated host's processes share one CPU group (cgroup) of equal
              weight, so under contention each host gets an equal share of the cores, as hosts
              with cores of their own would, instead of each process competing on its own
  --client-dest  swarm: where every client writes what it pulls, for every system alike: memory
              (a tmpfs in /dev/shm; the default on namespaces) or disk (the work dir; the default
              with --loopback). The emulated hosts share one disk, and clients sync each layer as
              they finish, so on disk N hosts finishing together wait on N images' flushes, which
              real hosts, each with its own disk, do not
  --settle    swarm: once a system has started, sync and wait until the machine is under 20 %
              busy over half a second, at most this long (default 10; 0 pulls at once)
  --warmup    swarm: once a system has started, every host first pulls an unrelated image of one
              layer this big through it, as a long-running daemon or cache has served pulls
              before (default 32; 0 measures freshly started processes); its bytes, CPU and
              origin traffic are left out of the figures
  --loopback  swarm: no namespaces and no cap, every host on 127.0.0.1 (what the smoke test runs)
  --keep      keep the work dir with every process's log (printed at the end)
The swarm part runs as root (namespaces, tc) unless --loopback; the others need no root.
Writes results.json, results.md (and results.svg with the swarm) to --out.`

function imageOf (s: string): ImageSpec {
  const m = /^([1-9]\d{0,3})x([1-9]\d{0,4})MiB$/.exec(s)
  if (m === null) throw new Error(`image spec must look like 8x32MiB (1 to 9999 layers of 1 to 99999 MiB), got ${s}\n${USAGE}`)
  return { name: s, layers: Number(m[1]), layerBytes: Number(m[2]) * MiB }
}

/** Parse the bench's command line; throws with the usage on a bad flag. */
export function parseArgs (argv: string[], defaultOut: string): BenchOptions {
  const quick = argv.includes('--quick')
  const opts: BenchOptions = {
    parts: [...PARTS],
    mode: argv.includes('--loopback') ? 'loopback' : 'netns',
    rate: '100mbit',
    hostCounts: quick ? [1, 2, 4, 8] : [1, 2, 4, 8, 16],
    images: quick ? QUICK_IMAGES : FULL_IMAGES,
    systems: [...SYSTEMS],
    outDir: defaultOut,
    label: '',
    pullTimeoutSec: 900,
    settleSec: DEFAULT_SETTLE_SEC,
    warmupMiB: DEFAULT_WARMUP_MIB,
    single: { ...(quick ? QUICK_SINGLE : FULL_SINGLE) },
    tracker: { ...(quick ? QUICK_TRACKER : FULL_TRACKER) },
    cost: { ...(quick ? QUICK_COST : FULL_COST) },
    clientDest: argv.includes('--loopback') ? 'disk' : 'memory'
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`)
      return v
    }
    if (a === '--quick' || a === '--loopback') continue
    else if (a === '--keep') opts.keep = true
    else if (a === '--cpu-groups') opts.cpuGroups = true
    else if (a === '--hosts') opts.hostCounts = value().split(',').map(Number)
    else if (a === '--systems') opts.systems = value().split(',') as SystemName[]
    else if (a === '--images') opts.images = value().split(',').map(imageOf)
    else if (a === '--rate') opts.rate = value()
    else if (a === '--tcp-cc') opts.tcpCc = value()
    else if (a === '--client-dest') opts.clientDest = clientDestOf(value())
    else if (a === '--out') opts.outDir = value()
    else if (a === '--label') opts.label = value()
    else if (a === '--only') opts.parts = value().split(',') as BenchPart[]
    else if (a === '--settle') opts.settleSec = count(a, value(), 0, 60)
    else if (a === '--warmup') opts.warmupMiB = count(a, value(), 0, 1024)
    else if (a === '--single-size') opts.single.blobBytes = count(a, value(), 1, 4096) * MiB
    else if (a === '--repeats') opts.single.repeats = count(a, value(), 1, 20)
    else if (a === '--tracker-peers') opts.tracker.peers = count(a, value(), 1, 100_000)
    else if (a === '--tracker-blobs') opts.tracker.blobs = count(a, value(), 2, 100_000)
    else if (a === '--tracker-blobs-per-peer') opts.tracker.blobsPerPeer = count(a, value(), 1, 255)
    else if (a === '--tracker-nodes') opts.tracker.wireNodes = count(a, value(), 1, 250)
    else throw new Error(`unknown argument ${a}\n${USAGE}`)
  }
  if (opts.hostCounts.some((n) => !Number.isInteger(n) || n < 1 || n > 200)) throw new Error(`--hosts wants counts from 1 to 200\n${USAGE}`)
  if (opts.cpuGroups === true && opts.mode === 'loopback') throw new Error(`--cpu-groups is for the emulated hosts, not --loopback\n${USAGE}`)
  if (opts.tcpCc !== undefined && !/^[a-z0-9_]{1,16}$/.test(opts.tcpCc)) throw new Error(`--tcp-cc wants an algorithm name such as reno or cubic\n${USAGE}`)
  const bad = opts.systems.filter((s) => !SYSTEMS.includes(s))
  if (bad.length > 0) throw new Error(`unknown system ${bad.join(', ')}\n${USAGE}`)
  const badParts = opts.parts.filter((p) => !PARTS.includes(p))
  if (badParts.length > 0 || opts.parts.length === 0) throw new Error(`--only wants some of ${PARTS.join(', ')}\n${USAGE}`)
  if (opts.tracker.blobsPerPeer >= opts.tracker.blobs) throw new Error(`--tracker-blobs-per-peer must be below --tracker-blobs (each peer downloads one more)\n${USAGE}`)
  return opts
}

function clientDestOf (v: string): ClientDest {
  if (v === 'memory' || v === 'disk') return v
  throw new Error(`--client-dest wants memory or disk\n${USAGE}`)
}

/** An integer flag value in [min, max]. */
function count (flag: string, s: string, min: number, max: number): number {
  const n = Number(s)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} wants a whole number from ${min} to ${max}, got ${s}\n${USAGE}`)
  return n
}
