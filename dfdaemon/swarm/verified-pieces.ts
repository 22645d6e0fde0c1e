import type { Logger } from 'pino'
import { LRUCache } from 'lru-cache'
import type { BlobStore } from '../../shared/store/blob-store.js'
import type { PieceSource as StoredPieces } from '../../shared/p2p/piece-protocol.js'
import { sha256Hex, type Digest } from '../../shared/oci/digest.js'
import type { DaemonMetrics } from '../metrics.js'

export interface VerifiedPiecesInit {
  /** How long a piece checked (or just downloaded and checked) is served without hashing it again. */
  freshMs?: number
  /** Most pieces remembered as fresh. */
  maxFresh?: number
}

export const DEFAULT_FRESH_MS = 60_000

export interface VerifiedPiecesComponents {
  store: Pick<BlobStore, 'getManifest' | 'readPiece' | 'getComplete' | 'remove' | 'distrustPartial'>
  metrics: Pick<DaemonMetrics, 'corruptPieces'>
  logger: Logger
}

/**
 * Pieces read from this host's store, each checked against its hash in the
 * piece manifest before anyone gets it (a peer through the piece server, or
 * the local client): rot on our own disk is found, never spread. A piece that
 * fails is not held: a complete blob it belongs to is dropped from the store,
 * so the next request fetches it again; a partial one is left to its
 * download, and marked so that its commit hashes the whole file and discards it.
 *
 * A piece checked in the last minute (a download's piece as it arrived, or one
 * served already) is served without hashing it again: read back that soon it
 * comes from the page cache, so a second hash would check memory, not the disk,
 * at the cost of hashing every byte a swarm uploads once more.
 */
export class VerifiedPieces implements StoredPieces {
  private readonly c: VerifiedPiecesComponents
  private readonly log: Logger
  private readonly fresh: LRUCache<string, true> | undefined

  constructor (components: VerifiedPiecesComponents, init: VerifiedPiecesInit = {}) {
    this.c = components
    this.log = components.logger.child({ component: 'verified-pieces' })
    const ttl = init.freshMs ?? DEFAULT_FRESH_MS
    this.fresh = ttl > 0 ? new LRUCache({ max: init.maxFresh ?? 16_384, ttl }) : undefined
  }

  /** A piece that was just checked against its hash and written (a download's). */
  vouch (digest: Digest, index: number): void {
    this.fresh?.set(`${digest.value}#${index}`, true)
  }

  async readPiece (digest: Digest, index: number): Promise<Uint8Array | undefined> {
    const manifest = await this.c.store.getManifest(digest)
    const expected = manifest?.pieces[index]
    if (expected == null) return undefined
    const bytes = await this.c.store.readPiece(digest, index)
    if (bytes == null) return undefined
    const key = `${digest.value}#${index}`
    if (this.fresh?.has(key) === true) return bytes
    if (sha256Hex(bytes) === expected) {
      this.fresh?.set(key, true)
      return bytes
    }
    await this.corrupt(digest, index)
    return undefined
  }

  private async corrupt (digest: Digest, index: number): Promise<void> {
    for (const key of [...this.fresh?.keys() ?? []]) if (key.startsWith(`${digest.value}#`)) this.fresh?.delete(key)
    this.c.metrics.corruptPieces.inc()
    const complete = await this.c.store.getComplete(digest)
    this.log.error({ digest: digest.value, index, complete: complete != null }, 'stored piece does not match its hash; refusing it and dropping the blob')
    if (complete != null) await this.c.store.remove(digest)
    else this.c.store.distrustPartial(digest)
  }
}
