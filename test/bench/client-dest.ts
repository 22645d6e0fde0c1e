/**
 * Where the clients of the swarm part write what they pull. The emulated hosts share this
 * machine's one disk, where real hosts have one each: every client syncs the whole image to disk
 * as it finishes (skopeo fsyncs each layer), so N hosts finishing together queue N images' worth
 * of flushes on one device, a cost that grows with N and that no real cluster pays. `memory` puts
 * every client's destination (skopeo's layout, aria2c's directory) in a tmpfs, for every system
 * alike, so the figures are of the distribution; `disk` keeps them in the work dir. The daemons',
 * the cache's and the seeder's own stores stay on disk either way.
 */
import { mkdtemp, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import type { Cleanup } from './cleanup.js'

export type ClientDest = 'memory' | 'disk'

/** Linux's magic number for tmpfs in statfs(2)'s f_type. */
const TMPFS_MAGIC = 0x01021994
export const MEMORY_ROOT = '/dev/shm'
/** The start of every directory clientDestDir makes in the tmpfs (the rest is mkdtemp's). */
export const PULLS_DIR_PREFIX = 'damselfly-bench-pulls-'

/**
 * A fresh directory for the clients' destinations: under the work dir for `disk`; in
 * `/dev/shm` for `memory`, checked to be a tmpfs with room for `bytes`, and removed by `cleanup`
 * (also when the run fails).
 */
export async function clientDestDir (dest: ClientDest, workDir: string, bytes: number, cleanup: Cleanup, root = MEMORY_ROOT): Promise<string> {
  if (dest === 'disk') return join(workDir, 'pulls')
  const fs = await statfs(root).catch((err: Error) => { throw new Error(`--client-dest memory needs a tmpfs at ${root}: ${err.message}`) })
  if (fs.type !== TMPFS_MAGIC) throw new Error(`--client-dest memory needs a tmpfs at ${root} (it is another file system); use --client-dest disk`)
  const free = fs.bavail * fs.bsize
  if (free < bytes) throw new Error(`--client-dest memory needs ${mib(bytes)} MiB free in ${root}, which has ${mib(free)}; use --client-dest disk or fewer hosts`)
  const dir = await mkdtemp(join(root, PULLS_DIR_PREFIX))
  cleanup.dir(dir)
  return dir
}

function mib (bytes: number): number { return Math.ceil(bytes / 2 ** 20) }
