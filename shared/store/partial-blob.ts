import { open, type FileHandle } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { Bitfield } from '../pieces/bitfield.js'
import { manifestFromWire, manifestToWire, type PieceManifest } from '../pieces/piece-manifest.js'
import { pieceLength, pieceRange } from '../pieces/piece-math.js'
import { pieceBuffer, pieceByteLength, pieceChunks, pieceSha256Hex, type PieceBytes } from '../pieces/piece-bytes.js'
import { DigestMismatchError, ProtocolError } from '../errors.js'
import { writeFileAtomic } from './atomic-write.js'
import { asDiskFull, isDiskFull } from './disk-full.js'

/**
 * Least time between two saves of the state while pieces arrive: each is a
 * data-file sync and an atomic rewrite with its own sync, and a crash costs at
 * most the pieces of this long, fetched again after the restart.
 */
export const STATE_SAVE_INTERVAL_MS = 500

/** On-disk state of a partial blob: enough to resume after a crash. */
interface PartialState {
  manifest: unknown
  bitfield: string
}

/**
 * One blob being downloaded: a sparse data file written at piece offsets, and
 * its manifest and bitfield persisted beside it. A piece is marked held only
 * after its bytes are written, so a restart never trusts a torn piece.
 * Callers verify piece bytes (or pass their hash); writePiece checks again
 * against the manifest when the hash is known.
 *
 * A full disk while writing a piece, or any failure to save the state, fails
 * the blob: every later write and flush throws that error, and `onFailure`
 * tells the owner (the store discards the entry).
 */
export class PartialBlob {
  readonly manifest: PieceManifest
  readonly bitfield: Bitfield
  private readonly fh: FileHandle
  private readonly statePath: string
  private persisting: Promise<void> = Promise.resolve()
  private persistQueued = false
  private closed = false
  private closing: Promise<void> | undefined
  /** Complete and leaving the partial store: its state is never saved again. */
  private sealed = false
  private failed: Error | undefined
  private doubted = false
  private lastSave = 0
  /** Cuts the wait before the next save short (flush, close). */
  private hurry: (() => void) | undefined
  private urgent = 0
  /** Called once when the blob fails (full disk, unsaved state); must not throw. */
  onFailure: ((err: Error) => void) | undefined

  private constructor (manifest: PieceManifest, bitfield: Bitfield, fh: FileHandle, statePath: string) {
    this.manifest = manifest
    this.bitfield = bitfield
    this.fh = fh
    this.statePath = statePath
  }

  static async create (manifest: PieceManifest, dataPath: string, statePath: string): Promise<PartialBlob> {
    const fh = await open(dataPath, 'w+', 0o644)
    try {
      await fh.truncate(manifest.size)
      // no state yet: a data file without one is no blob to resume (a restart starts it
      // afresh), and its first save waits out the interval like any other, so a blob that
      // completes within it is never saved as partial at all
      const blob = new PartialBlob(manifest, new Bitfield(manifest.pieces.length), fh, statePath)
      blob.lastSave = Date.now()
      return blob
    } catch (err) {
      await fh.close()
      throw asDiskFull(err, 'creating a partial blob')
    }
  }

  /** Reopen a partial blob left by an earlier run; throws if its state is unreadable. */
  static async resume (dataPath: string, statePath: string, stateText: string): Promise<PartialBlob> {
    let state: PartialState
    try {
      state = JSON.parse(stateText) as PartialState
    } catch {
      throw new ProtocolError('partial blob state is not JSON')
    }
    const manifest = manifestFromWire(state.manifest)
    const bitfield = Bitfield.fromBase64(manifest.pieces.length, String(state.bitfield))
    // writePiece records the hash of every piece it marks held; a held piece without one is not our state
    for (let i = 0; i < manifest.pieces.length; i++) {
      if (bitfield.has(i) && manifest.pieces[i] == null) throw new ProtocolError(`partial blob state holds piece ${i} without its hash`)
    }
    const fh = await open(dataPath, 'r+')
    const { size } = await fh.stat()
    if (size !== manifest.size) {
      await fh.close()
      throw new ProtocolError('partial blob data file has the wrong size')
    }
    const blob = new PartialBlob(manifest, bitfield, fh, statePath)
    // pieces an earlier process wrote: its commit hashes the whole file, whoever vouches for the pieces
    blob.doubted = true
    return blob
  }

  get digest (): string {
    return this.manifest.digest.value
  }

  get complete (): boolean {
    return this.bitfield.complete
  }

  /** Why the blob failed, if it did: it then takes no more pieces and cannot be committed. */
  get failure (): Error | undefined {
    return this.failed
  }

  /** Whether a held piece was found not to match its hash since it was written (rot on disk). */
  get suspect (): boolean {
    return this.doubted
  }

  /** Mark the data as suspect: the commit then hashes the whole file whatever vouched for the pieces. */
  distrust (): void {
    this.doubted = true
  }

  /** Bytes of the pieces held so far. */
  get heldBytes (): number {
    const { size, pieceSize } = this.manifest
    const last = this.manifest.pieces.length - 1
    let held = this.bitfield.count * pieceSize
    if (last >= 0 && this.bitfield.has(last)) held -= pieceSize - pieceLength(size, pieceSize, last)
    return held
  }

  /** Learn a piece's hash (the manifest grows while the supernode fetches). */
  setPieceHash (index: number, hex: string): void {
    const known = this.manifest.pieces[index]
    if (known != null && known !== hex) throw new ProtocolError(`piece ${index} hash changed`)
    this.manifest.pieces[index] = hex
  }

  /**
   * Store a piece's bytes. When the manifest knows the piece's hash the bytes
   * must match it; `hash` (already computed by the caller) saves hashing twice.
   */
  async writePiece (index: number, data: PieceBytes, hash?: string): Promise<void> {
    if (this.failed != null) throw this.failed
    if (this.closed) throw new ProtocolError('partial blob is closed')
    if (index < 0 || index >= this.manifest.pieces.length) throw new ProtocolError(`piece ${index} out of range`)
    const length = pieceByteLength(data)
    if (length !== pieceLength(this.manifest.size, this.manifest.pieceSize, index)) {
      throw new ProtocolError(`piece ${index} has ${length} bytes`)
    }
    const actual = hash ?? pieceSha256Hex(data)
    const expected = this.manifest.pieces[index]
    if (expected != null && expected !== actual) throw new DigestMismatchError(`piece ${index} does not match its hash`)
    if (this.bitfield.has(index)) return
    const { start } = pieceRange(this.manifest.size, this.manifest.pieceSize, index)
    try {
      await this.writeAt(data, length, start)
    } catch (err) {
      if (isDiskFull(err)) throw this.fail(asDiskFull(err, `writing piece ${index}`) as Error)
      throw err
    }
    if (expected == null) this.manifest.pieces[index] = actual
    this.bitfield.set(index)
    this.schedulePersist()
  }

  /** Write `length` bytes at `position`: the chunks in one writev, whatever a short write left one buffer at a time. */
  private async writeAt (data: PieceBytes, length: number, position: number): Promise<void> {
    let written = (await this.fh.writev(pieceChunks(data), position)).bytesWritten
    if (written === length) return
    const buf = pieceBuffer(data)
    while (written < length) {
      const { bytesWritten } = await this.fh.write(buf, written, length - written, position + written)
      written += bytesWritten
    }
  }

  /** Bytes of a held piece, or undefined. */
  async readPiece (index: number): Promise<Uint8Array | undefined> {
    if (!this.bitfield.has(index) || this.closed) return undefined
    const { start, end } = pieceRange(this.manifest.size, this.manifest.pieceSize, index)
    const buf = Buffer.allocUnsafe(end - start)
    let read = 0
    while (read < buf.byteLength) {
      const { bytesRead } = await this.fh.read(buf, read, buf.byteLength - read, start + read)
      if (bytesRead === 0) throw new ProtocolError('partial data file shorter than expected')
      read += bytesRead
    }
    return buf
  }

  /** Hash the whole data file in order; throws DigestMismatchError if it is not the blob. */
  async verify (): Promise<void> {
    const hash = createHash('sha256')
    const buf = Buffer.allocUnsafe(Math.min(4 << 20, Math.max(this.manifest.size, 1)))
    for (let pos = 0; pos < this.manifest.size;) {
      const { bytesRead } = await this.fh.read(buf, 0, Math.min(buf.byteLength, this.manifest.size - pos), pos)
      if (bytesRead === 0) throw new ProtocolError('partial data file shorter than expected')
      hash.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
    if (hash.digest('hex') !== this.manifest.digest.hex) throw new DigestMismatchError(`blob ${this.digest} does not match its digest`)
  }

  /** Wait until the state on disk holds every piece written so far; throws the blob's failure. */
  async flush (): Promise<void> {
    this.expedite()
    try {
      await this.persisting
      if (this.persistQueued) await this.persisting
    } finally {
      this.urgent--
    }
    if (this.failed != null) throw this.failed
  }

  /**
   * The blob is complete and about to become a complete entry: no state is saved
   * from now on (a save waiting for its turn is dropped; one under way is awaited),
   * and the data is synced to disk. Throws the blob's failure.
   */
  async seal (): Promise<void> {
    this.sealed = true
    this.hurry?.()
    await this.persisting
    if (this.failed != null) throw this.failed
    await this.fh.datasync()
  }

  /** Save what is pending (a failed blob saves nothing more) and close the data file. */
  async close (): Promise<void> {
    this.closing ??= (async () => {
      this.expedite()
      await this.persisting
      if (this.persistQueued) await this.persisting
      this.closed = true
      await this.fh.close()
    })()
    await this.closing
  }

  /** Save without waiting out the interval until the matching `urgent--` (close never gives it back). */
  private expedite (): void {
    this.urgent++
    this.hurry?.()
  }

  stateJson (): string {
    const state: PartialState = { manifest: manifestToWire(this.manifest), bitfield: this.bitfield.toBase64() }
    return JSON.stringify(state)
  }

  private async persistNow (): Promise<void> {
    // the state claims pieces held: their bytes must be on disk before it is
    const state = this.stateJson()
    await this.fh.datasync()
    await writeFileAtomic(this.statePath, state)
    this.lastSave = Date.now()
  }

  /**
   * Coalesce state writes: at most one in flight and one queued, and no sooner
   * than STATE_SAVE_INTERVAL_MS after the last unless someone flushes.
   */
  private schedulePersist (): void {
    if (this.persistQueued || this.sealed) return
    this.persistQueued = true
    this.persisting = this.persisting.then(async () => {
      const wait = this.lastSave + STATE_SAVE_INTERVAL_MS - Date.now()
      if (wait > 0 && this.urgent === 0) {
        await new Promise<void>(resolve => {
          const timer = setTimeout(resolve, wait)
          this.hurry = () => { clearTimeout(timer); resolve() }
        })
        this.hurry = undefined
      }
      this.persistQueued = false
      if (!this.closed && !this.sealed && this.failed == null) await this.persistNow()
    }).catch((err: unknown) => {
      // a state we cannot save would resume as less than we hold, or not at all: fail the blob
      this.fail(asDiskFull(err, 'saving partial blob state') as Error)
    })
  }

  private fail (err: Error): Error {
    if (this.failed != null) return this.failed
    this.failed = err
    try {
      this.onFailure?.(err)
    } catch { /* the owner's hook must not break the writer */ }
    return err
  }
}
