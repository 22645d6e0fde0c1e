/** Every host pulls straight from the origin. */
import { skopeoPull, type RunningSystem, type ScenarioContext } from './system.js'

export async function startDirect (ctx: ScenarioContext): Promise<RunningSystem> {
  return {
    pull: async (i, dest) => { await skopeoPull(ctx, ctx.clients[i], ctx.origin.hostPort, dest, `skopeo-${i + 1}`) },
    // the origin registry is the long-running process here
    warmUp: async (i, dest, image) => { await skopeoPull(ctx, ctx.clients[i], ctx.origin.hostPort, dest, `warmup-skopeo-${i + 1}`, image) },
    collect: async () => ({ processes: [] }),
    stop: async () => undefined
  }
}
