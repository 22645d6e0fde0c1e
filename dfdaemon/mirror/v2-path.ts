/**
 * `/v2/<name>/(manifests|blobs)/<reference>` parsed from the raw request URL. Repository names
 * contain slashes, so no router parameter can hold them; and the raw URL is what must be
 * checked, before any decoding, so that `%2F`, `..` or a backslash can never name another path.
 */
import { InvalidNameError, InvalidReferenceError } from '../../shared/errors.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { isValidTag } from '../../shared/oci/reference.js'
import { UriTooLongError } from './errors.js'

/** Longest request URL accepted: a 255-character name, a reference and a query fit many times. */
export const MAX_URL_LENGTH = 2048
/** Longest `<name>` (registry prefix included) looked at; the repository rule (255) applies later. */
const MAX_PATH_NAME_LENGTH = 512

export type V2Kind = 'manifests' | 'blobs'

export interface V2Path {
  kind: V2Kind
  /** Repository as in the URL, possibly led by a registry (`docker.io/library/alpine`). */
  name: string
  /** A tag or a `sha256:` digest for manifests; always a digest for blobs. */
  reference: string
  /** True when `reference` is a digest. */
  byDigest: boolean
}

/** Throws UriTooLongError when the URL is longer than MAX_URL_LENGTH. */
export function checkUrlLength (url: string): void {
  if (url.length > MAX_URL_LENGTH) throw new UriTooLongError()
}

/**
 * undefined when the path is not a manifest or blob path (the caller answers 404).
 * Throws InvalidNameError (traversal, encoding, empty segments), InvalidDigestError (bad
 * digest) or InvalidReferenceError (bad tag).
 */
export function parseV2Path (rawUrl: string): V2Path | undefined {
  checkUrlLength(rawUrl)
  const q = rawUrl.indexOf('?')
  const path = q === -1 ? rawUrl : rawUrl.slice(0, q)
  if (!path.startsWith('/v2/')) return undefined

  const segments = path.slice('/v2/'.length).split('/')
  if (segments.length < 3) return undefined
  const kind = segments[segments.length - 2]
  if (kind !== 'manifests' && kind !== 'blobs') return undefined
  const reference = segments[segments.length - 1]
  const nameSegments = segments.slice(0, -2)

  for (const segment of nameSegments) checkNameSegment(segment)
  const name = nameSegments.join('/')
  if (name.length > MAX_PATH_NAME_LENGTH) throw new InvalidNameError('repository name too long')

  if (kind === 'blobs') return { kind, name, reference: parseDigest(reference).value, byDigest: true }
  if (reference.includes(':')) return { kind, name, reference: parseDigest(reference).value, byDigest: true }
  if (!isValidTag(reference)) throw new InvalidReferenceError(`invalid tag: ${JSON.stringify(reference.slice(0, 80))}`)
  return { kind, name, reference, byDigest: false }
}

function checkNameSegment (segment: string): void {
  if (segment === '') throw new InvalidNameError('empty path segment in repository name')
  if (segment === '.' || segment === '..') throw new InvalidNameError('dot segment in repository name')
  if (segment.includes('%')) throw new InvalidNameError('percent-encoding in repository name')
  if (segment.includes('\\')) throw new InvalidNameError('backslash in repository name')
}
