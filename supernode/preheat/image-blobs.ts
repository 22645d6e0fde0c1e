/**
 * What preheating an image means in blobs: the manifest (or the index's
 * manifests for the wanted platforms) resolved to every config and layer.
 */
import type { RegistryEndpoint } from '../../shared/oci/endpoints.js'
import type { Credentials, ManifestOptions, ManifestResult } from '../../shared/oci/registry-types.js'
import { isIndexMediaType } from '../../shared/oci/media-types.js'
import { isDigest } from '../../shared/oci/digest.js'
import { UpstreamError } from '../../shared/errors.js'
import { PlatformUnknownError } from './errors.js'

/** What the preheat needs of a registry client (RegistryClient satisfies it). */
export interface ManifestClient {
  getManifest: (endpoint: RegistryEndpoint, repository: string, reference: string, opts?: ManifestOptions) => Promise<ManifestResult>
}

export interface BlobRef { digest: string, size: number, mediaType: string }

interface Platform { os?: string, architecture?: string, variant?: string }
interface Descriptor { mediaType?: string, digest?: unknown, size?: unknown, platform?: Platform, urls?: unknown }
interface ManifestJson { mediaType?: string, manifests?: Descriptor[], config?: Descriptor, layers?: Descriptor[] }

export interface ResolveOptions {
  /** `os/arch[/variant]`; empty or absent: every platform of an index. */
  platforms?: string[]
  credentials: Credentials
  signal?: AbortSignal
}

/** The distinct config and layer blobs of `repository:reference` for the wanted platforms. */
export async function resolveImageBlobs (client: ManifestClient, endpoint: RegistryEndpoint, repository: string, reference: string, opts: ResolveOptions): Promise<BlobRef[]> {
  const get = async (ref: string): Promise<{ mediaType: string, json: ManifestJson }> => {
    const res = await client.getManifest(endpoint, repository, ref, { credentials: opts.credentials, signal: opts.signal })
    return { mediaType: res.mediaType, json: parseJson(res.body, `${repository}@${ref}`) }
  }
  const top = await get(reference)
  const images: ManifestJson[] = []
  if (isIndexMediaType(top.mediaType) || Array.isArray(top.json.manifests)) {
    const wanted = opts.platforms ?? []
    const children = (top.json.manifests ?? []).filter(d => wanted.length === 0 ? !isAttestation(d) : wanted.some(p => matches(d.platform, p)))
    if (children.length === 0) throw new PlatformUnknownError(`${repository}:${reference} has no manifest for ${wanted.join(', ')}`)
    for (const child of children) {
      if (typeof child.digest !== 'string' || !isDigest(child.digest)) throw new UpstreamError(`${repository}:${reference}: index entry without a valid digest`)
      const m = await get(child.digest)
      if (isIndexMediaType(m.mediaType)) throw new UpstreamError(`${repository}@${child.digest}: nested index`)
      images.push(m.json)
    }
  } else {
    images.push(top.json)
  }
  const blobs = new Map<string, BlobRef>()
  for (const image of images) {
    // foreign layers (`urls`) live elsewhere: the registry cannot serve them
    for (const d of [image.config, ...(image.layers ?? [])]) {
      if (d == null || d.urls !== undefined) continue
      if (typeof d.digest !== 'string' || !isDigest(d.digest) || typeof d.size !== 'number') throw new UpstreamError(`${repository}:${reference}: descriptor without digest or size`)
      blobs.set(d.digest, { digest: d.digest, size: d.size, mediaType: d.mediaType ?? '' })
    }
  }
  return [...blobs.values()]
}

function parseJson (body: Buffer | undefined, what: string): ManifestJson {
  try {
    const json: unknown = JSON.parse((body ?? Buffer.alloc(0)).toString('utf8'))
    if (json !== null && typeof json === 'object') return json
  } catch { /* reported below */ }
  throw new UpstreamError(`${what}: manifest is not a JSON object`)
}

/** BuildKit's attestation manifests carry platform unknown/unknown. */
function isAttestation (d: Descriptor): boolean {
  return d.platform?.os === 'unknown' && d.platform.architecture === 'unknown'
}

function matches (platform: Platform | undefined, wanted: string): boolean {
  const [os, architecture, variant] = wanted.split('/')
  if (platform?.os !== os || platform.architecture !== architecture) return false
  return variant === undefined || platform.variant === variant
}
