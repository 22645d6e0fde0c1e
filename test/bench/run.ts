/**
 * One bench run. The swarm part: push the images, build the hosts, then for every image, every N
 * and every system start the system cold, let N hosts pull at the same moment, take the figures,
 * tear the system down. Then the single-host part (single-host.ts), the tracker part
 * (tracker-scale.ts) and the transport's cost (transport-cost.ts), each when asked for. The CLI
 * (main.ts) and the smoke test both come through here.
 */
import { execFileSync } from 'node:child_process'
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { basename, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { Cleanup } from './cleanup.js'
import { clientDestDir } from './client-dest.js'
import { busyShare, machineJiffies, procStats } from './proc.js'
import { summarize, type ScenarioResult } from './figures.js'
import { defaultCongestionControl, loopbackTopology, netnsTopology, type Topology } from './hosts.js'
import { LinkSampler, linkFigures, type LinkFigures } from './links.js'
import { prepareImages, startOrigin, type PreparedImage } from './origin.js'
import { costMarkdown, cpuLimitMarkdown, linksMarkdown, markdownTable, singleHostMarkdown, svgChart, trackerMarkdown } from './report.js'
import type { BenchOptions, SystemName } from './scenarios.js'
import { runSingleHost, type SingleHostResult } from './single-host.js'
import { startBittorrent } from './systems/bittorrent.js'
import { startDamselfly } from './systems/damselfly.js'
import { startDirect } from './systems/direct.js'
import { startNginx } from './systems/nginx.js'
import type { Collected, RunningSystem, ScenarioContext, SystemFactory } from './systems/system.js'
import { runTrackerScale, type TrackerScaleResult } from './tracker-scale.js'
import { runTransportCost, type TransportCostResult } from './transport-cost.js'
import { waitForQuiet, type Settled } from './quiet.js'
import { countersSince, warmUp, type WarmedUp } from './warmup.js'

/** How often the hosts' link counters are read through a pull (netns runs). */
const LINK_INTERVAL_MS = 50

const FACTORIES: Record<SystemName, SystemFactory> = { damselfly: startDamselfly, direct: startDirect, nginx: startNginx, bittorrent: startBittorrent }

/** Programs each part needs, and the Debian package that has each. */
const NEEDS: Record<string, Array<[string, string]>> = {
  base: [['docker-registry', 'docker-registry'], ['skopeo', 'skopeo'], ['curl', 'curl']],
  netns: [['ip', 'iproute2'], ['tc', 'iproute2'], ['nsenter', 'util-linux']],
  damselfly: [],
  direct: [],
  nginx: [['nginx', 'nginx']],
  bittorrent: [['aria2c', 'aria2'], ['mktorrent', 'mktorrent'], ['opentracker', 'opentracker']]
}

function missing (part: string): Array<[string, string]> {
  return NEEDS[part].filter(([bin]) => {
    try { execFileSync('sh', ['-c', `command -v ${bin} || test -x /usr/sbin/${bin}`], { stdio: 'ignore' }); return false } catch { return true }
  })
}

export interface Machine {
  cpu: string
  cores: number
  memGiB: number
  kernel: string
  node: string
  loadBefore: number[]
  loadAfter?: number[]
  date: string
  label: string
  /** TCP congestion control of the emulated hosts (netns only), and whether it is the kernel's default. */
  tcp?: string
  /** Whether each emulated host had a CPU group of its own (--cpu-groups). */
  cpuGroups?: boolean
}

export interface BenchRun {
  machine: Machine
  options: BenchOptions
  skipped: Array<{ system: SystemName, reason: string }>
  /** The swarm part's scenarios (empty when it did not run). */
  results: ScenarioResult[]
  singleHost?: SingleHostResult
  tracker?: TrackerScaleResult
  cost?: TransportCostResult
  /** The SVG chart is of the swarm part: written only when it ran. */
  files: { json: string, markdown: string, svg?: string }
  /** While the run is under way (and in the files of one that failed or was stopped): what it still lacked. */
  unfinished?: string
}

export type Log = (line: string) => void

/** Whether every blob of the image is in `dest` with its size (skopeo has checked the digests). */
async function complete (dest: string, image: PreparedImage): Promise<boolean> {
  // skopeo writes an OCI layout, DEST/blobs/sha256/<hex>; the torrent has them under DEST/image/<hex>
  for (const base of [join(dest, 'blobs', 'sha256'), join(dest, 'image')]) {
    let all = true
    for (const b of image.blobs) {
      const s = await stat(join(base, b.digest.slice(7))).catch(() => undefined)
      if (s?.size !== b.size) { all = false; break }
    }
    if (all) return true
  }
  return false
}

/** What every scenario of one swarm part shares. */
interface SwarmRun {
  opts: BenchOptions
  topo: Topology
  /** The origin registry's storage, with every image pushed. */
  storage: string
  warmupImage?: PreparedImage
  workDir: string
  /** Where the clients write what they pull (client-dest.ts): a directory per scenario, one per host in that. */
  pulls: string
  cleanup: Cleanup
  log: Log
}

async function runScenario (swarm: SwarmRun, image: PreparedImage, n: number, system: SystemName): Promise<ScenarioResult> {
  const { opts, topo, storage, warmupImage, workDir, pulls, cleanup, log } = swarm
  const dir = join(workDir, `${image.spec.name}-n${n}-${system}`)
  // this scenario's own directory in the clients' destination: a host's copy under it per pull
  const pullsHere = join(pulls, basename(dir))
  await mkdir(dir, { recursive: true })
  const origin = await startOrigin(topo.origin, storage, dir, 'origin', cleanup)
  let sys: RunningSystem | undefined
  const times: number[] = []
  let failures = 0
  let error: string | undefined
  let collected: Collected = { processes: [] }
  let originCount = { bytes: 0, blobGets: 0 }
  let machineBusy = NaN
  let loadAtStart = NaN
  let settled: Settled = { waitedMs: 0, busy: NaN }
  let warmed: WarmedUp | undefined
  let links: LinkFigures | undefined
  let sampler: LinkSampler | undefined
  try {
    const ctx: ScenarioContext = { topo, clients: topo.clients.slice(0, n), origin, image, dir, cleanup, pullTimeoutSec: opts.pullTimeoutSec }
    sys = await FACTORIES[system](ctx)
    const started = sys
    if (warmupImage !== undefined) warmed = await warmUp(sys, warmupImage, n, pullsHere)
    const before = warmed !== undefined ? await sys.collect() : undefined
    settled = await waitForQuiet(opts.settleSec * 1000)
    const atStart = new Map((await Promise.all((sys.procs?.() ?? []).map(async (p) => await procStats(p.name, p.pid)))).map((s) => [s.name, s]))
    loadAtStart = loadavg()[0]
    sampler = topo.links !== undefined ? new LinkSampler(topo.links, LINK_INTERVAL_MS, opts.pullTimeoutSec * 1000 + 10_000) : undefined
    await sampler?.start()
    const j0 = await machineJiffies()
    const t0 = performance.now()
    const outcomes = await Promise.allSettled(ctx.clients.map(async (_, i) => {
      const dest = join(pullsHere, `pull-${i + 1}`)
      await started.pull(i, dest)
      const t = (performance.now() - t0) / 1000
      if (!await complete(dest, image)) throw new Error(`host ${i + 1}: the pulled image is incomplete`)
      await rm(dest, { recursive: true, force: true })
      return t
    }))
    const j1 = await machineJiffies()
    machineBusy = busyShare(j0, j1)
    if (sampler !== undefined && topo.rateBps !== undefined) {
      const pulling = ctx.clients.map((h, i) => ({ host: h.name, doneSec: outcomes[i].status === 'fulfilled' ? outcomes[i].value : undefined }))
      try {
        links = linkFigures(await sampler.stop(), t0, pulling, topo.origin.name, topo.rateBps)
      } catch (err) {
        // a diagnostic: the pulls' own figures stand without it
        log(`${image.spec.name} N=${n} ${system}: no link figures (${(err as Error).message})`)
      }
    }
    for (const o of outcomes) {
      if (o.status === 'fulfilled') times.push(o.value)
      else { failures++; error ??= String((o.reason as Error)?.message ?? o.reason).slice(0, 2000) }
    }
    collected = countersSince(await sys.collect(), before)
    // CPU and run delay of the pulls only: what each process had by the start is left out
    collected.processes = collected.processes.map((p) => {
      const start = atStart.get(p.name)
      return { ...p, cpuSeconds: Math.max(0, p.cpuSeconds - (start?.cpuSeconds ?? 0)), runDelaySeconds: Math.max(0, p.runDelaySeconds - (start?.runDelaySeconds ?? 0)) }
    })
  } catch (err) {
    failures = n - times.length
    error = String((err as Error)?.message ?? err).slice(0, 2000)
  } finally {
    sampler?.cancel()
    await sys?.stop().catch(() => undefined)
    const counted = await origin.stop(warmupImage?.repository)
    originCount = { bytes: counted.bytes, blobGets: counted.blobGets }
    if (opts.keep !== true) await rm(dir, { recursive: true, force: true })
  }
  const r = summarize({
    system, image: image.spec.name, imageBytes: image.bytes, layers: image.spec.layers, hosts: n, rateBps: topo.rateBps,
    times, failures, error, origin: originCount, bytesBySource: collected.bytesBySource, serverUploadBytes: collected.serverUploadBytes, duplicateBytes: collected.duplicateBytes, processes: collected.processes,
    machineBusy, loadAtStart, settle: settled, warmup: warmed, links
  })
  const ratio = r.maxRatio === null ? '' : ` (${r.p50Ratio?.toFixed(2)}× / ${r.maxRatio.toFixed(2)}× the bound)`
  log(`${image.spec.name} N=${n} ${system}: p50 ${r.p50.toFixed(1)} s, max ${r.max.toFixed(1)} s${ratio}, origin ${r.originRatio.toFixed(2)}× the image${r.duplicateBytes !== undefined ? `, duplicates ${(r.duplicateBytes / r.imageBytes).toFixed(2)}×` : ''}, CPU ${(100 * machineBusy).toFixed(0)} % busy${delayNote(r)}, load ${loadAtStart.toFixed(1)} at start${warmNote(warmed)}${settleNote(settled)}${failures > 0 ? `, ${failures} FAILED: ${error}` : ''}`)
  return r
}

function delayNote (r: ScenarioResult): string {
  const { clientP50Sec: c, serverSec: s } = r.runDelay
  if (c === null && s === null) return ''
  const parts = [...(c !== null ? [`${c.toFixed(2)} s per client (p50)`] : []), ...(s !== null ? [`${s.toFixed(2)} s the server`] : [])]
  return ` (main threads waited for a core ${parts.join(', ')})`
}

function warmNote (w: WarmedUp | undefined): string {
  return w === undefined ? '' : `, after a ${w.mib.toFixed(0)} MiB warm-up pull (${w.seconds.toFixed(1)} s)`
}

function settleNote (s: Settled): string {
  if (s.waitedMs === 0) return ''
  return `, pulled after ${(s.waitedMs / 1000).toFixed(1)} s of settling (${Number.isFinite(s.busy) ? `${(100 * s.busy).toFixed(0)} %` : '?'} busy then)`
}

export async function runBench (opts: BenchOptions, cleanup: Cleanup, log: Log): Promise<BenchRun> {
  const swarm = opts.parts.includes('swarm')
  const absent = [...(swarm || opts.parts.includes('single') ? missing('base') : []), ...(swarm && opts.mode === 'netns' ? missing('netns') : [])]
  if (absent.length > 0) throw new Error(`missing programs: ${absent.map(([b, p]) => `${b} (Debian package ${p})`).join(', ')}`)
  const skipped: BenchRun['skipped'] = []
  const systems = !swarm ? [] : opts.systems.filter((s) => {
    const m = missing(s)
    if (m.length === 0) return true
    const reason = `needs ${m.map(([b, p]) => `${b} (apt-get install ${p})`).join(', ')}`
    log(`skipping ${s}: ${reason}`)
    skipped.push({ system: s, reason })
    return false
  })
  const machine: Machine = {
    cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), kernel: release(),
    node: process.version, loadBefore: loadavg().map((x) => Number(x.toFixed(2))), date: new Date().toISOString(), label: opts.label,
    ...(swarm && opts.mode === 'netns' ? { tcp: opts.tcpCc ?? `${await defaultCongestionControl()} (the kernel's default)`, cpuGroups: opts.cpuGroups === true } : {})
  }
  const workDir = await mkdtemp(join(tmpdir(), 'damselfly-bench-'))
  if (opts.keep === true) log(`keeping ${workDir}`)
  else cleanup.dir(workDir)
  await chmod(workDir, 0o755) // opentracker reads its whitelist here after dropping to nobody
  await mkdir(opts.outDir, { recursive: true })
  const files = { json: join(opts.outDir, 'results.json'), markdown: join(opts.outDir, 'results.md'), ...(swarm ? { svg: join(opts.outDir, 'results.svg') } : {}) }
  const run: BenchRun = { machine, options: opts, skipped, results: [], files }
  // written after every scenario and part, so a long run that fails or is stopped keeps what it measured
  const scenarios = swarm ? opts.images.length * opts.hostCounts.length * systems.length : 0
  const save = async (): Promise<void> => {
    const pending = [
      ...(run.results.length < scenarios ? [`${scenarios - run.results.length} of ${scenarios} swarm scenarios`] : []),
      ...(opts.parts.includes('single') && run.singleHost === undefined ? ['the single-host part'] : []),
      ...(opts.parts.includes('tracker') && run.tracker === undefined ? ['the tracker part'] : []),
      ...(opts.parts.includes('cost') && run.cost === undefined ? ['the transport cost part'] : [])
    ]
    run.unfinished = pending.length === 0 ? undefined : `Unfinished run, still to come: ${pending.join(', ')}`
    await writeResults(run)
  }
  log(`results go to ${opts.outDir} as they come`)
  if (swarm) await runSwarm(opts, systems, workDir, cleanup, log, async (r) => { run.results.push(r); await save() })
  if (opts.parts.includes('single')) { run.singleHost = await runSingleHost(opts.single, workDir, cleanup, opts.keep === true, log); await save() }
  if (opts.parts.includes('tracker')) { run.tracker = await runTrackerScale(opts.tracker, workDir, cleanup, log); await save() }
  if (opts.parts.includes('cost')) { run.cost = await runTransportCost(opts.cost, log); await save() }
  machine.loadAfter = loadavg().map((x) => Number(x.toFixed(2)))
  await writeResults(run)
  if (opts.keep !== true) await rm(workDir, { recursive: true, force: true })
  return run
}

/**
 * The Markdown sections of the parts that ran, in order (results.md has them all; the CLI prints
 * them without the link section, which only the files carry).
 */
export function markdownSections (run: BenchRun, withLinks = true): string[] {
  const { options: opts, results, singleHost, tracker, cost } = run
  return [
    ...(opts.parts.includes('swarm') ? [markdownTable(results), ...(withLinks ? [linksMarkdown(results)] : []), cpuLimitMarkdown(results)] : []),
    ...(singleHost !== undefined ? [singleHostMarkdown(singleHost)] : []),
    ...(tracker !== undefined ? [trackerMarkdown(tracker)] : []),
    ...(cost !== undefined ? [costMarkdown(cost, results)] : [])
  ].filter((section) => section !== '')
}

/** results.json, results.md and (with the swarm) results.svg, finished or not. */
async function writeResults (run: BenchRun): Promise<void> {
  const { machine, options: opts, results, files, unfinished } = run
  const swarm = opts.parts.includes('swarm')
  const where = `${machine.cores} × ${machine.cpu}, ${machine.memGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}`
  const links = swarm && opts.mode === 'netns' ? `${opts.rate} per host each way (tbf), TCP ${machine.tcp ?? ''}${machine.cpuGroups === true ? ', a CPU group of equal weight per host' : ''}` : 'loopback, no cap'
  const net = swarm ? `${links}, clients write to ${opts.clientDest}` : links
  const load = `load average ${machine.loadBefore[0]} before${machine.loadAfter !== undefined ? `, ${machine.loadAfter[0]} after` : ''}`
  const noTorrentWarmup = opts.systems.includes('bittorrent') ? ' (not BitTorrent: its clients start with each pull)' : ''
  const warm = !swarm ? '' : opts.warmupMiB > 0 ? `; every host pulled a ${opts.warmupMiB} MiB warm-up image through each system first${noTorrentWarmup}` : '; freshly started systems, no warm-up pull'
  const sections = markdownSections(run)
  await writeFile(files.json, JSON.stringify(run, null, 2) + '\n')
  await writeFile(files.markdown, `${unfinished !== undefined ? `**${unfinished}**\n\n` : ''}Bench ${machine.date} — ${where}; ${net}; ${load}${warm}${opts.label !== '' ? `; ${opts.label}` : ''}\n\n${sections.join('\n')}`)
  if (files.svg !== undefined) await writeFile(files.svg, svgChart(results, `damselfly bench, ${net}`))
}

/** The swarm part: every image × N × system, on the namespace network or on loopback. */
async function runSwarm (opts: BenchOptions, systems: SystemName[], workDir: string, cleanup: Cleanup, log: Log, done: (r: ScenarioResult) => Promise<void>): Promise<void> {
  const storage = join(workDir, 'origin-storage')
  const warmupSpec = opts.warmupMiB > 0 ? [{ name: 'warmup', layers: 1, layerBytes: opts.warmupMiB * 2 ** 20 }] : []
  log(`pushing ${[...opts.images, ...warmupSpec].map((i) => i.name).join(', ')} to the origin's storage`)
  const images = await prepareImages([...opts.images, ...warmupSpec], storage, workDir, cleanup)
  const warmupImage = warmupSpec.length > 0 ? images.pop() : undefined
  const maxN = Math.max(...opts.hostCounts)
  // every host's copy at once, with room for skopeo's temporary files
  const largest = Math.max(...[...images, ...(warmupImage !== undefined ? [warmupImage] : [])].map((i) => i.bytes))
  const pulls = await clientDestDir(opts.clientDest, workDir, maxN * largest * 1.1 + 64 * 2 ** 20, cleanup)
  const topo = opts.mode === 'netns' ? await netnsTopology(maxN, opts.rate, cleanup, opts.tcpCc, opts.cpuGroups === true) : loopbackTopology(maxN)
  log(opts.mode === 'netns'
    ? `hosts: origin ${topo.origin.addr}, server ${topo.server.addr}, clients ${topo.clients[0].addr}…${topo.clients[maxN - 1].addr}, ${opts.rate} each way`
    : `hosts: all on 127.0.0.1, no cap`)
  log(`clients write what they pull to ${pulls} (${opts.clientDest})`)
  try {
    for (const image of images) {
      for (const n of opts.hostCounts) {
        for (const system of systems) await done(await runScenario({ opts, topo, storage, warmupImage, workDir, pulls, cleanup, log }, image, n, system))
      }
    }
  } finally {
    topo.down()
  }
}
