import type { RegistryEndpoint } from '../../shared/oci/endpoints.js'
import type { BlobOptions, BlobResult, Credentials, GetBlobOptions } from '../../shared/oci/registry-types.js'
import { ANONYMOUS } from '../../shared/oci/registry-types.js'
import { sha256Hex } from '../../shared/oci/digest.js'
import { newManifest, type PieceManifest } from '../../shared/pieces/piece-manifest.js'
import { pieceLength, pieceRange, pieceSizeFor } from '../../shared/pieces/piece-math.js'
import { DigestMismatchError, ProtocolError, TimeoutError, UpstreamError } from '../../shared/errors.js'
import type { RateLimiter } from '../../shared/rate-limiter.js'
import type { BlobRequest } from '../blob-provider.js'
import type { PieceSource } from './piece-source.js'
import { pieceTimeoutMs } from './peer-source.js'
import type { UrlClient } from '../../shared/http/url-origin.js'

/** What back-to-source needs of a registry client (RegistryClient satisfies it). */
export interface OriginBlobClient {
  headBlob: (endpoint: RegistryEndpoint, repository: string, digest: string, opts?: BlobOptions) => Promise<{ size: number, digest: string }>
  getBlob: (endpoint: RegistryEndpoint, repository: string, digest: string, opts?: GetBlobOptions) => Promise<BlobResult>
}

export interface OriginAccessComponents {
  client: OriginBlobClient
  /** Registry name → where its API lives, resolved as the mirror resolves it. */
  resolveEndpoint: (registry: string) => RegistryEndpoint
  /** Shared bound on download bytes per second. */
  downloadLimiter?: RateLimiter
  /** Files named by URL (dfget); absent: such blobs have no back-to-source. */
  urls?: UrlClient
}

export interface OriginAccessInit {
  /** Range requests in flight to the origin at once, per blob (Kraken uses 5). */
  maxInFlight?: number
  /** Deadline for one piece: at least this, plus `msPerMiB` per MiB. */
  minPieceTimeoutMs?: number
  msPerMiB?: number
}

export const ORIGIN_SOURCE_ID = 'origin'
export const DEFAULT_ORIGIN_IN_FLIGHT = 4
/** The origin may need a token dance and a redirect before the first byte: a looser floor than a peer's. */
const DEFAULT_ORIGIN_MIN_PIECE_TIMEOUT_MS = 30_000

/**
 * Back-to-source for a daemon: the origin registry as a piece source (one
 * Range request per piece, with the requesting client's own Authorization),
 * and the blob's piece manifest built from the origin's answer to a HEAD when
 * neither the supernode nor a peer could give one.
 */
export class OriginAccess {
  private readonly c: OriginAccessComponents
  private readonly init: OriginAccessInit

  constructor (components: OriginAccessComponents, init: OriginAccessInit = {}) {
    this.c = components
    this.init = init
  }

  /**
   * The manifest for a blob only the origin knows: its size from a HEAD, the
   * piece size by the shared rule, no piece hashes (each is recorded as its
   * piece arrives; the whole-blob digest check at commit guards correctness).
   * A refusal (401 with the origin's challenge, 403, 404) is thrown as is.
   */
  async manifest (req: BlobRequest, signal?: AbortSignal): Promise<PieceManifest> {
    const { size } = req.url != null
      ? await this.urls().head(req.url, signal)
      : await this.c.client.headBlob(this.c.resolveEndpoint(req.registry), req.repository, req.digest.value, { credentials: credentialsOf(req), signal })
    return newManifest(req.digest, size, pieceSizeFor(size))
  }

  private urls (): UrlClient {
    if (this.c.urls == null) throw new UpstreamError('no way to fetch files by URL here')
    return this.c.urls
  }

  /** The origin as a piece source for `manifest` (kept live: hashes learnt later are checked too). */
  source (req: BlobRequest, manifest: PieceManifest): PieceSource {
    const endpoint = req.url == null ? this.c.resolveEndpoint(req.registry) : undefined
    const credentials = credentialsOf(req)
    const url = req.url
    const urls = url != null ? this.urls() : undefined
    const limiter = this.c.downloadLimiter
    const init = this.init
    return {
      id: ORIGIN_SOURCE_ID,
      kind: 'origin',
      maxInFlight: init.maxInFlight ?? DEFAULT_ORIGIN_IN_FLIGHT,
      has: () => true,
      fetch: async (index, signal) => {
        const length = pieceLength(manifest.size, manifest.pieceSize, index)
        const { start } = pieceRange(manifest.size, manifest.pieceSize, index)
        await limiter?.take(length, signal)
        const timeoutMs = pieceTimeoutMs(length, init.minPieceTimeoutMs ?? DEFAULT_ORIGIN_MIN_PIECE_TIMEOUT_MS, init.msPerMiB)
        const timeout = AbortSignal.timeout(timeoutMs)
        const both = AbortSignal.any([signal, timeout])
        let bytes: Buffer
        try {
          const range = { start, end: start + length - 1 }
          const res = url != null && urls != null
            ? await urls.get(url, { range, signal: both })
            : await this.c.client.getBlob(endpoint as RegistryEndpoint, req.repository, req.digest.value, { credentials, range, signal: both })
          bytes = await readExactly(res, length, index)
        } catch (err) {
          if (timeout.aborted && !signal.aborted) throw new TimeoutError(`piece ${index} from the origin: no answer within ${timeoutMs} ms`, { cause: err })
          throw err
        }
        // a piece hash known from the supernode or a peer must match; otherwise writePiece records it
        const expected = manifest.pieces[index]
        const sha256 = sha256Hex(bytes)
        if (expected != null && sha256 !== expected) throw new DigestMismatchError(`piece ${index} of ${req.digest.value} from the origin failed verification`)
        return { bytes, sha256 }
      }
    }
  }
}

async function readExactly (res: BlobResult, length: number, index: number): Promise<Buffer> {
  // getBlob checked that the answer starts where we asked; it must also be as long
  if (res.length !== undefined && res.length !== length) {
    res.cancel()
    throw new UpstreamError(`piece ${index}: the origin answered another range`)
  }
  const buf = Buffer.allocUnsafe(length)
  let filled = 0
  let done = false
  try {
    for await (const chunk of res.body) {
      if (filled + chunk.byteLength > length) throw new ProtocolError(`piece ${index}: the origin sent more than ${length} bytes`)
      buf.set(chunk, filled)
      filled += chunk.byteLength
    }
    done = true
  } finally {
    if (!done) res.cancel()
  }
  if (filled !== length) throw new UpstreamError(`piece ${index}: the origin sent ${filled} of ${length} bytes`)
  return buf
}

function credentialsOf (req: BlobRequest): Credentials {
  return req.authorization != null && req.authorization !== '' ? { kind: 'authorization', header: req.authorization } : ANONYMOUS
}
