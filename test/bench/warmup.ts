/**
 * The warm-up before a swarm pull. A dfdaemon, a cache or a registry in a cluster has served
 * pulls before the one that counts; the bench starts each system right before its pull. So,
 * once a system is up, every host first pulls an unrelated one-layer image through it (its own
 * repository and bytes: nothing of the measured image is cached), and the figures then leave it
 * out: the origin's traffic for its repository, the counters the system had by then, and the
 * CPU (taken after this).
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { PreparedImage } from './origin.js'
import type { Collected, RunningSystem } from './systems/system.js'

export interface WarmedUp {
  /** The warm-up image's size, MiB (config and layer). */
  mib: number
  /** From the first host's start to the last host's complete image. */
  seconds: number
}

/** Every one of `hosts` pulls `image` through `sys` at once into `dir/warmup-<i>` (removed after); throws if any fails. */
export async function warmUp (sys: RunningSystem, image: PreparedImage, hosts: number, dir: string): Promise<WarmedUp | undefined> {
  const pull = sys.warmUp
  if (pull === undefined) return undefined
  const t0 = performance.now()
  await Promise.all(Array.from({ length: hosts }, async (_, i) => {
    const dest = join(dir, `warmup-${i + 1}`)
    try {
      await pull(i, dest, image)
    } catch (err) {
      throw new Error(`host ${i + 1}'s warm-up pull failed: ${(err as Error).message}`)
    } finally {
      await rm(dest, { recursive: true, force: true })
    }
  }))
  return { mib: image.bytes / 2 ** 20, seconds: (performance.now() - t0) / 1000 }
}

/** The counters of `after` less those of `before` (both since the system started); processes as in `after`. */
export function countersSince (after: Collected, before: Collected | undefined): Collected {
  if (before === undefined) return after
  const less = (a: number | undefined, b: number | undefined): number | undefined => a === undefined ? undefined : a - (b ?? 0)
  const bySource = after.bytesBySource === undefined
    ? undefined
    : Object.fromEntries(Object.entries(after.bytesBySource).map(([k, v]) => [k, v - (before.bytesBySource?.[k] ?? 0)]))
  const out: Collected = { processes: after.processes }
  if (bySource !== undefined) out.bytesBySource = bySource
  const sent = less(after.serverUploadBytes, before.serverUploadBytes)
  if (sent !== undefined) out.serverUploadBytes = sent
  const dups = less(after.duplicateBytes, before.duplicateBytes)
  if (dups !== undefined) out.duplicateBytes = dups
  return out
}
