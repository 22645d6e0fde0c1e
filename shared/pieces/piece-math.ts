/**
 * How a blob is cut into pieces. One rule, used by the supernode when it starts
 * a task and by everyone who checks a manifest.
 *
 * Aim for about TARGET_PIECES pieces per blob so even a mid-size layer spreads
 * over many peers at once, within [MIN_PIECE_SIZE, MAX_PIECE_SIZE] so that small
 * layers are not cut into slivers and huge ones not into thousands of pieces.
 */
export const MIN_PIECE_SIZE = 1 << 19 // 512 KiB
export const MAX_PIECE_SIZE = 16 << 20 // 16 MiB
export const TARGET_PIECES = 512
/** The biggest blob a manifest may describe (1 TiB): a bound for validation, not a product limit. */
export const MAX_BLOB_SIZE = 2 ** 40

export function pieceSizeFor (blobSize: number): number {
  let size = MIN_PIECE_SIZE
  while (size < MAX_PIECE_SIZE && size * TARGET_PIECES < blobSize) size *= 2
  return size
}

export function pieceCount (blobSize: number, pieceSize: number): number {
  return blobSize === 0 ? 0 : Math.ceil(blobSize / pieceSize)
}

/** Byte range [start, end) of piece `index`. */
export function pieceRange (blobSize: number, pieceSize: number, index: number): { start: number, end: number } {
  const start = index * pieceSize
  return { start, end: Math.min(start + pieceSize, blobSize) }
}

export function pieceLength (blobSize: number, pieceSize: number, index: number): number {
  const { start, end } = pieceRange(blobSize, pieceSize, index)
  return end - start
}

/** Index of the piece holding byte `offset`. */
export function pieceAt (pieceSize: number, offset: number): number {
  return Math.floor(offset / pieceSize)
}
