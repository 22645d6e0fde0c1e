import { createHash } from 'node:crypto'

/**
 * A piece's bytes: one buffer, or the chunks they arrived in. A piece read
 * off a libp2p stream is a list of decrypted frames; hashing and writing them
 * chunk by chunk spares copying half a megabyte into one buffer per piece.
 */
export type PieceBytes = Uint8Array | readonly Uint8Array[]

export function pieceByteLength (bytes: PieceBytes): number {
  if (!Array.isArray(bytes)) return (bytes as Uint8Array).byteLength
  let n = 0
  for (const c of bytes as readonly Uint8Array[]) n += c.byteLength
  return n
}

export function pieceSha256Hex (bytes: PieceBytes): string {
  const hash = createHash('sha256')
  if (Array.isArray(bytes)) for (const c of bytes as readonly Uint8Array[]) hash.update(c)
  else hash.update(bytes as Uint8Array)
  return hash.digest('hex')
}

/** The bytes as one buffer (a copy only when they are in several chunks). */
export function pieceBuffer (bytes: PieceBytes): Uint8Array {
  if (!Array.isArray(bytes)) return bytes as Uint8Array
  const chunks = bytes as readonly Uint8Array[]
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
}
