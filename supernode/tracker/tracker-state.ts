import type { Bitfield } from '../../shared/pieces/bitfield.js'
import { MAX_PEERS_PER_BLOB, type TrackerPeer } from '../../shared/p2p/tracker-messages.js'

export const DEFAULT_TRACKER_TTL_MS = 60_000
export const DEFAULT_PEERS_PER_REPLY = 20
export const DEFAULT_MAX_TRACKER_ENTRIES = 100_000
export const DEFAULT_MAX_PEERS_PER_TRACKED_BLOB = 2_000
export const DEFAULT_MAX_BLOBS_PER_PEER = 10_000

/** What a daemon says about one blob. `digest` is already validated by the caller. */
export interface TrackerEntryInput {
  digest: string
  /** Number of pieces of the blob. */
  pieces: number
  /** Pieces held: a count or the bitfield itself (ignored when complete). */
  have?: number | Bitfield
  complete: boolean
}

export interface TrackerStateInit {
  /** How long an announce is remembered unless repeated. */
  ttlMs?: number
  /** Most (blob, peer) entries in all; the least recently announced go first. */
  maxEntries?: number
  /** Most peers remembered per blob. */
  maxPeersPerBlob?: number
  /** Most blobs remembered per peer. */
  maxBlobsPerPeer?: number
  now?: () => number
  /** Uniform in [0, 1); spreads load among equally good peers. */
  random?: () => number
}

export interface TrackerStats {
  blobs: number
  peers: number
  entries: number
}

interface PeerRecord {
  id: string
  addrs: string[]
  /** digest → entry, least recently announced first */
  blobs: Map<string, Entry>
}

interface Entry {
  key: string
  peer: PeerRecord
  digest: string
  pieces: number
  have: number
  complete: boolean
  expiresAt: number
}

/**
 * Soft state of the tracker: which peers hold which pieces of which blobs.
 * Pure (no I/O, injectable clock and randomness). Every map is kept in
 * announce order (a refresh moves an entry to the back), so expiry and
 * eviction both take from the front: expiry costs only what it drops.
 */
export class TrackerState {
  readonly ttlMs: number
  private readonly maxEntries: number
  private readonly maxPeersPerBlob: number
  private readonly maxBlobsPerPeer: number
  private readonly now: () => number
  private readonly random: () => number
  /** `digest peerId` → entry, least recently announced first */
  private readonly entries = new Map<string, Entry>()
  /** digest → peerId → entry, least recently announced first */
  private readonly blobs = new Map<string, Map<string, Entry>>()
  private readonly peers = new Map<string, PeerRecord>()

  constructor (init: TrackerStateInit = {}) {
    this.ttlMs = positive('ttlMs', init.ttlMs ?? DEFAULT_TRACKER_TTL_MS)
    this.maxEntries = positive('maxEntries', init.maxEntries ?? DEFAULT_MAX_TRACKER_ENTRIES)
    this.maxPeersPerBlob = positive('maxPeersPerBlob', init.maxPeersPerBlob ?? DEFAULT_MAX_PEERS_PER_TRACKED_BLOB)
    this.maxBlobsPerPeer = positive('maxBlobsPerPeer', init.maxBlobsPerPeer ?? DEFAULT_MAX_BLOBS_PER_PEER)
    this.now = init.now ?? Date.now
    this.random = init.random ?? Math.random
  }

  /** Record or refresh that `peerId`, reachable at `addrs`, holds (part of) a blob. */
  announce (peerId: string, addrs: string[], input: TrackerEntryInput): void {
    const pieces = Math.max(0, Math.floor(input.pieces))
    const held = typeof input.have === 'number' ? input.have : input.have?.count ?? 0
    const have = input.complete ? pieces : Math.min(pieces, Math.max(0, Math.floor(held)))
    const expiresAt = this.now() + this.ttlMs

    let peer = this.peers.get(peerId)
    if (peer == null) {
      peer = { id: peerId, addrs: [], blobs: new Map() }
      this.peers.set(peerId, peer)
    }
    peer.addrs = [...addrs]
    const key = `${input.digest} ${peerId}`
    const entry: Entry = this.entries.get(key) ?? { key, peer, digest: input.digest, pieces, have, complete: input.complete, expiresAt }
    Object.assign(entry, { pieces, have, complete: input.complete, expiresAt })

    let blob = this.blobs.get(input.digest)
    if (blob == null) {
      blob = new Map()
      this.blobs.set(input.digest, blob)
    }
    toBack(this.entries, key, entry)
    toBack(blob, peerId, entry)
    toBack(peer.blobs, input.digest, entry)

    // the entry just announced is the newest everywhere, so never the one evicted
    while (peer.blobs.size > this.maxBlobsPerPeer) this.drop(first(peer.blobs))
    while (blob.size > this.maxPeersPerBlob) this.drop(first(blob))
    while (this.entries.size > this.maxEntries) this.drop(first(this.entries))
  }

  /**
   * Up to `limit` live peers of a blob, never `excludePeerId`: completed peers
   * first, then the most advanced (by eighths of the blob held), in random
   * order within each group so that askers spread over the peers.
   */
  peersFor (digest: string, excludePeerId?: string, limit: number = DEFAULT_PEERS_PER_REPLY): TrackerPeer[] {
    this.expire()
    const blob = this.blobs.get(digest)
    let remaining = Math.max(0, Math.min(Math.floor(limit), MAX_PEERS_PER_BLOB))
    if (blob == null || remaining === 0) return []
    const groups = new Map<number, Entry[]>()
    for (const entry of blob.values()) {
      if (entry.peer.id === excludePeerId) continue
      const rank = rankOf(entry)
      const group = groups.get(rank)
      if (group == null) groups.set(rank, [entry])
      else group.push(entry)
    }
    const out: TrackerPeer[] = []
    for (const rank of [...groups.keys()].sort((a, b) => b - a)) {
      const group = groups.get(rank) as Entry[]
      const take = Math.min(remaining, group.length)
      this.partialShuffle(group, take)
      for (let i = 0; i < take; i++) {
        const e = group[i]
        out.push({ peerId: e.peer.id, addrs: [...e.peer.addrs], complete: e.complete, have: e.have })
      }
      remaining -= take
      if (remaining === 0) break
    }
    return out
  }

  /** Drop every entry whose TTL has passed; returns how many. Also done lazily by peersFor and stats. */
  expire (): number {
    const now = this.now()
    let dropped = 0
    for (const entry of this.entries.values()) {
      if (entry.expiresAt > now) break
      this.drop(entry)
      dropped++
    }
    return dropped
  }

  /** Forget a peer entirely (it went away). Returns whether it was known. */
  removePeer (peerId: string): boolean {
    const peer = this.peers.get(peerId)
    if (peer == null) return false
    for (const entry of [...peer.blobs.values()]) this.drop(entry)
    return true
  }

  /** The tracker's view for operators: each live peer, its addresses, and how many blobs it announced (at most `limit` peers). */
  peerList (limit = 1000): Array<{ peerId: string, addrs: string[], blobs: number }> {
    this.expire()
    const out: Array<{ peerId: string, addrs: string[], blobs: number }> = []
    for (const peer of this.peers.values()) {
      if (out.length >= limit) break
      out.push({ peerId: peer.id, addrs: [...peer.addrs], blobs: peer.blobs.size })
    }
    return out
  }

  stats (): TrackerStats {
    this.expire()
    return { blobs: this.blobs.size, peers: this.peers.size, entries: this.entries.size }
  }

  private drop (entry: Entry): void {
    this.entries.delete(entry.key)
    const blob = this.blobs.get(entry.digest)
    if (blob?.get(entry.peer.id) === entry) {
      blob.delete(entry.peer.id)
      if (blob.size === 0) this.blobs.delete(entry.digest)
    }
    entry.peer.blobs.delete(entry.digest)
    if (entry.peer.blobs.size === 0 && this.peers.get(entry.peer.id) === entry.peer) this.peers.delete(entry.peer.id)
  }

  /** Move `count` uniformly chosen elements, in random order, to the front of `items`. */
  private partialShuffle<T>(items: T[], count: number): void {
    for (let i = 0; i < count; i++) {
      const j = i + Math.min(items.length - i - 1, Math.floor(this.random() * (items.length - i)))
      const t = items[i]
      items[i] = items[j]
      items[j] = t
    }
  }
}

/** Completed peers rank above all; others by eighths of the blob held. */
function rankOf (e: Entry): number {
  if (e.complete) return Number.MAX_SAFE_INTEGER
  return Math.floor(e.have / Math.max(1, e.pieces / 8))
}

function toBack<K, V> (map: Map<K, V>, key: K, value: V): void {
  map.delete(key)
  map.set(key, value)
}

function first<K, V> (map: Map<K, V>): V {
  return map.values().next().value as V
}

function positive (name: string, value: number): number {
  if (!(value > 0)) throw new RangeError(`${name} must be positive, got ${value}`)
  return value
}
