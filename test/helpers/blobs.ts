/** Random blobs cut into pieces, with their manifests, for store and protocol tests. */
import { randomBytes } from 'node:crypto'
import { digestOf, sha256Hex, type Digest } from '../../shared/oci/digest.js'
import { newManifest, type PieceManifest } from '../../shared/pieces/piece-manifest.js'
import { pieceCount, pieceRange } from '../../shared/pieces/piece-math.js'

export interface TestBlob {
  bytes: Buffer
  digest: Digest
  /** A manifest with every piece hash known. */
  manifest: () => PieceManifest
  /** A manifest that knows no piece hash yet. */
  bare: () => PieceManifest
  piece: (i: number) => Buffer
  count: number
}

export function makeBlob (size: number, pieceSize: number): TestBlob {
  const bytes = randomBytes(size)
  const digest = digestOf(bytes)
  const piece = (i: number): Buffer => {
    const { start, end } = pieceRange(size, pieceSize, i)
    return bytes.subarray(start, end)
  }
  const count = pieceCount(size, pieceSize)
  return {
    bytes,
    digest,
    piece,
    count,
    bare: () => newManifest(digest, size, pieceSize),
    manifest: () => {
      const m = newManifest(digest, size, pieceSize)
      for (let i = 0; i < count; i++) m.pieces[i] = sha256Hex(piece(i))
      return m
    }
  }
}
