/** The results as a Markdown table and as an SVG chart (completion time against N, a line per system). */
import type { ScenarioResult } from './figures.js'

const f1 = (x: number | null | undefined): string => x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1)
const f2 = (x: number | null | undefined): string => x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(2)

export function markdownTable (results: ScenarioResult[]): string {
  const head = '| image | N | system | p50 s | p95 s | max s | bound s | p50/bound | max/bound | origin ÷ image | from peers | server sent ÷ image | CPU s clients / server | peak RSS MiB client / server | machine CPU busy | load at start |'
  const rule = '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  const rows = results.map((r) => {
    const src = r.bytesBySource
    const received = src === undefined ? 0 : Object.values(src).reduce((a, b) => a + b, 0)
    const peers = src === undefined || received === 0 ? '–' : `${((100 * (src.peer ?? 0)) / received).toFixed(0)} %`
    const sent = r.serverUploadBytes === undefined ? '–' : f2(r.serverUploadBytes / r.imageBytes)
    const cpu = r.processes.length === 0 ? '–' : `${f1(r.cpu.clientsSec)} / ${f1(r.cpu.serverSec)}`
    const rss = r.processes.length === 0 ? '–' : `${r.peakRss.clientMaxMiB.toFixed(0)} / ${r.peakRss.serverMiB.toFixed(0)}`
    const failed = r.failures > 0 ? ` (${r.failures} failed)` : ''
    return `| ${r.image} | ${r.hosts} | ${r.system}${failed} | ${f1(r.p50)} | ${f1(r.p95)} | ${f1(r.max)} | ${f1(r.bound)} | ${f2(r.p50Ratio)} | ${f2(r.maxRatio)} | ${f2(r.originRatio)} | ${peers} | ${sent} | ${cpu} | ${rss} | ${Number.isFinite(r.machineBusy) ? `${(100 * r.machineBusy).toFixed(0)} %` : '–'} | ${f1(r.loadAtStart)} |`
  })
  return [head, rule, ...rows].join('\n') + '\n'
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
