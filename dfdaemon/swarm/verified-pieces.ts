import type { Logger } from 'pino'
import type { BlobStore } from '../../shared/store/blob-store.js'
import type { PieceSource as StoredPieces } from '../../shared/p2p/piece-protocol.js'
import { sha256Hex, type Digest } from '../../shared/oci/digest.js'
import type { DaemonMetrics } from '../metrics.js'

export interface VerifiedPiecesComponents {
  store: Pick<BlobStore, 'getManifest' | 'readPiece' | 'getComplete' | 'remove'>
  metrics: Pick<DaemonMetrics, 'corruptPieces'>
  logger: Logger
}

/**
 * Pieces read from this host's store, each checked against its hash in the
 * piece manifest before anyone gets it (a peer through the piece server, or
 * the local client): rot on our own disk is found, never spread. A piece that
 * fails is not held: a complete blob it belongs to is dropped from the store,
 * so the next request fetches it again; a partial one is left to its
 * download, whose whole-blob check at commit discards it.
 */
export class VerifiedPieces implements StoredPieces {
  private readonly c: VerifiedPiecesComponents
  private readonly log: Logger

  constructor (components: VerifiedPiecesComponents) {
    this.c = components
    this.log = components.logger.child({ component: 'verified-pieces' })
  }

  async readPiece (digest: Digest, index: number): Promise<Uint8Array | undefined> {
    const manifest = await this.c.store.getManifest(digest)
    const expected = manifest?.pieces[index]
    if (expected == null) return undefined
    const bytes = await this.c.store.readPiece(digest, index)
    if (bytes == null) return undefined
    if (sha256Hex(bytes) === expected) return bytes
    await this.corrupt(digest, index)
    return undefined
  }

  private async corrupt (digest: Digest, index: number): Promise<void> {
    this.c.metrics.corruptPieces.inc()
    const complete = await this.c.store.getComplete(digest)
    this.log.error({ digest: digest.value, index, complete: complete != null }, 'stored piece does not match its hash; refusing it and dropping the blob')
    if (complete != null) await this.c.store.remove(digest)
  }
}
