import type { Logger } from 'pino'
import type { PartialBlob } from '../../shared/store/partial-blob.js'
import { DamselflyError, UnavailableError } from '../../shared/errors.js'
import type { DaemonMetrics } from '../metrics.js'
import type { PiecePolicy } from './piece-policy.js'
import type { PieceSource } from './piece-source.js'
import { pieceByteLength } from '../../shared/pieces/piece-bytes.js'

/** A failing source is set aside for this long, doubling per consecutive failure up to the max. */
export const SET_ASIDE_BASE_MS = 500
export const SET_ASIDE_MAX_MS = 30_000
/** How long a busy answer keeps a piece (from the supernode) or a peer off the list. */
export const DEFER_MS = 400
/**
 * Requests in flight to the supernode while neighbours exist. Its upload is shared by every
 * daemon of the swarm: deeper queues there only delay the newest pieces; a daemon alone
 * keeps the configured depth, which a fast link needs.
 */
export const SWARM_SUPERNODE_IN_FLIGHT = 2

export interface PieceSchedulerComponents {
  partial: PartialBlob
  policy: PiecePolicy
  metrics: DaemonMetrics
  logger: Logger
  /** A verified piece was written to the store. */
  onPiece: (index: number, source: PieceSource) => void
  /** The download cannot go on. */
  onFatal: (err: Error) => void
  /**
   * A piece failed `maxPieceAttempts` times: add a source that was held back
   * (the origin) and return true to give every piece a fresh budget, or
   * return false and the download fails.
   */
  escalate?: () => boolean
  /** The lowest piece a client waits for, if any. */
  urgent: () => number | undefined
}

export interface PieceSchedulerInit {
  /** Failed attempts per piece (over all sources) before the download fails. */
  maxPieceAttempts?: number
}

/**
 * Decides which piece to ask which source for: fills every source's request
 * slots with the policy's choice, asks the supernode only for pieces no
 * neighbour holds (super-seeding) unless nothing is coming from neighbours,
 * asks the origin (once added) only for pieces no other usable source holds,
 * duplicates the last pieces across sources in endgame and cancels the
 * losers, and sets failing sources aside for a while.
 */
export class PieceScheduler {
  private readonly c: PieceSchedulerComponents
  private readonly maxAttempts: number
  private readonly sources = new Map<string, PieceSource>()
  /** piece → source id → its request */
  private readonly inFlight = new Map<number, Map<string, AbortController>>()
  private readonly load = new Map<string, number>()
  /** Pieces whose bytes are being written now. */
  private readonly writing = new Set<number>()
  private readonly attempts = new Map<number, number>()
  private readonly failures = new Map<string, number>()
  private readonly asideUntil = new Map<string, number>()
  /** Pieces the supernode asked us to get from neighbours, until when. */
  private readonly deferred = new Map<number, number>()
  private wakeTimer?: NodeJS.Timeout
  private wakeTime = 0
  private pumpQueued = false
  private stopped = false

  constructor (components: PieceSchedulerComponents, init: PieceSchedulerInit = {}) {
    this.c = components
    this.maxAttempts = init.maxPieceAttempts ?? 8
  }

  addSource (source: PieceSource): void {
    this.sources.set(source.id, source)
    this.pump()
  }

  removeSource (id: string): void {
    this.sources.delete(id)
    for (const [index, reqs] of this.inFlight) {
      reqs.get(id)?.abort(new UnavailableError('source went away'))
      if (reqs.size === 0) this.inFlight.delete(index)
    }
    this.pump()
  }

  hasSource (id: string): boolean {
    return this.sources.has(id)
  }

  get sourceCount (): number {
    return this.sources.size
  }

  /** Piece requests in flight now (over all sources). */
  get inFlightCount (): number {
    return this.inFlight.size
  }

  /**
   * Per-piece source counts as of `now`, taken once per pump: the sources' holdings
   * and set-asides do not change while it fills their slots, and counting them for
   * every piece of every slot of every source was most of the scheduler's cost in
   * a large swarm.
   */
  private countSources (now: number): SourceCounts {
    const hashes = this.c.partial.manifest.pieces
    const n = hashes.length
    const counts: SourceCounts = { swarm: new Uint16Array(n), askablePeers: new Uint16Array(n), usable: new Uint16Array(n) }
    for (const s of this.sources.values()) {
      if (s.kind === 'origin') continue
      const aside = (this.asideUntil.get(s.id) ?? 0) > now
      const askablePeer = s.kind === 'peer' && !aside
      // a busy answer sets a source aside too, but only failures make it unusable
      const usable = !(aside && this.failures.has(s.id))
      for (let i = 0; i < n; i++) {
        if (!s.has(i)) continue
        counts.swarm[i]++
        if (askablePeer) counts.askablePeers[i]++
        if (usable && hashes[i] != null) counts.usable[i]++
      }
    }
    return counts
  }

  stop (): void {
    this.stopped = true
    if (this.wakeTimer != null) clearTimeout(this.wakeTimer)
    for (const reqs of this.inFlight.values()) for (const ac of reqs.values()) ac.abort(new UnavailableError('download stopped'))
    this.inFlight.clear()
  }

  /**
   * Pump once the current turn of the event loop is done: the `have`s a
   * neighbour sent together arrive together, and cost one pump rather than one each.
   */
  pumpSoon (): void {
    if (this.pumpQueued || this.stopped) return
    this.pumpQueued = true
    setImmediate(() => {
      this.pumpQueued = false
      this.pump()
    })
  }

  /**
   * What the scheduler is waiting on, for the log line of a download that stalls:
   * each source with the missing pieces it holds, its requests in flight and how
   * long it is still set aside; the pieces in flight and those the supernode
   * deferred to the neighbours.
   */
  describe (now = Date.now()): SchedulerState {
    const partial = this.c.partial
    const pieces = partial.manifest.pieces
    const missing = partial.bitfield.missing()
    return {
      missing: missing.length,
      unhashed: missing.filter(i => pieces[i] == null).length,
      sources: [...this.sources.values()].map(s => ({
        id: s.id,
        kind: s.kind,
        holds: missing.filter(i => s.has(i)).length,
        load: this.load.get(s.id) ?? 0,
        asideMs: Math.max(0, (this.asideUntil.get(s.id) ?? 0) - now),
        failures: this.failures.get(s.id) ?? 0
      })),
      inFlight: [...this.inFlight].map(([index, reqs]) => ({ index, sources: [...reqs.keys()] })),
      deferred: [...this.deferred].filter(([, until]) => until > now).map(([index]) => index),
      writing: [...this.writing]
    }
  }

  /** Fill every available source's free request slots. */
  pump (): void {
    const partial = this.c.partial
    if (this.stopped || partial.complete) return
    const now = Date.now()
    const ordered = [...this.sources.values()].sort((a, b) => rank(a) - rank(b))
    const swarm = this.hasPeerSources()
    let counts: SourceCounts | undefined
    for (const source of ordered) {
      const until = this.asideUntil.get(source.id) ?? 0
      if (until > now) {
        this.wakeAt(until)
        continue
      }
      let load = this.load.get(source.id) ?? 0
      const limit = source.kind === 'supernode' && swarm ? Math.min(source.maxInFlight, SWARM_SUPERNODE_IN_FLIGHT) : source.maxInFlight
      while (load < limit) {
        counts ??= this.countSources(now)
        const index = this.choose(source, counts, now, swarm)
        if (index === undefined) break
        load++
        this.request(source, index)
      }
    }
    // a piece the supernode deferred is asked for again once its deferral ends: every pump
    // sets the wake-up for the earliest one still pending (as the loop above does for sources
    // set aside), so none waits on a wake-up an earlier deferral has already spent
    for (const [index, until] of this.deferred) {
      if (until <= now) this.deferred.delete(index)
      else this.wakeAt(until)
    }
  }

  /** `swarm`: whether any neighbour is a source (the pump's, unchanged while it fills slots). */
  private choose (source: PieceSource, counts: SourceCounts, now: number, swarm: boolean): number | undefined {
    const partial = this.c.partial
    const pieces = partial.manifest.pieces
    // super-seeding: while neighbours exist, the supernode serves only what none of them can
    const superSeed = source.kind === 'supernode' && swarm
    // the origin verifies by the whole-blob digest, so it may serve pieces whose hash nobody told us
    const origin = source.kind === 'origin'
    const candidates: number[] = []
    let missingNotInFlight = 0
    for (let i = 0; i < pieces.length; i++) {
      if (partial.bitfield.has(i) || this.writing.has(i) || this.inFlight.has(i)) continue
      // a piece whose hash has not come yet counts as still to ask for: while the supernode is
      // fetching, the last known pieces all in flight is the swarm keeping up, not the endgame
      missingNotInFlight++
      if (pieces[i] == null && !origin) continue
      if (!source.has(i)) continue
      if (source.kind === 'supernode' && (this.deferred.get(i) ?? 0) > now) continue
      if (superSeed && counts.askablePeers[i] > 0) continue
      if (origin && counts.usable[i] > 0) continue
      candidates.push(i)
    }
    const picked = this.c.policy.pick(candidates, { availability: (i) => counts.swarm[i], urgent: this.c.urgent() })
    // the origin never races the swarm in endgame
    if (picked !== undefined || missingNotInFlight > 0 || origin) return picked
    // endgame: every missing piece is requested (its hash known, or the origin fetching it);
    // race the remaining pieces on idle sources
    let best: number | undefined
    let fewest = Infinity
    for (const [index, reqs] of this.inFlight) {
      if (reqs.has(source.id) || !source.has(index) || reqs.size >= 3) continue
      // the origin may be fetching a piece whose hash nobody told us: no one else can be checked against it
      if (pieces[index] == null && !origin) continue
      // an aborted loser stays in inFlight until it settles: its piece is already here
      if (partial.bitfield.has(index) || this.writing.has(index)) continue
      // super-seeding holds in endgame too: the supernode races only pieces no usable
      // neighbour holds, and not while its busy answer stands (else: a tight refusal loop)
      if (source.kind === 'supernode' && ((this.deferred.get(index) ?? 0) > now || (superSeed && counts.askablePeers[index] > 0))) continue
      if (reqs.size < fewest) { best = index; fewest = reqs.size }
    }
    return best
  }

  private hasPeerSources (): boolean {
    for (const s of this.sources.values()) if (s.kind === 'peer') return true
    return false
  }

  private request (source: PieceSource, index: number): void {
    const ac = new AbortController()
    let reqs = this.inFlight.get(index)
    if (reqs == null) {
      reqs = new Map()
      this.inFlight.set(index, reqs)
    }
    reqs.set(source.id, ac)
    this.load.set(source.id, (this.load.get(source.id) ?? 0) + 1)
    this.c.metrics.piecesInFlight.inc()
    const asked = Date.now()
    source.fetch(index, ac.signal).then(async ({ bytes, sha256 }) => {
      if (this.stopped || this.c.partial.bitfield.has(index) || this.writing.has(index)) {
        // an endgame duplicate that lost the race: received, but not needed
        this.c.metrics.wastedBytes.inc({ source: source.kind }, pieceByteLength(bytes))
        return
      }
      this.writing.add(index)
      try {
        // checked by the source: writePiece compares the hash, it need not compute it again
        await this.c.partial.writePiece(index, bytes, sha256)
      } finally {
        this.writing.delete(index)
      }
      this.failures.delete(source.id)
      this.c.metrics.pieceBytes.inc({ source: source.kind }, pieceByteLength(bytes))
      this.c.metrics.pieces.inc({ source: source.kind })
      this.c.logger.trace({ index, source: source.kind, ms: Date.now() - asked }, 'piece received')
      // endgame losers: the piece is here, stop the other requests for it
      for (const [id, other] of this.inFlight.get(index) ?? []) if (id !== source.id) other.abort(new UnavailableError('piece arrived elsewhere'))
      this.c.onPiece(index, source)
    }, (err: Error) => {
      if (this.stopped || ac.signal.aborted) return
      this.failed(source, index, err)
    }).catch((err: Error) => {
      this.c.onFatal(err)
    }).finally(() => {
      const r = this.inFlight.get(index)
      if (r?.get(source.id) === ac) r.delete(source.id)
      if (r?.size === 0) this.inFlight.delete(index)
      this.load.set(source.id, (this.load.get(source.id) ?? 1) - 1)
      this.c.metrics.piecesInFlight.dec()
      this.pump()
    })
  }

  private failed (source: PieceSource, index: number, err: Error): void {
    if (err.name === 'TooManyRequestsError') {
      this.c.logger.trace({ index, source: source.kind }, 'piece refused: busy')
      // not a fault: the supernode wants the piece traded among neighbours, or a peer is at its upload bound
      const until = Date.now() + DEFER_MS
      // the pump that follows every settled request sets the wake-up for it
      if (source.kind === 'supernode') this.deferred.set(index, until)
      else this.asideUntil.set(source.id, until)
      return
    }
    if (source.kind === 'peer' && err.name === 'BlobUnknownError') {
      // the peer no longer holds the blob (evicted, or dropped after finding it corrupt): stop asking it
      this.c.metrics.pieceFailures.inc({ source: source.kind, reason: err.name })
      this.c.logger.debug({ index, source: source.id }, 'peer no longer holds the blob')
      this.removeSource(source.id)
      return
    }
    const n = (this.attempts.get(index) ?? 0) + 1
    this.attempts.set(index, n)
    const f = (this.failures.get(source.id) ?? 0) + 1
    this.failures.set(source.id, f)
    this.asideUntil.set(source.id, Date.now() + Math.min(SET_ASIDE_MAX_MS, SET_ASIDE_BASE_MS * 2 ** (f - 1)))
    this.c.metrics.pieceFailures.inc({ source: source.kind, reason: err.name })
    this.c.logger.warn({ index, source: source.id, kind: source.kind, attempt: n, err: { name: err.name, message: err.message } }, 'piece request failed')
    if (n >= this.maxAttempts) {
      if (this.c.escalate?.() === true) {
        this.attempts.clear()
        return
      }
      this.c.onFatal(err instanceof DamselflyError ? err : new UnavailableError(`piece ${index} failed ${n} times`, { cause: err }))
    }
  }

  /** Pump again when a set-aside source may be asked again. */
  private wakeAt (time: number): void {
    if (this.wakeTimer != null && this.wakeTime <= time) return
    if (this.wakeTimer != null) clearTimeout(this.wakeTimer)
    this.wakeTime = time
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined
      this.pump()
    }, Math.max(0, time - Date.now()))
    this.wakeTimer.unref()
  }
}

/** A scheduler's state as `describe` reports it. */
export interface SchedulerState {
  missing: number
  /** Missing pieces whose hash nobody has told us yet. */
  unhashed: number
  sources: Array<{ id: string, kind: PieceSource['kind'], holds: number, load: number, asideMs: number, failures: number }>
  inFlight: Array<{ index: number, sources: string[] }>
  deferred: number[]
  writing: number[]
}

/** Per piece: sources of the swarm holding it, neighbours that may be asked for it now, and sources that could serve it now. */
interface SourceCounts {
  /** Swarm sources (supernode included, origin not) holding the piece. */
  swarm: Uint16Array
  /** Neighbours holding it and not set aside. */
  askablePeers: Uint16Array
  /** Swarm sources holding it whose hash we know and that are not set aside after failures (a busy answer does not count). */
  usable: Uint16Array
}

/** Neighbours first, the supernode after them, the origin last. */
function rank (s: PieceSource): number {
  return s.kind === 'peer' ? 0 : s.kind === 'supernode' ? 1 : 2
}
