/**
 * Single-host figures: what one dfdaemon gives and costs on one machine with no network in the
 * way (loopback, no cap: software throughput). One layer is fetched with curl (into /dev/shm:
 * MB/s and time to first byte) and as an image with skopeo (MB/s), straight from the origin and
 * through a dfdaemon: cold (fresh supernode and daemon: origin → supernode → daemon → client),
 * warm (the daemon's own store), supernode warm (a fresh daemon; the supernode, restarted on its
 * store, holds the blob), and a fresh daemon just after another one took the blob from the
 * supernode and left (super-seeding still remembers that copy). Each path runs `repeats` times,
 * interleaved, and the median is reported; the digest of every copy is checked after its clock
 * stopped.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { access, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import type { Cleanup } from './cleanup.js'
import { median } from './figures.js'
import { loopbackTopology } from './hosts.js'
import { prepareImages, startOrigin, type PreparedImage } from './origin.js'
import { busyShare, hostGet, machineJiffies, metricSum, waitHttp, type Proc } from './proc.js'
import type { SingleHostOptions } from './scenarios.js'
import { launchDaemonOn, startSupernodeOn } from './systems/damselfly.js'
import { skopeoPull, type ScenarioContext } from './systems/system.js'

const run = promisify(execFile)
const CURL_TIMEOUT_SEC = 600

export type SinglePath = 'origin' | 'dfdaemon-cold' | 'dfdaemon-warm' | 'dfdaemon-supernode-warm' | 'dfdaemon-after-other'

export interface SingleRun {
  /** curl: its time_total; skopeo: the whole copy. */
  seconds: number
  /** curl only: time_starttransfer. */
  ttfbSec?: number
  bytes: number
  /** sha256 of what arrived equals the digest. */
  digestOk: boolean
  /** Requests the daemon answered from its own store during this run (mirror paths). */
  localHits?: number
  /** Piece requests the supernode refused during this run so daemons would trade among themselves (mirror paths). */
  superSeedRefusals?: number
}

export interface SingleRow {
  client: 'curl' | 'skopeo'
  path: SinglePath
  runs: SingleRun[]
  failures: number
  error?: string
  /** Medians over the completed runs; MB = 10^6 bytes. */
  seconds: number
  mbps: number
  ttfbMs: number | null
  /** Median time to first byte less that of curl straight from the origin. */
  addedTtfbMs: number | null
}

export interface SingleHostResult {
  blobBytes: number
  /** What skopeo moves: the layer and the config. */
  imageBytes: number
  digest: string
  repeats: number
  /** Where curl wrote the bytes. */
  sink: string
  rows: SingleRow[]
  /** Share of the machine's cores busy (anyone's work) over the whole part, and the load as it started. */
  machineBusy: number
  loadAtStart: number
}

type Log = (line: string) => void

/** Runs every path `repeats` times; a failed run is counted in its row, the others go on. */
export async function runSingleHost (opts: SingleHostOptions, workDir: string, cleanup: Cleanup, keep: boolean, log: Log): Promise<SingleHostResult> {
  const dir = join(workDir, 'single')
  await mkdir(dir, { recursive: true })
  const storage = join(dir, 'origin-storage')
  const mib = Math.round(opts.blobBytes / (1 << 20))
  log(`single host: pushing one ${mib} MiB layer to the origin's storage`)
  const [image] = await prepareImages([{ name: `single-${mib}MiB`, layers: 1, layerBytes: opts.blobBytes }], storage, dir, cleanup)
  const layer = image.blobs[image.blobs.length - 1]
  const sink = await sinkDir(dir, cleanup)
  const topo = loopbackTopology(1)
  const origin = await startOrigin(topo.origin, storage, dir, 'origin-single', cleanup)
  const ctx: ScenarioContext = { topo, clients: topo.clients, origin, image, dir, cleanup, pullTimeoutSec: CURL_TIMEOUT_SEC }
  const rows = new Map<string, SingleRow>()
  const row = (client: SingleRow['client'], path: SinglePath): SingleRow => {
    const key = `${client} ${path}`
    let r = rows.get(key)
    if (r === undefined) {
      r = { client, path, runs: [], failures: 0, seconds: NaN, mbps: NaN, ttfbMs: null, addedTtfbMs: null }
      rows.set(key, r)
    }
    return r
  }
  const measure = async (client: SingleRow['client'], path: SinglePath, fn: () => Promise<SingleRun>): Promise<void> => {
    const r = row(client, path)
    try {
      const one = await fn()
      if (!one.digestOk) throw new Error(`${client} ${path}: digest mismatch`)
      r.runs.push(one)
    } catch (err) {
      r.failures++
      r.error ??= String((err as Error)?.message ?? err).slice(0, 2000)
    }
  }
  const blobPath = `/v2/${image.repository}/blobs/${layer.digest}`
  const loadAtStart = loadavg()[0]
  const j0 = await machineJiffies()
  try {
    for (let rep = 1; rep <= opts.repeats; rep++) {
      await measure('curl', 'origin', async () => await curlBlob(`${origin.url}${blobPath}`, sink, layer))
      await measure('skopeo', 'origin', async () => await skopeoImage(ctx, origin.hostPort, join(dir, `pull-${rep}`), `skopeo-origin-${rep}`, image))

      // curl: cold; warm (same daemon); a fresh daemon at once (super-seeding remembers the first); a fresh daemon against the restarted supernode
      await withDamselfly(ctx, `r${rep}-curl`, keep, async (df) => {
        const curl = async (): Promise<SingleRun> => await counted(ctx, df, async () => await curlBlob(`http://${df.mirror()}${blobPath}`, sink, layer))
        await measure('curl', 'dfdaemon-cold', curl)
        await measure('curl', 'dfdaemon-warm', curl)
        await df.freshDaemon()
        await measure('curl', 'dfdaemon-after-other', curl)
        await df.restartSupernode()
        await measure('curl', 'dfdaemon-supernode-warm', curl)
      })
      await withDamselfly(ctx, `r${rep}-skopeo`, keep, async (df) => {
        const skopeo = async (name: string): Promise<SingleRun> => await counted(ctx, df, async () => await skopeoImage(ctx, df.mirror(), join(dir, `pull-${rep}`), name, image))
        await measure('skopeo', 'dfdaemon-cold', async () => await skopeo(`skopeo-cold-${rep}`))
        await measure('skopeo', 'dfdaemon-warm', async () => await skopeo(`skopeo-warm-${rep}`))
      })
      log(`single host: run ${rep} of ${opts.repeats} done`)
    }
  } finally {
    await origin.stop()
  }
  const j1 = await machineJiffies()
  const order: Array<[SingleRow['client'], SinglePath]> = [
    ['curl', 'origin'], ['curl', 'dfdaemon-cold'], ['curl', 'dfdaemon-warm'], ['curl', 'dfdaemon-supernode-warm'], ['curl', 'dfdaemon-after-other'],
    ['skopeo', 'origin'], ['skopeo', 'dfdaemon-cold'], ['skopeo', 'dfdaemon-warm']
  ]
  const out = order.map(([c, p]) => row(c, p))
  for (const r of out) summarizeRow(r)
  const direct = row('curl', 'origin').ttfbMs
  for (const r of out) r.addedTtfbMs = r.ttfbMs === null || direct === null || r.path === 'origin' ? null : r.ttfbMs - direct
  for (const r of out) {
    const ttfb = r.ttfbMs === null ? '' : `, first byte ${r.ttfbMs.toFixed(1)} ms`
    log(`single host: ${r.client} ${r.path}: ${r.mbps.toFixed(0)} MB/s${ttfb}${r.failures > 0 ? `, ${r.failures} FAILED: ${r.error}` : ''}`)
  }
  if (!keep) await rm(dir, { recursive: true, force: true })
  await rm(sink, { recursive: true, force: true })
  return {
    blobBytes: layer.size,
    imageBytes: image.bytes,
    digest: layer.digest,
    repeats: opts.repeats,
    sink: sink.startsWith('/dev/shm') ? '/dev/shm (tmpfs)' : 'the work dir (no /dev/shm)',
    rows: out,
    machineBusy: busyShare(j0, j1),
    loadAtStart
  }
}

function summarizeRow (r: SingleRow): void {
  if (r.runs.length === 0) return
  r.seconds = median(r.runs.map((x) => x.seconds))
  r.mbps = median(r.runs.map((x) => x.bytes / x.seconds / 1e6))
  const ttfb = r.runs.flatMap((x) => x.ttfbSec === undefined ? [] : [x.ttfbSec])
  r.ttfbMs = ttfb.length === 0 ? null : 1000 * median(ttfb)
}

/** A supernode and a dfdaemon on this host, replaceable between runs. */
interface Damselfly {
  /** host:port of the current daemon's mirror. */
  mirror: () => string
  supernodeUrl: () => string
  /** Replace the daemon by a fresh one (empty store). */
  freshDaemon: () => Promise<void>
  /** Restart the supernode on the same store (what it held in memory is gone), then a fresh daemon. */
  restartSupernode: () => Promise<void>
}

/** A fresh supernode and dfdaemon (new stores) for `fn`; both stopped and their stores removed afterwards. */
async function withDamselfly (ctx: ScenarioContext, tag: string, keep: boolean, fn: (df: Damselfly) => Promise<void>): Promise<void> {
  const names: string[] = []
  let supernode: { proc: Proc, url: string } | undefined
  let daemon: { proc: Proc, mirror: string } | undefined
  let n = 0
  const startSupernode = async (): Promise<void> => {
    // the same name is the same data dir: a restart keeps the store
    supernode = await startSupernodeOn(ctx.topo.server, ctx.dir, `supernode-${tag}`, [ctx.origin.hostPort], ctx.cleanup)
  }
  const startDaemon = async (): Promise<void> => {
    const name = `dfdaemon-${tag}-${++n}`
    names.push(name)
    const d = await launchDaemonOn(ctx.clients[0], ctx.dir, name, supernode!.url, ctx.origin.url, ctx.origin.hostPort, ctx.cleanup)
    daemon = d
    await waitHttp(d.proc, `http://${d.mirror}/healthz`)
  }
  try {
    names.push(`supernode-${tag}`)
    await startSupernode()
    await startDaemon()
    await fn({
      mirror: () => daemon!.mirror,
      supernodeUrl: () => supernode!.url,
      freshDaemon: async () => {
        await daemon?.proc.stop()
        await startDaemon()
      },
      restartSupernode: async () => {
        await daemon?.proc.stop()
        await supernode?.proc.stop()
        await startSupernode()
        await startDaemon()
      }
    })
  } finally {
    await daemon?.proc.stop()
    await supernode?.proc.stop()
    if (!keep) for (const name of names) await rm(join(ctx.dir, name), { recursive: true, force: true })
  }
}

/** Run `fn` and note the daemon's local hits and the supernode's super-seeding refusals meanwhile. */
async function counted (ctx: ScenarioContext, df: Damselfly, fn: () => Promise<SingleRun>): Promise<SingleRun> {
  const metric = async (url: string, name: string): Promise<number> => {
    const text = await hostGet(ctx.clients[0], `${url}/metrics`)
    if (text === undefined) throw new Error(`${url}/metrics did not answer`)
    return metricSum(text, name)
  }
  const hits = async (): Promise<number> => await metric(`http://${df.mirror()}`, 'damselfly_dfdaemon_local_hits_total')
  const refusals = async (): Promise<number> => await metric(df.supernodeUrl(), 'damselfly_supernode_superseed_refusals_total')
  const [h0, r0] = [await hits(), await refusals()]
  const r = await fn()
  return { ...r, localHits: await hits() - h0, superSeedRefusals: await refusals() - r0 }
}

/** GET one blob with curl into `sink`; its own clock (time_total, time_starttransfer). */
async function curlBlob (url: string, sink: string, blob: { digest: string, size: number }): Promise<SingleRun> {
  const file = join(sink, blob.digest.slice(7))
  try {
    const { stdout } = await run('curl', ['-sS', '-f', '--max-time', String(CURL_TIMEOUT_SEC), '-o', file,
      '-w', '%{size_download} %{time_starttransfer} %{time_total}', url], { timeout: (CURL_TIMEOUT_SEC + 10) * 1000 })
    const [bytes, ttfb, total] = stdout.trim().split(' ').map(Number)
    if (bytes !== blob.size) throw new Error(`curl ${url}: ${bytes} bytes, expected ${blob.size}`)
    return { seconds: total, ttfbSec: ttfb, bytes, digestOk: await sha256File(file) === blob.digest }
  } finally {
    await rm(file, { force: true })
  }
}

/** skopeo copy the image into `dest` (an OCI layout), timed from the bench; checks the layer's digest itself too. */
async function skopeoImage (ctx: ScenarioContext, registry: string, dest: string, name: string, image: PreparedImage): Promise<SingleRun> {
  await rm(dest, { recursive: true, force: true })
  try {
    const t0 = performance.now()
    await skopeoPull(ctx, ctx.clients[0], registry, dest, name)
    const seconds = (performance.now() - t0) / 1000
    let ok = true
    for (const b of image.blobs) ok &&= await sha256File(join(dest, 'blobs', 'sha256', b.digest.slice(7))) === b.digest
    return { seconds, bytes: image.bytes, digestOk: ok }
  } finally {
    await rm(dest, { recursive: true, force: true })
  }
}

async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return `sha256:${hash.digest('hex')}`
}

/** A scratch dir in /dev/shm (so curl's writes cost no disk), else in `dir`. */
async function sinkDir (dir: string, cleanup: Cleanup): Promise<string> {
  const base = await access('/dev/shm').then(() => '/dev/shm', () => dir)
  const sink = await mkdtemp(join(base, 'damselfly-bench-sink-'))
  cleanup.dir(sink)
  return sink
}
