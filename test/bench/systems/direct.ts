/** Every host pulls straight from the origin. */
import { skopeoPull, type RunningSystem, type ScenarioContext } from './system.js'

export async function startDirect (ctx: ScenarioContext): Promise<RunningSystem> {
  return {
    pull: async (i, dest) => { await skopeoPull(ctx, ctx.clients[i], ctx.origin.hostPort, dest, `skopeo-${i + 1}`) },
    collect: async () => ({ processes: [] }),
    stop: async () => undefined
  }
}
