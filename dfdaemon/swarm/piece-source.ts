import type { PieceBytes } from '../../shared/pieces/piece-bytes.js'

/** Where a piece can come from. */
export type SourceKind = 'supernode' | 'peer' | 'origin'

/** A piece's bytes and the sha256 (hex) they were checked against, or hashed to when none was known yet. */
export interface VerifiedPiece { bytes: PieceBytes, sha256: string }

/**
 * One place a download session can ask for pieces: the supernode, a
 * neighbouring daemon, or the origin itself. A source returns bytes already
 * checked against the piece's sha256 or throws.
 */
export interface PieceSource {
  /** Stable id (a peer id, or 'origin'). */
  readonly id: string
  readonly kind: SourceKind
  /** Requests this source may have in flight at once. */
  readonly maxInFlight: number
  /** Whether the source holds piece `index` now. */
  has: (index: number) => boolean
  fetch: (index: number, signal: AbortSignal) => Promise<VerifiedPiece>
}
