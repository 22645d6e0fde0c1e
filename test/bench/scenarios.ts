/** What a bench run measures: which images, how many hosts, which systems, on which network. */
export type SystemName = 'damselfly' | 'direct' | 'nginx' | 'bittorrent'
export const SYSTEMS: SystemName[] = ['damselfly', 'direct', 'nginx', 'bittorrent']

export interface ImageSpec { name: string, layers: number, layerBytes: number }

export interface BenchOptions {
  mode: 'netns' | 'loopback'
  /** Per-host cap, both directions (netns only), e.g. `100mbit`. */
  rate: string
  hostCounts: number[]
  images: ImageSpec[]
  systems: SystemName[]
  /** Where results.json, results.md and results.svg go. */
  outDir: string
  /** A label for the machine, printed with the table. */
  label: string
  /** Per pull, seconds, before it counts as failed. */
  pullTimeoutSec: number
  /** Keep the work dir (logs of every process) instead of removing it. */
  keep?: boolean
}

const MiB = 1 << 20

export const QUICK_IMAGES: ImageSpec[] = [{ name: '1x128MiB', layers: 1, layerBytes: 128 * MiB }]
export const FULL_IMAGES: ImageSpec[] = [
  { name: '1x256MiB', layers: 1, layerBytes: 256 * MiB },
  { name: '8x32MiB', layers: 8, layerBytes: 32 * MiB },
  { name: '50x1MiB', layers: 50, layerBytes: MiB }
]
export const SMOKE_IMAGES: ImageSpec[] = [{ name: '2x2MiB', layers: 2, layerBytes: 2 * MiB }]

export const USAGE = `usage: npm run bench -- [--quick] [--hosts 1,2,4] [--systems damselfly,direct,nginx,bittorrent]
                          [--images 1x128MiB,8x32MiB] [--rate 100mbit] [--loopback] [--out DIR]
  --quick     N = 1,2,4,8 and one 128 MiB layer (a few minutes)
  (default)   N = 1,2,4,8,16 and images 1x256MiB, 8x32MiB, 50x1MiB
  --images    image specs COUNTxSIZE (MiB), e.g. 4x16MiB
  --loopback  no namespaces and no cap: every host on 127.0.0.1 (what the smoke test runs)
  --keep      keep the work dir with every process's log (printed at the end)
Runs as root (namespaces, tc). Writes results.json, results.md, results.svg to --out.`

function imageOf (s: string): ImageSpec {
  const m = /^(\d+)x(\d+)MiB$/.exec(s)
  if (m === null) throw new Error(`image spec must look like 8x32MiB, got ${s}`)
  return { name: s, layers: Number(m[1]), layerBytes: Number(m[2]) * MiB }
}

/** Parse the bench's command line; throws with the usage on a bad flag. */
export function parseArgs (argv: string[], defaultOut: string): BenchOptions {
  const quick = argv.includes('--quick')
  const opts: BenchOptions = {
    mode: argv.includes('--loopback') ? 'loopback' : 'netns',
    rate: '100mbit',
    hostCounts: quick ? [1, 2, 4, 8] : [1, 2, 4, 8, 16],
    images: quick ? QUICK_IMAGES : FULL_IMAGES,
    systems: [...SYSTEMS],
    outDir: defaultOut,
    label: '',
    pullTimeoutSec: 900
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
    else if (a === '--hosts') opts.hostCounts = value().split(',').map(Number)
    else if (a === '--systems') opts.systems = value().split(',') as SystemName[]
    else if (a === '--images') opts.images = value().split(',').map(imageOf)
    else if (a === '--rate') opts.rate = value()
    else if (a === '--out') opts.outDir = value()
    else if (a === '--label') opts.label = value()
    else throw new Error(`unknown argument ${a}\n${USAGE}`)
  }
  if (opts.hostCounts.some((n) => !Number.isInteger(n) || n < 1 || n > 200)) throw new Error(`--hosts wants counts from 1 to 200\n${USAGE}`)
  const bad = opts.systems.filter((s) => !SYSTEMS.includes(s))
  if (bad.length > 0) throw new Error(`unknown system ${bad.join(', ')}\n${USAGE}`)
  return opts
}
