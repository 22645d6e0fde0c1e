/** What a policy may know when it picks the next piece for a source. */
export interface PickContext {
  /** How many known sources hold piece `index`. */
  availability: (index: number) => number
  /** The lowest piece a client is waiting for, if any: worth fetching early. */
  urgent?: number
}

/**
 * Chooses which piece to request next from a source, among the candidates the
 * session allows (held by the source, not yet held here, not in flight).
 */
export interface PiecePolicy {
  readonly name: string
  pick: (candidates: readonly number[], ctx: PickContext) => number | undefined
}

/** Lowest index first: what a single client streaming the blob in order wants. */
export class SequentialPolicy implements PiecePolicy {
  readonly name = 'sequential'

  pick (candidates: readonly number[]): number | undefined {
    let best: number | undefined
    for (const c of candidates) if (best === undefined || c < best) best = c
    return best
  }
}

/**
 * Rarest first, ties broken at random, so the pieces a swarm holds fewest
 * copies of spread first and neighbours always have something to trade.
 * A piece a client is blocked on within `urgentWindow` of its position jumps
 * the queue, so the HTTP stream keeps moving.
 */
export class RarestFirstPolicy implements PiecePolicy {
  readonly name = 'rarest-first'
  private readonly urgentWindow: number
  private readonly random: () => number

  constructor (init: { urgentWindow?: number, random?: () => number } = {}) {
    this.urgentWindow = init.urgentWindow ?? 2
    this.random = init.random ?? Math.random
  }

  pick (candidates: readonly number[], ctx: PickContext): number | undefined {
    if (candidates.length === 0) return undefined
    if (ctx.urgent !== undefined) {
      let urgent: number | undefined
      for (const c of candidates) {
        if (c >= ctx.urgent && c < ctx.urgent + this.urgentWindow && (urgent === undefined || c < urgent)) urgent = c
      }
      if (urgent !== undefined) return urgent
    }
    let best: number | undefined
    let bestAvail = Infinity
    let ties = 0
    for (const c of candidates) {
      const a = ctx.availability(c)
      if (a < bestAvail) {
        best = c
        bestAvail = a
        ties = 1
      } else if (a === bestAvail) {
        // reservoir sampling: each tied piece is kept with equal probability
        ties++
        if (this.random() * ties < 1) best = c
      }
    }
    return best
  }
}
