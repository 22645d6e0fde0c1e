/**
 * The streamed body of a blob response: optionally skips/limits bytes (when a registry ignored
 * a Range), checks the length against Content-Length and, for whole blobs, the digest.
 */
import { DigestMismatchError, UpstreamError } from '../errors.js'
import { DigestHasher } from './digest.js'

export interface BlobBodyInit {
  source: AsyncIterable<Uint8Array> & { destroy: (err?: Error) => unknown }
  /** Bytes the source should deliver (Content-Length), if known. */
  expectedLength?: number
  /** Verify the whole source against this digest. */
  digest?: string
  /** Drop this many leading bytes, then yield at most `limit` bytes. */
  skip?: number
  limit?: number
  wrapError: (err: unknown) => Error
  what: string
}

export async function * blobBody (init: BlobBodyInit): AsyncGenerator<Uint8Array, void, undefined> {
  const hasher = init.digest !== undefined ? new DigestHasher() : undefined
  let received = 0
  let toSkip = init.skip ?? 0
  let remaining = init.limit ?? Infinity
  let finished = false
  try {
    try {
      for await (const raw of init.source) {
        let chunk = raw
        received += chunk.byteLength
        hasher?.update(chunk)
        if (toSkip > 0) {
          const n = Math.min(toSkip, chunk.byteLength)
          chunk = chunk.subarray(n)
          toSkip -= n
        }
        if (chunk.byteLength > remaining) chunk = chunk.subarray(0, remaining)
        if (chunk.byteLength > 0) {
          remaining -= chunk.byteLength
          yield chunk
        }
        if (remaining === 0 && hasher === undefined) break
      }
    } catch (err) {
      throw init.wrapError(err)
    }
    if (remaining > 0 && init.expectedLength !== undefined && received < init.expectedLength) {
      throw new UpstreamError(`${init.what}: body truncated at ${received} of ${init.expectedLength} bytes`)
    }
    if (hasher !== undefined) {
      const actual = hasher.digest().value
      if (actual !== init.digest) throw new DigestMismatchError(`${init.what}: content hashes to ${actual}`)
    }
    finished = true
  } finally {
    if (!finished) init.source.destroy()
  }
}
