import type { Logger } from 'pino'
import type { Digest } from '../../shared/oci/digest.js'
import type { PartialBlob } from '../../shared/store/partial-blob.js'
import type { PieceManifest } from '../../shared/pieces/piece-manifest.js'
import type { DaemonMetrics } from '../metrics.js'
import type { Neighbour } from './neighbour.js'
import type { PeerContact, SwarmNetwork } from './swarm-network.js'

/** Least time between two DHT lookups while the tracker cannot be reached. */
const DHT_LOOKUP_INTERVAL_MS = 10_000
/** How long a peer that did not greet us is left alone. */
const REFUSED_MS = 30_000

/** Where the download stands: neighbours are kept only while it runs. */
export type DownloadState = 'running' | 'finished' | 'failed'

export interface NeighbourhoodComponents {
  network: SwarmNetwork
  metrics: Pick<DaemonMetrics, 'neighbours'>
  logger: Logger
  /** Make a new neighbour a piece source of the download. */
  addSource: (neighbour: Neighbour) => void
  /** A neighbour is gone: it is no longer a source. */
  removeSource: (id: string) => void
  /** A neighbour told us of a piece it holds now. */
  onHave: () => void
  state: () => DownloadState
  /** The supernode's ticket for the blob when it is private, shown when we greet. */
  ticket: () => string | undefined
}

export interface NeighbourhoodInit {
  digest: Digest
  /** Most neighbours for this blob. */
  maxNeighbours?: number
  /** Tracker announce period while downloading. */
  announceIntervalMs?: number
}

/**
 * The neighbours of one blob's download: found through the tracker (the DHT
 * when the tracker cannot be reached) and greeted, or greeting us; kept as
 * piece sources while the download runs; told of every piece it completes.
 */
export class Neighbourhood {
  private readonly c: NeighbourhoodComponents
  private readonly init: NeighbourhoodInit
  private readonly neighbours = new Map<string, Neighbour>()
  private readonly contacting = new Set<string>()
  /** Peers that did not greet us, until when they are left alone. */
  private readonly refused = new Map<string, number>()
  private partial?: PartialBlob
  private announceTimer?: NodeJS.Timeout
  private announces = 0
  private lastLookup = 0

  constructor (components: NeighbourhoodComponents, init: NeighbourhoodInit) {
    this.c = components
    this.init = init
  }

  get size (): number {
    return this.neighbours.size
  }

  /**
   * No supernode: greet the blob's providers on the DHT. The manifest is the first
   * that greets us (the whole-blob digest check guards against a lying peer), with
   * piece hashes filled in from the others; `early` are the providers that agree on
   * the blob's size and piece size, to be added once the download has its partial blob.
   */
  async greetProviders (): Promise<{ manifest?: PieceManifest, early: Neighbour[] }> {
    this.lastLookup = Date.now()
    const providers = await this.c.network.findProviders(this.init.digest, this.init.maxNeighbours ?? 10)
    const early: Neighbour[] = []
    let manifest: PieceManifest | undefined
    for (const p of providers) {
      try {
        const g = await this.c.network.greet(p, this.init.digest, undefined)
        if (manifest == null) manifest = g.manifest
        if (g.manifest.size === manifest.size && g.manifest.pieceSize === manifest.pieceSize) {
          g.manifest.pieces.forEach((h, i) => { if (manifest?.pieces[i] == null && h != null) manifest!.pieces[i] = h })
          early.push(g.neighbour)
        } else {
          g.neighbour.close()
        }
      } catch (err) {
        this.c.logger.debug({ peer: p.peerId.toString(), err: (err as Error).message }, 'provider did not greet')
      }
    }
    return { manifest, early }
  }

  /** The download has its partial blob: take neighbours, and announce and greet from now on (once; returns whether it started now). */
  start (partial: PartialBlob): boolean {
    if (this.partial != null) return false
    this.partial = partial
    this.scheduleAnnounce(0)
    return true
  }

  /** A neighbour that greeted us, or that we greeted, for this blob. */
  add (neighbour: Neighbour): void {
    const partial = this.partial
    const state = this.c.state()
    if (partial == null || state === 'failed' || neighbour.bitfield.length !== partial.manifest.pieces.length) {
      neighbour.close()
      return
    }
    if (state === 'finished') {
      // greeted while the last pieces arrived: say we hold them all before the stream ends,
      // so the neighbour keeps us as a seed rather than dropping a source that has nothing
      neighbour.catchUp(partial.bitfield)
      neighbour.close()
      return
    }
    const existing = this.neighbours.get(neighbour.id)
    if (existing != null) {
      // both sides greeted at once: both keep the stream the lower peer id opened
      const keepOutbound = this.c.network.self.toString() < neighbour.id
      if (neighbour.outbound !== keepOutbound || existing.outbound === keepOutbound) {
        neighbour.close()
        return
      }
      this.neighbours.set(neighbour.id, neighbour)
      existing.close()
    } else {
      this.neighbours.set(neighbour.id, neighbour)
      this.c.metrics.neighbours.inc()
    }
    this.c.logger.debug({ peer: neighbour.id, outbound: neighbour.outbound, has: neighbour.bitfield.count }, 'neighbour added')
    // pieces that completed since our greeting was written went to the other neighbours only
    neighbour.catchUp(partial.bitfield)
    this.c.addSource(neighbour)
    neighbour.start({
      onHave: () => { this.c.onHave() },
      onClose: () => {
        // a neighbour that holds every piece and ends its stream has finished and seeds the
        // blob: it stays a source, as a seed found by greeting it does (pieces have their own streams)
        if (neighbour.bitfield.complete && this.c.state() === 'running') return
        this.drop(neighbour)
      }
    })
  }

  /** Tell every neighbour that piece `index` is held here now. */
  tellHave (index: number): void {
    for (const n of this.neighbours.values()) n.sendHave(index)
  }

  /** The blob is complete: no more announces, and neighbours that hold it all too have nothing more to say to us. */
  finish (): void {
    this.stopAnnouncing()
    for (const n of [...this.neighbours.values()]) if (n.bitfield.complete) this.drop(n)
  }

  /** The download failed or was cancelled: no more announces, and every neighbour let go. */
  close (): void {
    this.stopAnnouncing()
    for (const n of [...this.neighbours.values()]) this.drop(n)
  }

  private stopAnnouncing (): void {
    if (this.announceTimer != null) clearTimeout(this.announceTimer)
    this.announceTimer = undefined
  }

  /** Close the neighbour (if it is not already) and let it go: no longer a source or counted. */
  private drop (neighbour: Neighbour): void {
    neighbour.close()
    if (this.neighbours.get(neighbour.id) !== neighbour) return
    this.neighbours.delete(neighbour.id)
    this.c.metrics.neighbours.dec()
    this.c.removeSource(neighbour.id)
  }

  private scheduleAnnounce (delayMs: number): void {
    if (this.c.state() !== 'running') return
    this.announceTimer = setTimeout(() => {
      this.announceTimer = undefined
      this.discover().catch(err => { this.c.logger.debug({ err: (err as Error).message }, 'discovery failed') })
        .finally(() => {
          // announce often while a swarm forms, then settle to the steady interval
          this.announces++
          const steady = this.init.announceIntervalMs ?? 3000
          this.scheduleAnnounce(Math.min(steady, 250 * 2 ** this.announces))
        })
    }, delayMs)
    this.announceTimer.unref()
  }

  /**
   * Neighbours worth having for a blob of `pieces` pieces: a swarm stream each, bitfields
   * and `have` messages both ways, at every daemon — for a one-piece blob two holders are
   * plenty, and more only multiply streams across a pull of many small layers.
   */
  private cap (pieces: number): number {
    return Math.min(this.init.maxNeighbours ?? 10, Math.max(2, Math.ceil(pieces / 2)))
  }

  /** Announce to the tracker, ask the DHT when the tracker cannot be reached, greet new ones. */
  private async discover (): Promise<void> {
    const partial = this.partial
    if (partial == null || this.c.state() !== 'running') return
    const digest = this.init.digest
    const max = this.cap(partial.manifest.pieces.length)
    const wantPeers = this.neighbours.size < max
    const byBlob = await this.c.network.announce([{ digest, bitfield: partial.bitfield, wantPeers }])
    if (!wantPeers) return
    let contacts: PeerContact[] = byBlob?.get(digest.value) ?? []
    // the tracker hears from every daemon: the DHT is for when it cannot be reached
    if (byBlob == null && Date.now() - this.lastLookup > DHT_LOOKUP_INTERVAL_MS) {
      this.lastLookup = Date.now()
      contacts = [...contacts, ...await this.c.network.findProviders(digest, max)]
    }
    const now = Date.now()
    this.c.logger.debug({ tracker: byBlob?.get(digest.value)?.length, contacts: contacts.length, neighbours: this.neighbours.size }, 'announced')
    const fresh = contacts.filter(p => {
      const id = p.peerId.toString()
      return !this.neighbours.has(id) && !this.contacting.has(id) && (this.refused.get(id) ?? 0) < now && !p.peerId.equals(this.c.network.self)
    })
    await Promise.all(fresh.slice(0, max - this.neighbours.size).map(async (p) => { await this.connect(p) }))
  }

  private async connect (p: PeerContact): Promise<void> {
    const id = p.peerId.toString()
    const partial = this.partial
    if (partial == null) return
    this.contacting.add(id)
    try {
      const { neighbour } = await this.c.network.greet(p, this.init.digest, partial.bitfield, undefined, this.c.ticket())
      this.add(neighbour)
    } catch (err) {
      this.refused.set(id, Date.now() + REFUSED_MS)
      this.c.logger.debug({ peer: id, err: (err as Error).message }, 'peer did not greet')
    } finally {
      this.contacting.delete(id)
    }
  }
}
