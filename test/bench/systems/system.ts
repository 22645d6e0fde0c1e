/** The contract every compared system fulfils for one scenario, and the pull every host runs. */
import { mkdir } from 'node:fs/promises'
import type { Cleanup } from '../cleanup.js'
import type { Host, Topology } from '../hosts.js'
import type { Origin, PreparedImage } from '../origin.js'
import { startProc, type ProcStats } from '../proc.js'

export interface ScenarioContext {
  topo: Topology
  /** The N pulling hosts of this scenario. */
  clients: Host[]
  origin: Origin
  image: PreparedImage
  /** This system's scratch dir for this scenario (logs, stores, pulled copies). */
  dir: string
  cleanup: Cleanup
  pullTimeoutSec: number
}

export interface Collected {
  processes: ProcStats[]
  /** Bytes the pulling hosts received, by where they came from (damselfly: its piece sources). */
  bytesBySource?: Record<string, number>
  /** Bytes the server host uploaded (supernode, nginx, seeder), when it can be told. */
  serverUploadBytes?: number
  /** Piece bytes the pulling hosts received in full after the piece had come from elsewhere (damselfly's endgame duplicates). */
  duplicateBytes?: number
}

export interface RunningSystem {
  /** Start host `i`'s pull into `dest`; resolves when the image is complete there. */
  pull: (i: number, dest: string) => Promise<void>
  /**
   * Host `i` pulls `image` (the warm-up image) into `dest` the same way, before the measured pull.
   * Absent where nothing long-running would serve it: BitTorrent's clients start with each pull.
   */
  warmUp?: (i: number, dest: string, image: PreparedImage) => Promise<void>
  /** The processes running before the pulls start, so their start-up CPU can be left out. */
  procs?: () => Array<{ name: string, pid: number }>
  /** Figures so far (counters since the system started); taken after the warm-up and after every pull finished. */
  collect: () => Promise<Collected>
  stop: () => Promise<void>
}

export type SystemFactory = (ctx: ScenarioContext) => Promise<RunningSystem>

/**
 * skopeo copy `docker://REGISTRY/repo:tag` → `oci:DEST`, inside `host`. An OCI layout, not `dir:`:
 * skopeo copies layers one at a time into `dir:` but six at once into a layout, as podman, docker
 * and containerd fetch several layers at once.
 */
export async function skopeoPull (ctx: ScenarioContext, host: Host, registry: string, dest: string, name: string, image = ctx.image): Promise<void> {
  await mkdir(dest, { recursive: true })
  const proc = startProc(host, name, [
    'skopeo', 'copy', '--quiet', '--src-tls-verify=false', '--retry-times', '0',
    `docker://${registry}/${image.repository}:${image.tag}`, `oci:${dest}`
  ], ctx.dir, ctx.cleanup)
  const timer = setTimeout(() => { proc.child.kill('SIGKILL') }, ctx.pullTimeoutSec * 1000)
  await proc.exited
  clearTimeout(timer)
  await proc.stop()
  if (proc.child.exitCode !== 0) throw new Error(`${name}: skopeo failed (${proc.child.exitCode ?? proc.child.signalCode}): ${await proc.logTail()}`)
}

/** `pull` and `warmUp` for a system whose hosts pull with skopeo from `registry(i)` (host:port). */
export function skopeoPulls (ctx: ScenarioContext, registry: (i: number) => string): Pick<RunningSystem, 'pull' | 'warmUp'> {
  return {
    pull: async (i, dest) => { await skopeoPull(ctx, ctx.clients[i], registry(i), dest, `skopeo-${i + 1}`) },
    warmUp: async (i, dest, image) => { await skopeoPull(ctx, ctx.clients[i], registry(i), dest, `warmup-skopeo-${i + 1}`, image) }
  }
}
