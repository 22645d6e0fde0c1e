import { LRUCache } from 'lru-cache'
import type { PeerId } from '@libp2p/interface'
import type { Digest } from '../../shared/oci/digest.js'

export interface SuperSeedInit {
  /** Copies of one piece the supernode sends within `windowMs` before it asks peers to trade instead. */
  copies?: number
  windowMs?: number
  /** A daemon refused this long ago for a piece gets it anyway (nobody near it has it). */
  graceMs?: number
  maxEntries?: number
  now?: () => number
  /**
   * Whether a daemon the piece went to is still in the swarm (connected). A
   * copy held only by daemons that have left counts for nothing: the next
   * asker gets the piece at once instead of waiting out the grace.
   */
  isPresent?: (peer: string) => boolean
}

interface PieceRecord {
  served: Array<{ at: number, peer: string }>
  refused: Map<string, number>
}

/**
 * The supernode as a super-seeder: it sends each piece to a few daemons and
 * refuses further requests for it for a short while, so the daemons get it
 * from each other and the supernode's upload stays near one copy per blob.
 * A daemon that keeps asking past the grace period is served — no pull waits
 * on a piece nobody near it has — and so is one asking for a piece whose
 * recent copies all went to daemons that have since left (hosts pulling one
 * after another, such as CI runners, each get the blob at full speed).
 * A blob of one piece (an image config, a small layer) goes to whoever asks:
 * with nothing to trade, a refusal would only cost the asker a round trip and
 * a wait for a neighbour to get it first.
 */
export class SuperSeedPolicy {
  private readonly copies: number
  private readonly windowMs: number
  private readonly graceMs: number
  private readonly now: () => number
  private readonly isPresent: (peer: string) => boolean
  private readonly records: LRUCache<string, PieceRecord>

  constructor (init: SuperSeedInit = {}) {
    this.copies = init.copies ?? 1
    this.windowMs = init.windowMs ?? 15_000
    this.graceMs = init.graceMs ?? 2_000
    this.now = init.now ?? Date.now
    this.isPresent = init.isPresent ?? (() => true)
    this.records = new LRUCache({ max: init.maxEntries ?? 100_000 })
  }

  /** `pieces`: how many pieces the blob has, when known. */
  admit (digest: Digest, index: number, peer: PeerId, pieces?: number): boolean {
    if (pieces !== undefined && pieces <= 1) return true
    const key = `${digest.hex}:${index}`
    const now = this.now()
    let rec = this.records.get(key)
    if (rec == null) {
      rec = { served: [], refused: new Map() }
      this.records.set(key, rec)
    }
    const who = peer.toString()
    rec.served = rec.served.filter(s => now - s.at < this.windowMs && s.peer !== who && this.isPresent(s.peer))
    const firstRefused = rec.refused.get(who)
    if (rec.served.length < this.copies || (firstRefused != null && now - firstRefused >= this.graceMs)) {
      rec.served.push({ at: now, peer: who })
      rec.refused.delete(who)
      return true
    }
    if (firstRefused == null) rec.refused.set(who, now)
    return false
  }
}
