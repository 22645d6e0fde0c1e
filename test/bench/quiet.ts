import { execFile } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { busyShare, machineJiffies } from './proc.js'

const run = promisify(execFile)

/** The machine counts as quiet under this share of its cores busy over one look. */
export const QUIET_BUSY = 0.2
/** How long one look at /proc/stat lasts. */
const LOOK_MS = 500

export interface Settled {
  /** From the call to the pull's start: the sync and the looks. */
  waitedMs: number
  /** The machine's busy share over the last look (NaN when no look was taken). */
  busy: number
}

/**
 * Before a swarm pull: flush dirty pages (what the last scenario wrote would otherwise go to
 * disk during this one), then look at the machine until it is quiet — the system just started
 * has done its start-up work (loading modules, compiling, a DHT's first query) — or `maxMs`
 * has passed. A daemon, a seeder or a cache serves pulls long after it started; the bench
 * starts each right before its pull. `maxMs` 0 starts at once.
 */
export async function waitForQuiet (maxMs: number): Promise<Settled> {
  if (maxMs <= 0) return { waitedMs: 0, busy: NaN }
  const t0 = performance.now()
  await run('sync', [], { timeout: maxMs }).catch(() => undefined)
  let busy = NaN
  do {
    const j0 = await machineJiffies()
    await sleep(LOOK_MS)
    const j1 = await machineJiffies()
    busy = busyShare(j0, j1)
  } while (busy >= QUIET_BUSY && performance.now() - t0 < maxMs)
  return { waitedMs: performance.now() - t0, busy }
}
