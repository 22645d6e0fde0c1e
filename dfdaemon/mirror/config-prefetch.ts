/**
 * Image configs fetched the moment their manifest passes through the mirror.
 * Clients ask for the config after the layers (docker, skopeo) or alongside
 * them, and a config is a few hundred bytes whose fetch is all round trips
 * (supernode task, origin, piece): started with the manifest, it is on this
 * host by the time the client asks. Only a GET that returned an image
 * manifest starts one (HEAD, indexes and other artifacts do not), with the
 * client's own credentials; a failure is the client's to meet when it asks.
 */
import type { Logger } from '../../shared/logging.js'
import { parseDigest, type Digest } from '../../shared/oci/digest.js'
import { baseMediaType, DOCKER_MANIFEST_V2, OCI_MANIFEST } from '../../shared/oci/media-types.js'
import type { BlobProvider, BlobRequest } from '../blob-provider.js'

const IMAGE_MANIFESTS = new Set([OCI_MANIFEST, DOCKER_MANIFEST_V2])

/** Configs bigger than this are left for the client to ask for. */
export const MAX_PREFETCH_CONFIG_BYTES = 1 << 20

/** The config an image manifest names, or undefined for anything else (index, artifact, junk). */
export function configOf (body: Buffer, contentType: string | undefined): { digest: Digest, size: number } | undefined {
  let doc: unknown
  try {
    doc = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof doc !== 'object' || doc === null) return undefined
  const m = doc as { mediaType?: unknown, config?: { digest?: unknown, size?: unknown } }
  const mediaType = typeof m.mediaType === 'string' ? m.mediaType : baseMediaType(contentType)
  if (mediaType === undefined || !IMAGE_MANIFESTS.has(mediaType)) return undefined
  const { digest, size } = m.config ?? {}
  if (typeof digest !== 'string' || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined
  try {
    return { digest: parseDigest(digest), size }
  } catch {
    return undefined
  }
}

export class ConfigPrefetcher {
  private readonly blobs: Pick<BlobProvider, 'stat'>
  private readonly log: Logger

  constructor (components: { blobs: Pick<BlobProvider, 'stat'>, logger: Logger }) {
    this.blobs = components.blobs
    this.log = components.logger.child({ component: 'config-prefetch' })
  }

  /**
   * Start fetching the config `manifest` names, if it is an image manifest
   * with a small config; never throws, never waits.
   */
  manifestServed (manifest: Buffer, contentType: string | undefined, from: Omit<BlobRequest, 'digest' | 'url'>): void {
    const config = configOf(manifest, contentType)
    if (config === undefined || config.size > MAX_PREFETCH_CONFIG_BYTES) return
    // stat starts the blob's one download on this host (or finds it stored) and lets it run to the end
    this.blobs.stat({ ...from, digest: config.digest }).catch((err: Error) => {
      this.log.debug({ digest: config.digest.value, err: { name: err.name, message: err.message } }, 'config prefetch failed')
    })
  }
}
