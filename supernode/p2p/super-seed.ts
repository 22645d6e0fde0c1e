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
}

interface PieceRecord {
  served: number[]
  refused: Map<string, number>
}

/**
 * The supernode as a super-seeder: it sends each piece to a few daemons and
 * refuses further requests for it for a short while, so the daemons get it
 * from each other and the supernode's upload stays near one copy per blob.
 * A daemon that keeps asking past the grace period is served — no pull waits
 * on a piece nobody near it has.
 */
export class SuperSeedPolicy {
  private readonly copies: number
  private readonly windowMs: number
  private readonly graceMs: number
  private readonly now: () => number
  private readonly records: LRUCache<string, PieceRecord>

  constructor (init: SuperSeedInit = {}) {
    this.copies = init.copies ?? 1
    this.windowMs = init.windowMs ?? 15_000
    this.graceMs = init.graceMs ?? 2_000
    this.now = init.now ?? Date.now
    this.records = new LRUCache({ max: init.maxEntries ?? 100_000 })
  }

  admit (digest: Digest, index: number, peer: PeerId): boolean {
    const key = `${digest.hex}:${index}`
    const now = this.now()
    let rec = this.records.get(key)
    if (rec == null) {
      rec = { served: [], refused: new Map() }
      this.records.set(key, rec)
    }
    rec.served = rec.served.filter(t => now - t < this.windowMs)
    const who = peer.toString()
    const firstRefused = rec.refused.get(who)
    if (rec.served.length < this.copies || (firstRefused != null && now - firstRefused >= this.graceMs)) {
      rec.served.push(now)
      rec.refused.delete(who)
      return true
    }
    if (firstRefused == null) rec.refused.set(who, now)
    return false
  }
}
