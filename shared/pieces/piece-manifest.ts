import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { parseDigest, type Digest } from '../oci/digest.js'
import { ProtocolError } from '../errors.js'
import { MAX_BLOB_SIZE, MAX_PIECE_SIZE, pieceCount } from './piece-math.js'

/**
 * What a blob is made of: its digest and size, the piece size, and the sha256 of
 * every piece known so far (null until the piece is complete on the supernode).
 */
export interface PieceManifest {
  digest: Digest
  size: number
  pieceSize: number
  /** Hex sha256 of each piece; null while the piece is not yet known. */
  pieces: Array<string | null>
}

/** The manifest as it travels in protocol messages and sits on disk. */
export const PieceManifestWire = Type.Object({
  digest: Type.String({ maxLength: 80 }),
  size: Type.Integer({ minimum: 0, maximum: MAX_BLOB_SIZE }),
  pieceSize: Type.Integer({ minimum: 1, maximum: MAX_PIECE_SIZE }),
  pieces: Type.Array(Type.Union([Type.String({ pattern: '^[a-f0-9]{64}$' }), Type.Null()]), { maxItems: 1 << 20 })
}, { additionalProperties: false })
export type PieceManifestWire = Static<typeof PieceManifestWire>

export function manifestToWire (m: PieceManifest): PieceManifestWire {
  return { digest: m.digest.value, size: m.size, pieceSize: m.pieceSize, pieces: [...m.pieces] }
}

/** Validate an untrusted manifest (from a peer or from disk); throws ProtocolError. */
export function manifestFromWire (input: unknown): PieceManifest {
  if (!Value.Check(PieceManifestWire, input)) throw new ProtocolError('malformed piece manifest')
  const digest = parseDigest(input.digest)
  if (input.pieces.length !== pieceCount(input.size, input.pieceSize)) {
    throw new ProtocolError(`piece manifest lists ${input.pieces.length} pieces, size ${input.size} needs ${pieceCount(input.size, input.pieceSize)}`)
  }
  return { digest, size: input.size, pieceSize: input.pieceSize, pieces: [...input.pieces] }
}

export function newManifest (digest: Digest, size: number, pieceSize: number): PieceManifest {
  return { digest, size, pieceSize, pieces: new Array<string | null>(pieceCount(size, pieceSize)).fill(null) }
}
