import { createHash } from 'node:crypto'

/**
 * A piece's bytes: one buffer, or the chunks they arrived in. A piece read
 * off a libp2p stream is a list of decrypted frames; hashing and writing them
 * chunk by chunk spares copying half a megabyte into one buffer per piece.
 */
export type PieceBytes = Uint8Array | readonly Uint8Array[]

/** The bytes as a list of chunks (one buffer is a list of one). */
export function pieceChunks (bytes: PieceBytes): readonly Uint8Array[] {
  return bytes instanceof Uint8Array ? [bytes] : bytes
}

export function pieceByteLength (bytes: PieceBytes): number {
  let n = 0
  for (const c of pieceChunks(bytes)) n += c.byteLength
  return n
}

export function pieceSha256Hex (bytes: PieceBytes): string {
  const hash = createHash('sha256')
  for (const c of pieceChunks(bytes)) hash.update(c)
  return hash.digest('hex')
}

/** The bytes as one buffer (a copy only when they are in several chunks). */
export function pieceBuffer (bytes: PieceBytes): Uint8Array {
  const chunks = pieceChunks(bytes)
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
}
