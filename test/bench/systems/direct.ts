/** Every host pulls straight from the origin. */
import { skopeoPulls, type RunningSystem, type ScenarioContext } from './system.js'

export async function startDirect (ctx: ScenarioContext): Promise<RunningSystem> {
  return {
    // the origin registry is the long-running process the warm-up serves here
    ...skopeoPulls(ctx, () => ctx.origin.hostPort),
    collect: async () => ({ processes: [] }),
    stop: async () => undefined
  }
}
