/**
 * The results as Markdown — the swarm table, the single-host, tracker and transport cost
 * sections — and the swarm's SVG chart (completion time against N, a line per system).
 */
import type { ScenarioResult } from './figures.js'
import type { SingleHostResult, SinglePath } from './single-host.js'
import type { PhaseFigures } from './tracker-load.js'
import type { TrackerScaleResult } from './tracker-scale.js'
import type { TransportCostResult, TransportPath } from './transport-cost.js'

const f1 = (x: number | null | undefined): string => x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1)
const f2 = (x: number | null | undefined): string => x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(2)

export function markdownTable (results: ScenarioResult[]): string {
  const head = '| image | N | system | p50 s | p95 s | max s | bound s | p50/bound | max/bound | origin ÷ image | from peers | duplicates ÷ image | server sent ÷ image | CPU s clients / server | waiting for a core s client / server | peak RSS MiB client / server | machine CPU busy | load at start |'
  const rule = '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  const rows = results.map((r) => {
    const src = r.bytesBySource
    const received = src === undefined ? 0 : Object.values(src).reduce((a, b) => a + b, 0)
    const peers = src === undefined || received === 0 ? '–' : `${((100 * (src.peer ?? 0)) / received).toFixed(0)} %`
    const dups = r.duplicateBytes === undefined ? '–' : f2(r.duplicateBytes / r.imageBytes)
    const sent = r.serverUploadBytes === undefined ? '–' : f2(r.serverUploadBytes / r.imageBytes)
    const cpu = r.processes.length === 0 ? '–' : `${f1(r.cpu.clientsSec)} / ${f1(r.cpu.serverSec)}`
    const wait = r.processes.length === 0 ? '–' : `${f2(r.runDelay.clientP50Sec)} / ${f2(r.runDelay.serverSec)}`
    const rss = r.processes.length === 0 ? '–' : `${r.peakRss.clientMaxMiB.toFixed(0)} / ${r.peakRss.serverMiB.toFixed(0)}`
    const failed = r.failures > 0 ? ` (${r.failures} failed)` : ''
    return `| ${r.image} | ${r.hosts} | ${r.system}${failed} | ${f1(r.p50)} | ${f1(r.p95)} | ${f1(r.max)} | ${f1(r.bound)} | ${f2(r.p50Ratio)} | ${f2(r.maxRatio)} | ${f2(r.originRatio)} | ${peers} | ${dups} | ${sent} | ${cpu} | ${wait} | ${rss} | ${Number.isFinite(r.machineBusy) ? `${(100 * r.machineBusy).toFixed(0)} %` : '–'} | ${f1(r.loadAtStart)} |`
  })
  return [head, rule, ...rows].join('\n') + '\n'
}

/**
 * Where the time went, for the runs with link counters (netns): the start (a host's first 64 KiB
 * received), how busy its link was from then on, and how long the slowest host still took once
 * the origin had sent its last bytes. Empty when no run has them.
 */
export function linksMarkdown (results: ScenarioResult[]): string {
  const withLinks = results.filter((r) => r.links !== null)
  if (withLinks.length === 0) return ''
  const head = '| image | N | system | first bytes s (p50) | link use after them (p50) | origin\'s last bytes s | slowest host after them s |'
  const rule = '| --- | ---: | --- | ---: | ---: | ---: | ---: |'
  const rows = withLinks.map((r) => {
    const l = r.links!
    const use = l.downloadUseP50 === null ? '–' : `${(100 * l.downloadUseP50).toFixed(0)} %`
    const tail = l.originDone === null ? '–' : f1(r.max - l.originDone)
    return `| ${r.image} | ${r.hosts} | ${r.system} | ${f2(l.firstByteP50)} | ${use} | ${f1(l.originDone)} | ${tail} |`
  })
  return `## Where the time went

From each host's link counters, read every 50 ms on the hub's side of its veth (headers included, so a link
carrying one TCP stream flat out shows about 95 %): seconds from the start until a pulling host had received its
first 64 KiB; the share of its link's rate it received from then until it was done; when the origin last sent, and
how long after that the slowest host finished (what a relay still had to hand on once it had everything; direct pulls
end with the origin's last bytes; BitTorrent's seed is fetched before the clock starts, so its origin sends nothing).

${[head, rule, ...rows].join('\n')}
`
}

/** A scenario counts as CPU-bound when the machine was at least this busy through the pulls… */
export const CPU_BOUND_BUSY = 0.9
/** …or the clients' main threads waited for a core at least this share of the p50 time. */
export const CPU_BOUND_WAIT = 0.1

/** The clients' median wait for a core over the p50 time; null where there is no client process or no p50. */
export function waitShare (r: ScenarioResult): number | null {
  const wait = r.runDelay.clientP50Sec
  return wait === null || !Number.isFinite(r.p50) || r.p50 <= 0 ? null : wait / r.p50
}

export function cpuBound (r: ScenarioResult): boolean {
  const share = waitShare(r)
  return (Number.isFinite(r.machineBusy) && r.machineBusy >= CPU_BOUND_BUSY) || (share !== null && share >= CPU_BOUND_WAIT)
}

/**
 * Where the machine's cores became the limit, per image and system: the N at which a scenario
 * was CPU-bound (see CPU_BOUND_BUSY, CPU_BOUND_WAIT) and the N at which it was not, each with
 * the figures that say so.
 */
export function cpuLimitMarkdown (results: ScenarioResult[]): string {
  if (results.length === 0) return ''
  const pct = (x: number | null): string => x === null || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(0)} %`
  const groups = new Map<string, ScenarioResult[]>()
  for (const r of results) {
    const key = `${r.image}, ${r.system}`
    groups.set(key, [...(groups.get(key) ?? []), r])
  }
  const lines = [...groups].map(([key, group]) => {
    const rows = group.sort((a, b) => a.hosts - b.hosts)
    const hasClients = rows.some((r) => waitShare(r) !== null)
    const figures = (rs: ScenarioResult[]): string =>
      `${hasClients ? `the clients' loops waited for a core ${rs.map((r) => pct(waitShare(r))).join(' / ')} of the p50 time, ` : ''}the machine ${rs.map((r) => pct(r.machineBusy)).join(' / ')} busy`
    const at = (rs: ScenarioResult[]): string => `at N = ${rs.map((r) => r.hosts).join(', ')} (${figures(rs)})`
    const bound = rows.filter(cpuBound)
    const free = rows.filter((r) => !cpuBound(r))
    const parts = [
      ...(bound.length > 0 ? [`CPU-bound ${at(bound)}`] : []),
      ...(free.length > 0 ? [`${bound.length > 0 ? 'not' : 'not CPU-bound'} ${at(free)}`] : [])
    ]
    return `- ${key}: ${parts.join('; ')}${hasClients ? '' : ' — no client process of its own to watch'}`
  })
  return `## Where the cores became the limit

A scenario counts as CPU-bound when the machine was at least ${(100 * CPU_BOUND_BUSY).toFixed(0)} % busy through the pulls, or when the clients' main
threads (a daemon's event loop, aria2c) waited for a core at least ${(100 * CPU_BOUND_WAIT).toFixed(0)} % of the p50 time: a relay whose loop waits
cannot pass pieces on, however idle the cores are on average.

${lines.join('\n')}
`
}

const PATHS: Record<SinglePath, string> = {
  origin: 'origin, direct',
  'dfdaemon-cold': 'dfdaemon cold (origin → supernode → daemon)',
  'dfdaemon-warm': 'dfdaemon warm (local hit)',
  'dfdaemon-supernode-warm': 'dfdaemon, supernode warm (fresh daemon)',
  'dfdaemon-after-other': 'dfdaemon, fresh daemon just after another took the blob and left'
}

const MiB = 2 ** 20

export function singleHostMarkdown (r: SingleHostResult): string {
  const head = '| client | path | MB/s | first byte ms | added first byte ms | seconds | local hits | super-seeding refusals | runs |'
  const rule = '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  const rows = r.rows.map((x) => {
    const each = (f: (run: SingleHostResult['rows'][number]['runs'][number]) => number | undefined): string => x.path === 'origin' ? '–' : x.runs.map((run) => f(run) ?? '?').join(', ')
    const failed = x.failures > 0 ? ` (${x.failures} failed: ${x.error?.slice(0, 200) ?? ''})` : ''
    return `| ${x.client} | ${PATHS[x.path]} | ${x.mbps.toFixed(0)} | ${f1(x.ttfbMs)} | ${f1(x.addedTtfbMs)} | ${f2(x.seconds)} | ${each((run) => run.localHits)} | ${each((run) => run.superSeedRefusals)} | ${x.runs.length}${failed} |`
  })
  return `## Single host

One dfdaemon on loopback, no cap (software throughput): one ${(r.blobBytes / MiB).toFixed(0)} MiB layer, median of ${r.repeats} run${r.repeats === 1 ? '' : 's'}
of each path, interleaved; MB = 10^6 bytes. curl fetches the blob (its own clock: time_starttransfer, time_total) into
${r.sink}; skopeo copies the image (layer and config, ${(r.imageBytes / 1e6).toFixed(0)} MB) to an OCI layout on disk, timed from start to exit.
Cold: a fresh supernode and daemon; warm: the same daemon again; supernode warm: a fresh daemon against the supernode
restarted on its store (it holds the blob, its super-seeding memory is gone); just after another: a fresh daemon, alone,
against the supernode that served every piece to the previous daemon moments ago (super-seeding refuses each piece once
and admits it on a retry after 2 s, or once 15 s have passed). Every copy's digest was checked. The machine was ${(100 * r.machineBusy).toFixed(0)} % busy over the part, load ${f1(r.loadAtStart)} at its start.

${[head, rule, ...rows].join('\n')}
`
}

export function trackerMarkdown (r: TrackerScaleResult): string {
  const ip = r.inProcess
  const w = r.wire
  const head = '| run | announce | peers | blobs | announces | blob entries | announces/s | entries/s | p50 ms | p99 ms | max ms | peers per reply | failed |'
  const rule = '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  const row = (run: string, kind: string, peers: number, blobs: number, p: PhaseFigures): string =>
    `| ${run} | ${kind} | ${peers} | ${blobs} | ${p.announces}${p.truncated ? ' (stopped at the deadline)' : ''} | ${p.blobEntries} | ${p.announcesPerSec.toFixed(0)} | ${p.entriesPerSec.toFixed(0)} | ${f2(p.p50Ms)} | ${f2(p.p99Ms)} | ${f2(p.maxMs)} | ${p.peersPerReply} | ${p.failures}${p.failures > 0 ? ` (${p.error ?? ''})` : ''} |`
  const seedKind = (n: number): string => `seed (${n} blobs whole)`
  const dlKind = 'download (1 blob, half held, peers wanted)'
  const heap = ip.heapBytes === null ? 'heap not measured (no GC)' : `${(ip.heapBytes / MiB).toFixed(1)} MiB of heap after a full GC, ${f1(ip.bytesPerEntry)} bytes per entry`
  return `## Tracker scale

In-process: the real TrackerHandler and TrackerState (the supernode's defaults and metrics), driven by the real tracker
client over in-memory stream pairs (no TCP, noise or yamux), ${ip.peers} peers — each its own Ed25519 peer id — over
${ip.blobs} blobs, one announce at a time: announces/s is taken over the summed announce times, one core's worth of work.
Most of an in-process announce is the in-memory streams' own machinery; "state only" sends the same announces straight
into a TrackerState (the calls the handler makes: no streams, framing, schema or address checks). Over the wire: a supernode process and ${w.nodes} real libp2p nodes in the bench process (one connection and
peer id each, ${w.rounds} announces of each kind per node), all announcing at once over TCP; announces/s is over the wall
clock, and the nodes share the machine with the supernode.

${[head, rule,
    row('in-process', seedKind(ip.blobsPerPeer), ip.peers, ip.blobs, ip.seed),
    row('in-process', dlKind, ip.peers, ip.blobs, ip.download),
    row('state only', seedKind(ip.blobsPerPeer), ip.peers, ip.blobs, ip.stateOnly.seed),
    row('state only', dlKind, ip.peers, ip.blobs, ip.stateOnly.download),
    row('wire', seedKind(w.blobsPerPeer), w.nodes, w.blobs, w.seed),
    row('wire', dlKind, w.nodes, w.blobs, w.download)].join('\n')}

In-process, held at the end: ${ip.held.entries} entries (${ip.held.peers} peers, ${ip.held.blobs} blobs) of ${ip.pairsAnnounced} announced (cap ${ip.maxEntries})${ip.held.entries < ip.pairsAnnounced ? ' — the rest expired (the run outlasted the 60 s TTL) or were dropped at a cap' : ''}; ${heap}; the
bench process's RSS grew ${(ip.rssDeltaBytes / MiB).toFixed(0)} MiB; the keys took ${f1(ip.keygenSec)} s.
Over the wire: the supernode counted ${w.counted.ok} ok, ${w.counted.refused} refused, ${w.counted.failed} failed announces and tracks ${w.trackerPeers} peers and ${w.trackerBlobs} blobs;
its RSS was ${w.supernode.rssBeforeMiB.toFixed(0)} MiB before the nodes connected, ${w.supernode.rssConnectedMiB.toFixed(0)} MiB connected, ${w.supernode.rssAfterMiB.toFixed(0)} MiB after the announces
(heap in use, no forced GC: ${w.supernode.heapBeforeMiB.toFixed(0)}, ${w.supernode.heapConnectedMiB.toFixed(0)}, ${w.supernode.heapAfterMiB.toFixed(0)} MiB); it used
${f1(w.supernode.cpuSec)} CPU s over the announces, with the machine ${(100 * w.machineBusy).toFixed(0)} % busy; connecting the nodes took ${f1(w.connectSec)} s.
`
}

const COLORS: Record<string, string> = { damselfly: '#1b7837', direct: '#b2182b', nginx: '#2166ac', bittorrent: '#e08214', bound: '#777777' }

/** One panel per image: x = N (log2), y = seconds; solid = max, dotted = p50, grey dashes = the bound. */
export function svgChart (results: ScenarioResult[], title: string): string {
  const images = [...new Set(results.map((r) => r.image))]
  const W = 460
  const H = 320
  const pad = { l: 52, r: 16, t: 34, b: 44 }
  const panels: string[] = []
  for (const [k, image] of images.entries()) {
    const rs = results.filter((r) => r.image === image)
    const ns = [...new Set(rs.map((r) => r.hosts))].sort((a, b) => a - b)
    const top = Math.max(1, ...rs.flatMap((r) => [r.max, r.bound ?? 0]).filter(Number.isFinite)) * 1.05
    const step = niceStep(top / 5)
    const ymax = Math.ceil(top / step) * step
    const lx = (n: number): number => ns.length <= 1 ? pad.l + (W - pad.l - pad.r) / 2 : pad.l + ((Math.log2(n) - Math.log2(ns[0])) / (Math.log2(ns[ns.length - 1]) - Math.log2(ns[0]))) * (W - pad.l - pad.r)
    const ly = (s: number): number => H - pad.b - (s / ymax) * (H - pad.t - pad.b)
    const g: string[] = [`<g transform="translate(${k * W},0)">`, `<text x="${W / 2}" y="20" text-anchor="middle" font-weight="bold">${image}</text>`]
    g.push(`<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="#000"/>`, `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="#000"/>`)
    for (const n of ns) g.push(`<text x="${lx(n)}" y="${H - pad.b + 16}" text-anchor="middle">${n}</text>`)
    g.push(`<text x="${W / 2}" y="${H - 8}" text-anchor="middle">hosts pulling at once (N)</text>`)
    for (let i = 0; i * step <= ymax + 1e-9; i++) {
      const s = step * i
      g.push(`<text x="${pad.l - 6}" y="${ly(s) + 4}" text-anchor="end">${s.toFixed(0)}</text>`, `<line x1="${pad.l}" y1="${ly(s)}" x2="${W - pad.r}" y2="${ly(s)}" stroke="#ddd"/>`)
    }
    g.push(`<text transform="translate(14,${H / 2}) rotate(-90)" text-anchor="middle">seconds</text>`)
    const line = (pts: Array<[number, number]>, color: string, dash: string): void => {
      const ok = pts.filter(([, y]) => Number.isFinite(y))
      if (ok.length === 0) return
      g.push(`<polyline fill="none" stroke="${color}" stroke-width="2" ${dash !== '' ? `stroke-dasharray="${dash}"` : ''} points="${ok.map(([n, y]) => `${lx(n).toFixed(1)},${ly(y).toFixed(1)}`).join(' ')}"/>`)
      for (const [n, y] of ok) g.push(`<circle cx="${lx(n).toFixed(1)}" cy="${ly(y).toFixed(1)}" r="2.5" fill="${color}"/>`)
    }
    const bound = ns.map((n) => [n, rs.find((r) => r.hosts === n)?.bound ?? NaN] as [number, number])
    line(bound, COLORS.bound, '6 4')
    const systems = [...new Set(rs.map((r) => r.system))]
    for (const sys of systems) {
      const of = (n: number): ScenarioResult | undefined => rs.find((r) => r.system === sys && r.hosts === n)
      line(ns.map((n) => [n, of(n)?.max ?? NaN]), COLORS[sys] ?? '#000', '')
      line(ns.map((n) => [n, of(n)?.p50 ?? NaN]), COLORS[sys] ?? '#000', '2 3')
    }
    let ly0 = pad.t + 4
    for (const name of [...systems, 'bound']) {
      g.push(`<line x1="${pad.l + 10}" y1="${ly0}" x2="${pad.l + 30}" y2="${ly0}" stroke="${COLORS[name] ?? '#000'}" stroke-width="2" ${name === 'bound' ? 'stroke-dasharray="6 4"' : ''}/>`,
        `<text x="${pad.l + 36}" y="${ly0 + 4}">${name === 'bound' ? 'lower bound' : name}</text>`)
      ly0 += 16
    }
    g.push('</g>')
    panels.push(g.join('\n'))
  }
  const width = Math.max(1, images.length) * W
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H + 24}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#fff"/>
<g transform="translate(0,24)">
${panels.join('\n')}
</g>
<text x="8" y="16" font-size="12">${escapeXml(title)} — solid: slowest host (max), dotted: median (p50)</text>
</svg>
`
}

/** 1, 2 or 5 times a power of ten, at least `x`. */
function niceStep (x: number): number {
  const p = 10 ** Math.floor(Math.log10(x))
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= x) ?? 10 * p
}

function escapeXml (s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' }[c] ?? c))
}

const TRANSPORT: Record<TransportPath, string> = {
  tcp: 'plain TCP socket',
  libp2p: 'libp2p stream (TCP + noise + yamux)',
  pieces: 'damselfly piece exchange over it (sha256 checked)',
  sha256: 'sha256 alone'
}

/**
 * CPU per GiB through each layer of the transport; with the swarm part, what each system's
 * clients spent per GiB they received, against it.
 */
export function costMarkdown (c: TransportCostResult, results: ScenarioResult[]): string {
  const tcp = c.rows.find((r) => r.path === 'tcp')?.cpuSecPerGiB ?? NaN
  const pieces = c.rows.find((r) => r.path === 'pieces')?.cpuSecPerGiB ?? NaN
  const head = '| path | CPU s per GiB (both ends) | ÷ plain TCP | MB/s |'
  const rule = '| --- | ---: | ---: | ---: |'
  const rows = c.rows.map((r) => `| ${TRANSPORT[r.path]} | ${f2(r.cpuSecPerGiB)} | ${f2(r.cpuSecPerGiB / tcp)} | ${r.mbps.toFixed(0)} |`)
  const inSwarm = results.filter((r) => r.processes.length > 0 && r.failures === 0 && r.cpu.clientsSec > 0).map((r) => {
    const perGiB = r.cpu.clientsSec / (r.hosts * r.imageBytes / 2 ** 30)
    return `- ${r.image}, N = ${r.hosts}, ${r.system}: ${f1(perGiB)} CPU s per GiB each client received (${f1(perGiB / pieces)}× the piece exchange's both ends)`
  })
  return `## Transport cost

CPU seconds of the bench's own process per GiB moved (sender and receiver both in it, kernel time included), on
loopback with nothing else running: ${(c.bytes / MiB).toFixed(0)} MiB through each path in ${(c.pieceBytes / 1024).toFixed(0)} KiB pieces, median of ${c.repeats} run${c.repeats === 1 ? '' : 's'}, interleaved.
The piece exchange is what a daemon's upload and its neighbour's download cost together, before its store, its mirror and
its client.

${[head, rule, ...rows].join('\n')}
${inSwarm.length > 0
  ? `
In the swarm part, a client received each byte once, and a relay also sent some on and (damselfly) served all of it
to its local skopeo; its CPU per GiB received, all of that included, against the piece exchange alone:

${inSwarm.join('\n')}
`
  : ''}`
}
