import type { Logger } from 'pino'
import type { BlobStore } from '../../shared/store/blob-store.js'
import type { PartialBlob } from '../../shared/store/partial-blob.js'
import { manifestFromWire, type PieceManifest } from '../../shared/pieces/piece-manifest.js'
import { DamselflyError, UnavailableError, errorFromCode } from '../../shared/errors.js'
import type { BlobRequest } from '../blob-provider.js'
import type { DaemonMetrics } from '../metrics.js'
import type { PiecePolicy } from './piece-policy.js'
import type { PieceSource } from './piece-source.js'
import type { TaskStream } from './supernode-client.js'
import { PieceScheduler } from './piece-scheduler.js'
import { pieceLength } from '../../shared/pieces/piece-math.js'
import { ProgressWatchdog } from './progress-watchdog.js'
import type { Neighbour } from './neighbour.js'
import type { SwarmNetwork } from './swarm-network.js'
import { Neighbourhood, type DownloadState } from './neighbourhood.js'
import { TicketRenewal } from './ticket-renewal.js'
import type { TaskAnswer } from '../../shared/p2p/task-messages.js'

export interface BlobDownloadComponents {
  store: BlobStore
  metrics: DaemonMetrics
  logger: Logger
  network: SwarmNetwork
  /** Opens the blob's task on the supernode. */
  openTask: (req: BlobRequest) => Promise<TaskStream>
  /** Makes the supernode a piece source for this blob. */
  supernodeSource: (manifest: PieceManifest, has: (index: number) => boolean) => PieceSource
  /** Makes a neighbour a piece source for this blob. */
  peerSource: (manifest: PieceManifest, neighbour: Neighbour) => PieceSource
  /** A piece arrived, matched its hash and was written. */
  onPieceVerified?: (digest: BlobRequest['digest'], index: number) => void
  /** The supernode's answer: a ticket (private blob) or none (public); called before any neighbour can greet us. */
  onGrant?: (digest: string, ticket: string | undefined) => void
  /** Back-to-source: the origin registry itself; without it, no back-to-source. */
  origin?: OriginFallback
}

/** The origin as a last resort (OriginAccess is the real one). */
export interface OriginFallback {
  /** The blob's manifest from the origin (size only) when nobody else knows it. */
  manifest: (req: BlobRequest, signal?: AbortSignal) => Promise<PieceManifest>
  /** The origin as a piece source for this blob. */
  source: (req: BlobRequest, manifest: PieceManifest) => PieceSource
}

export interface BlobDownloadInit {
  req: BlobRequest
  policy: PiecePolicy
  /** Most neighbours for this blob. */
  maxNeighbours?: number
  /** Tracker announce period while downloading. */
  announceIntervalMs?: number
  maxPieceAttempts?: number
  /**
   * No piece arrived for this long while pieces are missing: go back to the
   * origin for what no other source holds; no progress for as long again with
   * nothing in flight either: fail, so no client waits forever.
   */
  noProgressTimeoutMs?: number
}

export const DEFAULT_NO_PROGRESS_TIMEOUT_MS = 15_000

interface Waiter {
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * One blob's download on this host. Asks the supernode for the task (the
 * piece manifest and its updates), finds neighbours through the tracker and
 * the DHT, and lets the scheduler pull pieces from all of them; clients wait
 * on pieces in order while the rest arrives. Every piece is verified before
 * it is written and announced; the whole blob is checked before it enters
 * the store. Without a supernode, the manifest comes from a neighbour found
 * on the DHT.
 */
export class BlobDownload {
  readonly req: BlobRequest
  /** Verified piece bytes this download received, by kind of source. */
  readonly received = { peer: 0, supernode: 0, origin: 0 }
  /** Resolves with the piece manifest once the blob's size is known. */
  readonly ready: Promise<PieceManifest>
  /** Resolves when the blob is complete and committed to the store. */
  readonly done: Promise<void>

  private readonly c: BlobDownloadComponents
  private readonly init: BlobDownloadInit
  private readonly log: Logger
  private readonly waiters = new Map<number, Waiter[]>()
  private readonly neighbourhood: Neighbourhood
  private readonly renewal: TicketRenewal
  private partial?: PartialBlob
  private scheduler?: PieceScheduler
  private supernode?: PieceSource
  private task?: TaskStream
  private grant?: string
  private failure?: Error
  private finished = false
  private committing = false
  private readonly watchdog: ProgressWatchdog
  private originAdded = false
  /**
   * Settles when the supernode's task stream ends: true when it ended with
   * `done`, the supernode's word that it checked the whole blob against its
   * digest before every piece hash it sent us was final.
   */
  private taskEnd?: Promise<boolean>
  /** Where the supernode's task stream stands (for the stall log). */
  private taskState: 'none' | 'open' | 'done' | 'ended' | 'lost' = 'none'
  private resolveReady!: (m: PieceManifest) => void
  private rejectReady!: (err: Error) => void
  private resolveDone!: () => void
  private rejectDone!: (err: Error) => void

  constructor (components: BlobDownloadComponents, init: BlobDownloadInit) {
    this.c = components
    this.init = init
    this.req = init.req
    this.log = components.logger.child({ component: 'download', digest: init.req.digest.value })
    this.watchdog = new ProgressWatchdog(init.noProgressTimeoutMs ?? DEFAULT_NO_PROGRESS_TIMEOUT_MS, (ms) => { this.stalled(ms) })
    this.neighbourhood = new Neighbourhood({
      network: components.network,
      metrics: components.metrics,
      logger: this.log,
      addSource: (n) => { if (this.partial != null) this.scheduler?.addSource(this.c.peerSource(this.partial.manifest, n)) },
      removeSource: (id) => { this.scheduler?.removeSource(id) },
      onHave: () => { this.scheduler?.pumpSoon() },
      state: () => this.state,
      ticket: () => this.grant
    }, { digest: init.req.digest, maxNeighbours: init.maxNeighbours, announceIntervalMs: init.announceIntervalMs })
    this.renewal = new TicketRenewal({ renew: async () => await this.renewTicket(), onTicket: (t) => { this.granted(t) }, logger: this.log })
    this.ready = new Promise((resolve, reject) => { this.resolveReady = resolve; this.rejectReady = reject })
    this.done = new Promise((resolve, reject) => { this.resolveDone = resolve; this.rejectDone = reject })
    // callers may await only one of them; never leave a rejection unhandled
    this.ready.catch(() => {})
    this.done.catch(() => {})
  }

  get error (): Error | undefined {
    return this.failure
  }

  /** The supernode's ticket for this blob when it is private (shown to neighbours). */
  get ticket (): string | undefined {
    return this.grant
  }

  /** The partial blob while downloading (for the swarm handler's welcome). */
  get current (): PartialBlob | undefined {
    return this.finished || this.failure != null ? undefined : this.partial
  }

  start (): void {
    this.run().catch(err => { this.fail(err as Error) })
  }

  hasPiece (index: number): boolean {
    return this.partial?.bitfield.has(index) ?? false
  }

  /** Resolve once piece `index` is held (verified, written); reject if the download fails. */
  async waitPiece (index: number, signal?: AbortSignal): Promise<void> {
    if (this.failure != null) throw this.failure
    if (this.finished || this.hasPiece(index)) return
    await new Promise<void>((resolve, reject) => {
      const list = this.waiters.get(index) ?? []
      const waiter: Waiter = {
        resolve: () => { signal?.removeEventListener('abort', onAbort); resolve() },
        reject: (err) => { signal?.removeEventListener('abort', onAbort); reject(err) }
      }
      const onAbort = (): void => {
        const l = this.waiters.get(index)
        if (l != null) this.waiters.set(index, l.filter(w => w !== waiter))
        reject(signal?.reason as Error)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      list.push(waiter)
      this.waiters.set(index, list)
      this.scheduler?.pump()
    })
  }

  /** A neighbour that opened a swarm stream to us for this blob. */
  addNeighbour (neighbour: Neighbour): void {
    this.neighbourhood.add(neighbour)
  }

  private get state (): DownloadState {
    return this.finished ? 'finished' : this.failure != null ? 'failed' : 'running'
  }

  cancel (err: Error = new UnavailableError('download cancelled')): void {
    this.fail(err)
  }

  private async run (): Promise<void> {
    const stored = await this.c.store.getComplete(this.req.digest)
    if (stored != null) {
      // finished by an earlier download a moment ago
      this.finished = true
      this.resolveReady(stored.manifest)
      this.resolveDone()
      return
    }
    let answers: AsyncIterator<TaskAnswer> | undefined
    let manifest: PieceManifest
    let early: Neighbour[] = []
    let backToSource = false
    let endTask: (vouched: boolean) => void = () => {}
    try {
      this.task = await this.c.openTask(this.req)
      answers = this.task[Symbol.asyncIterator]()
      manifest = await this.firstAnswer(answers)
      this.taskEnd = new Promise(resolve => { endTask = resolve })
      this.taskState = 'open'
    } catch (err) {
      // only an unreachable supernode sends us to the neighbours; a refusal stands
      if (!(err instanceof UnavailableError)) throw err
      this.task?.close()
      this.task = undefined
      answers = undefined
      this.log.warn({ err: err.message }, 'supernode unavailable, looking for peers on the DHT')
      ;({ manifest, early, backToSource } = await this.manifestFromPeers(err))
    }

    const partial = await this.c.store.openPartial(manifest)
    this.partial = partial
    this.scheduler = new PieceScheduler({
      partial,
      policy: this.init.policy,
      metrics: this.c.metrics,
      logger: this.log,
      onPiece: (index, source) => {
        this.received[source.kind] += pieceLength(partial.manifest.size, partial.manifest.pieceSize, index)
        this.c.onPieceVerified?.(this.req.digest, index)
        this.pieceArrived(index)
      },
      onFatal: (err) => { this.fail(err) },
      escalate: () => this.lookFurther('pieces keep failing'),
      urgent: () => this.lowestWaited()
    }, { maxPieceAttempts: this.init.maxPieceAttempts })
    if (this.task != null) {
      this.supernode = this.c.supernodeSource(partial.manifest, (i) => partial.manifest.pieces[i] != null)
      this.scheduler.addSource(this.supernode)
    }
    // a blob of one piece comes from the supernode, which serves it to every asker (super-seed.ts):
    // neighbours would have nothing to trade, and finding them would cost an announce and a
    // stream to each, just as the image's layers start; they are looked for only if the
    // supernode goes, or fails to serve the piece (lookFurther)
    const supernodeServesAll = this.supernode != null && partial.manifest.pieces.length <= 1
    if (!supernodeServesAll) this.lookForNeighbours()
    for (const n of early) this.neighbourhood.add(n)
    if (backToSource) this.addOrigin('no supernode and no peer holds the blob')
    this.watchdog.start()
    this.resolveReady(partial.manifest)
    this.log.debug({ size: manifest.size, pieceSize: manifest.pieceSize, pieces: manifest.pieces.length, held: partial.bitfield.count }, 'download started')
    if (partial.bitfield.count > 0) this.c.network.provide(this.req.digest)
    void this.maybeCommit()

    // the rest of the task: piece hashes as the supernode completes them
    if (answers == null) return
    let vouched = false
    try {
      for (;;) {
        const next = await answers.next()
        if (next.done === true || this.finished || this.failure != null) {
          this.taskState = 'ended'
          break
        }
        const a = next.value
        if (a.type === 'piece') {
          // the supernode's origin fetch advancing is progress too: a stalled daemon fetching
          // from the origin beside it would only share the origin's link with it
          this.watchdog.progress()
          partial.setPieceHash(a.index, a.sha256)
          this.scheduler.pump()
        } else if (a.type === 'error') {
          throw errorFromCode(a.code, a.message, a.challenge)
        } else if (a.type === 'done') {
          this.taskState = 'done'
          vouched = true
          break
        }
      }
    } catch (err) {
      // a refusal fails the download; a lost supernode leaves the neighbours, then the origin, to finish it
      if (!(err instanceof UnavailableError)) throw err
      // (a one-piece blob has not looked for neighbours yet: it does now, so none found is no reason to fail)
      if (this.c.origin == null && ((this.neighbourhood.size === 0 && !supernodeServesAll) || partial.manifest.pieces.includes(null))) throw err
      this.lookForNeighbours()
      this.taskState = 'lost'
      this.log.warn({ err: err.message, neighbours: this.neighbourhood.size }, 'supernode lost; continuing with neighbours, then the origin')
      if (this.supernode != null) this.scheduler.removeSource(this.supernode.id)
    } finally {
      endTask(vouched)
    }
  }

  private async firstAnswer (answers: AsyncIterator<TaskAnswer>): Promise<PieceManifest> {
    const answer = await manifestAnswer(answers)
    this.granted(answer.ticket)
    this.renewal.watch(answer.ticket)
    const manifest = manifestFromWire(answer.manifest)
    if (manifest.digest.value !== this.req.digest.value) throw new UnavailableError('supernode answered for another blob')
    return manifest
  }

  /** The supernode's ticket for the blob (none: public), from its first answer or a renewal. */
  private granted (ticket: string | undefined): void {
    this.grant = ticket
    this.c.onGrant?.(this.req.digest.value, ticket)
  }

  /** Ask the supernode for the blob again, for a fresh ticket: its first answer only. */
  private async renewTicket (): Promise<string | undefined> {
    const task = await this.c.openTask(this.req)
    try {
      return (await manifestAnswer(task[Symbol.asyncIterator]())).ticket
    } finally {
      task.close()
    }
  }

  /**
   * No supernode: find holders on the DHT and take the manifest from the first
   * that greets us; when none does, ask the origin for the blob's size.
   */
  private async manifestFromPeers (cause: Error): Promise<{ manifest: PieceManifest, early: Neighbour[], backToSource: boolean }> {
    const { manifest, early } = await this.neighbourhood.greetProviders()
    if (manifest != null) return { manifest, early, backToSource: false }
    if (this.c.origin == null) throw cause
    this.log.warn({ cause: cause.message }, 'no supernode and no peer holds the blob; going back to source')
    return { manifest: await this.c.origin.manifest(this.req), early, backToSource: true }
  }

  /** Start finding and greeting neighbours (once); returns whether it started now. */
  private lookForNeighbours (): boolean {
    const partial = this.partial
    if (partial == null || this.finished || this.failure != null) return false
    return this.neighbourhood.start(partial)
  }

  /**
   * The sources so far keep failing or stay silent: look for neighbours if this
   * download has not yet (a one-piece blob), and add the origin. Returns whether
   * either was new, which gives every piece a fresh budget.
   */
  private lookFurther (reason: string): boolean {
    const looked = this.lookForNeighbours()
    if (looked) this.log.warn({ reason, task: this.taskState }, 'supernode not serving the blob; looking for neighbours')
    return this.addOrigin(reason) || looked
  }

  /** Add the origin as a source (once); returns whether it was added now. */
  private addOrigin (reason: string): boolean {
    const partial = this.partial
    if (this.c.origin == null || this.originAdded || this.scheduler == null || partial == null || this.finished || this.failure != null) return false
    this.originAdded = true
    this.log.warn({ reason, missing: partial.manifest.pieces.length - partial.bitfield.count, waiting: this.scheduler.describe(), task: this.taskState }, 'going back to source for pieces no other source has')
    this.scheduler.addSource(this.c.origin.source(this.req, partial.manifest))
    return true
  }

  /**
   * No piece, and no new piece hash from the supernode, for the no-progress
   * deadline: the origin is added (and neighbours looked for, if they were not
   * yet); as long again with nothing in flight: the
   * download fails rather than leave clients waiting (requests in flight have
   * deadlines of their own).
   */
  private stalled (stalledMs: number): void {
    if (this.finished || this.failure != null) return
    const seconds = Math.round(stalledMs / 1000)
    if (this.lookFurther(`no piece arrived for ${seconds} s`)) {
      this.watchdog.progress()
    } else if ((this.scheduler?.inFlightCount ?? 0) === 0) {
      this.fail(new UnavailableError(`no source delivered a piece for ${seconds} s`))
    }
  }

  private pieceArrived (index: number): void {
    this.watchdog.progress()
    const first = this.partial?.bitfield.count === 1
    this.neighbourhood.tellHave(index)
    if (first) this.c.network.provide(this.req.digest)
    const list = this.waiters.get(index)
    this.waiters.delete(index)
    for (const w of list ?? []) w.resolve()
    void this.maybeCommit()
  }

  private lowestWaited (): number | undefined {
    let low: number | undefined
    for (const [i, list] of this.waiters) if (list.length > 0 && (low === undefined || i < low)) low = i
    return low
  }

  private async maybeCommit (): Promise<void> {
    const partial = this.partial
    if (partial == null || !partial.complete || this.committing || this.finished || this.failure != null) return
    this.committing = true
    // nothing is missing: the watchdog has nothing left to watch (the wait for the
    // supernode's `done` is bounded by its task stream's deadline)
    this.watchdog.stop()
    try {
      // Pieces each matched their hash. With the supernode's `done` those hashes are
      // of the blob it checked whole, so the blob needs no second read and hash here;
      // without it (no supernode, or it was lost) the store hashes the whole file.
      const vouched = this.taskEnd != null && await this.taskEnd
      await this.c.store.commit(partial, { verified: vouched })
    } catch (err) {
      this.fail(err as Error)
      return
    }
    this.finished = true
    this.stopActivity()
    this.neighbourhood.finish()
    for (const [i, list] of this.waiters) { this.waiters.delete(i); for (const w of list) w.resolve() }
    this.c.metrics.downloads.inc({ result: 'success' })
    this.log.info({ size: partial.manifest.size, neighbours: this.neighbourhood.size }, 'blob complete')
    // tell the tracker at once that we are a seed now
    void this.c.network.announce([{ digest: this.req.digest, bitfield: partial.bitfield, wantPeers: false }])
    this.resolveDone()
  }

  private stopActivity (): void {
    this.renewal.stop()
    this.watchdog.stop()
    this.scheduler?.stop()
    this.task?.close()
  }

  private fail (err: Error): void {
    if (this.failure != null || this.finished) return
    this.failure = err
    this.stopActivity()
    this.neighbourhood.close()
    this.c.metrics.downloads.inc({ result: 'failure' })
    this.log.warn({ err: { name: err.name, message: err.message } }, 'download failed')
    for (const [, list] of this.waiters) for (const w of list) w.reject(err)
    this.waiters.clear()
    this.rejectReady(err)
    this.rejectDone(err)
    if (!(err instanceof DamselflyError)) this.log.error({ err }, 'unexpected download error')
  }
}

/** A task's first answer, the manifest (with the ticket of a private blob); throws the supernode's refusal. */
async function manifestAnswer (answers: AsyncIterator<TaskAnswer>): Promise<Extract<TaskAnswer, { type: 'manifest' }>> {
  const first = await answers.next()
  if (first.done === true) throw new UnavailableError('supernode closed the task without an answer')
  const answer = first.value
  if (answer.type === 'error') throw errorFromCode(answer.code, answer.message, answer.challenge)
  if (answer.type !== 'manifest') throw new UnavailableError('supernode answered out of order')
  return answer
}
