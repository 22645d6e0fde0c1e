/** The figures of one system in one scenario, and the physical bound they are held against. */
import type { LinkFigures } from './links.js'
import type { ProcStats } from './proc.js'
import type { Settled } from './quiet.js'
import type { WarmedUp } from './warmup.js'
import type { SystemName } from './scenarios.js'

export interface ScenarioResult {
  system: SystemName
  image: string
  imageBytes: number
  layers: number
  hosts: number
  /** Per pulling host, seconds from the common start to a complete image (sorted). */
  times: number[]
  failures: number
  error?: string
  p50: number
  p95: number
  max: number
  /** Seconds; null on loopback (no cap, no bound). */
  bound: number | null
  p50Ratio: number | null
  maxRatio: number | null
  /** Everything the origin registry sent (blobs and manifests), and that over the image size. */
  originBytes: number
  originBlobGets: number
  originRatio: number
  bytesBySource?: Record<string, number>
  serverUploadBytes?: number
  /** Piece bytes received in full after the piece had come from elsewhere (endgame duplicates), all hosts together. */
  duplicateBytes?: number
  processes: ProcStats[]
  /** Sums and maxima over the processes, split by role (damselfly: dfdaemon vs supernode). */
  cpu: { clientsSec: number, serverSec: number }
  peakRss: { clientMaxMiB: number, serverMiB: number }
  /**
   * Seconds the processes' main threads were ready to run but waited for a core during the pulls
   * (see proc.ts): the median over the clients (daemons, aria2c), the sum over the server's
   * processes; null where the system has none (direct pulls).
   */
  runDelay: { clientP50Sec: number | null, serverSec: number | null }
  /** Share of all the machine's cores busy (anyone's work) while the hosts pulled; near 1 = CPU-bound. */
  machineBusy: number
  /** The 1-minute load average as the scenario started (what else was running shows here). */
  loadAtStart: number
  /** Waited after the system started for the machine to be quiet (see quiet.ts), and its busy share then. */
  settle: { waitedMs: number, busy: number | null }
  /** The warm-up pull every host made through the system before (see warmup.ts); null when none. */
  warmup: WarmedUp | null
  /** From the link counters (see links.ts), with the medians over the hosts; null on loopback. */
  links: (LinkFigures & { firstByteP50: number | null, downloadUseP50: number | null }) | null
}

/** Nearest-rank percentile of sorted values. */
export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

/** Nearest-rank median of values in any order; NaN if there are none. */
export function median (values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50)
}

/**
 * The larger of: one image through one host's link, and N images through the upload capacity
 * of every host there is (origin, server, N clients), each at `rateBps`.
 */
export function lowerBound (imageBytes: number, hosts: number, rateBps: number | undefined): number | null {
  if (rateBps === undefined) return null
  const bits = imageBytes * 8
  return Math.max(bits / rateBps, (hosts * bits) / ((hosts + 2) * rateBps))
}

export function summarize (input: {
  system: SystemName, image: string, imageBytes: number, layers: number, hosts: number, rateBps: number | undefined,
  times: number[], failures: number, error?: string, origin: { bytes: number, blobGets: number },
  bytesBySource?: Record<string, number>, serverUploadBytes?: number, duplicateBytes?: number, processes: ProcStats[], machineBusy: number, loadAtStart: number,
  settle: Settled, warmup?: WarmedUp, links?: LinkFigures
}): ScenarioResult {
  const times = [...input.times].sort((a, b) => a - b)
  const bound = lowerBound(input.imageBytes, input.hosts, input.rateBps)
  const p50 = percentile(times, 50)
  const max = times.length > 0 ? times[times.length - 1] : NaN
  const isClient = (name: string): boolean => /^(dfdaemon|aria2c)-\d+$/.test(name)
  const client = input.processes.filter((p) => isClient(p.name))
  const server = input.processes.filter((p) => !isClient(p.name))
  return {
    system: input.system,
    image: input.image,
    imageBytes: input.imageBytes,
    layers: input.layers,
    hosts: input.hosts,
    times,
    failures: input.failures,
    ...(input.error !== undefined ? { error: input.error } : {}),
    p50,
    p95: percentile(times, 95),
    max,
    bound,
    p50Ratio: bound === null ? null : p50 / bound,
    maxRatio: bound === null ? null : max / bound,
    originBytes: input.origin.bytes,
    originBlobGets: input.origin.blobGets,
    originRatio: input.origin.bytes / input.imageBytes,
    ...(input.bytesBySource !== undefined ? { bytesBySource: input.bytesBySource } : {}),
    ...(input.serverUploadBytes !== undefined ? { serverUploadBytes: input.serverUploadBytes } : {}),
    ...(input.duplicateBytes !== undefined ? { duplicateBytes: input.duplicateBytes } : {}),
    processes: input.processes,
    cpu: { clientsSec: client.reduce((n, p) => n + p.cpuSeconds, 0), serverSec: server.reduce((n, p) => n + p.cpuSeconds, 0) },
    peakRss: { clientMaxMiB: Math.max(0, ...client.map((p) => p.peakRssMiB)), serverMiB: server.reduce((n, p) => n + p.peakRssMiB, 0) },
    runDelay: {
      clientP50Sec: client.length === 0 ? null : median(client.map((p) => p.runDelaySeconds)),
      serverSec: server.length === 0 ? null : server.reduce((n, p) => n + p.runDelaySeconds, 0)
    },
    machineBusy: input.machineBusy,
    loadAtStart: input.loadAtStart,
    settle: { waitedMs: input.settle.waitedMs, busy: Number.isFinite(input.settle.busy) ? input.settle.busy : null },
    warmup: input.warmup ?? null,
    links: input.links === undefined ? null : { ...input.links, firstByteP50: knownMedian(input.links.firstByte), downloadUseP50: knownMedian(input.links.downloadUse) }
  }
}

/** The median of the values that are known; null if none is. */
function knownMedian (xs: Array<number | null>): number | null {
  const known = xs.filter((x): x is number => x !== null && Number.isFinite(x))
  return known.length === 0 ? null : median(known)
}
