import type { Readable } from 'node:stream'
import type { Digest } from '../shared/oci/digest.js'

/** A blob as the mirror asks for it: which registry, which repository, which digest, whose credentials. */
export interface BlobRequest {
  /** Registry name as clients know it (docker.io, 127.0.0.1:5000). */
  registry: string
  repository: string
  digest: Digest
  /** The client's own Authorization header, passed along to the origin; never logged. */
  authorization?: string
  /** dfget: the blob is this HTTP(S) file (registry and repository are then only labels). */
  url?: string
}

/** Byte range, both ends inclusive, as in HTTP. */
export interface ByteRange {
  start: number
  end: number
}

/**
 * Where the mirror gets blob bytes: the local store when the blob is there,
 * otherwise the swarm (supernode, peers) or the origin. Errors are typed
 * (UnauthorizedError with the origin's challenge, BlobUnknownError, …).
 */
export interface BlobProvider {
  /** The blob's size; may start its download so a GET that follows is fast. */
  stat: (req: BlobRequest, signal?: AbortSignal) => Promise<{ size: number }>
  /**
   * Bytes of the blob (or of `range`) streamed in order as pieces become
   * available; never the whole blob in memory. The download goes on for the
   * store if the client goes away.
   */
  open: (req: BlobRequest, range?: ByteRange, signal?: AbortSignal) => Promise<{ size: number, body: Readable }>
}
