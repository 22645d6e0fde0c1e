import type { PeerId } from '@libp2p/interface'
import type { PieceClient } from '../../shared/p2p/piece-client.js'
import { pieceLength } from '../../shared/pieces/piece-math.js'
import type { PieceManifest } from '../../shared/pieces/piece-manifest.js'
import { ProtocolError, TimeoutError } from '../../shared/errors.js'
import { Deadline } from '../../shared/deadline.js'
import { PAYLOAD_MAX_DEADLINES } from '../../shared/p2p/codec.js'
import type { PieceSource, SourceKind } from './piece-source.js'
import type { RateLimiter } from '../../shared/rate-limiter.js'

export interface PeerSourceInit {
  kind: SourceKind
  maxInFlight: number
  /**
   * Deadline for each step of one piece (stream, request, answer) and the longest
   * its bytes may stand still: at least `minPieceTimeoutMs`, plus `msPerMiB` for
   * each MiB. A piece whose bytes keep moving may take PAYLOAD_MAX_DEADLINES times it.
   */
  minPieceTimeoutMs?: number
  msPerMiB?: number
  /** Shared bound on download bytes per second. */
  downloadLimiter?: RateLimiter
  /** The supernode's ticket for this blob, when it is private. */
  ticket?: () => string | undefined
}

/** Deadline for one piece of `length` bytes (Kraken's rule: max(4 s, 4 s per MB), a little looser). */
export function pieceTimeoutMs (length: number, min = 10_000, perMiB = 4_000): number {
  return Math.max(min, Math.ceil(length / (1 << 20)) * perMiB)
}

/** A libp2p peer (the supernode or a neighbour) as a piece source for one blob. */
export function peerPieceSource (client: PieceClient, peer: PeerId, manifest: PieceManifest, has: (index: number) => boolean, init: PeerSourceInit): PieceSource {
  return {
    id: peer.toString(),
    kind: init.kind,
    maxInFlight: init.maxInFlight,
    has,
    fetch: async (index, signal) => {
      const sha256 = manifest.pieces[index]
      if (sha256 == null) throw new ProtocolError(`piece ${index} has no known hash yet`)
      const length = pieceLength(manifest.size, manifest.pieceSize, index)
      await init.downloadLimiter?.take(length, signal)
      const timeout = pieceTimeoutMs(length, init.minPieceTimeoutMs, init.msPerMiB)
      // the ceiling on the whole piece; each step has `timeout`, and the bytes may not stand still for longer
      const ceiling = timeout * PAYLOAD_MAX_DEADLINES
      const deadline = new Deadline(signal, ceiling, () => new TimeoutError(`piece ${index} not received in ${ceiling} ms`))
      try {
        const bytes = await client.fetch(peer, {
          digest: manifest.digest,
          index,
          sha256,
          length,
          signal: deadline.signal,
          messageTimeoutMs: timeout,
          ticket: init.ticket?.()
        })
        return { bytes, sha256 }
      } finally {
        deadline.clear()
      }
    }
  }
}
