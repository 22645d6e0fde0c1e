/** OCI and Docker media types used by manifests, configs and layers. */

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'

export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const DOCKER_MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json'
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip'

/**
 * Every manifest type we understand. Send each as its own Accept header value: a
 * registry that does not see the type it stores may down-convert (schema1) or refuse.
 */
export const MANIFEST_ACCEPT: string[] = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2]

export function isIndexMediaType (mediaType: string): boolean {
  return mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST
}

export function isManifestMediaType (mediaType: string): boolean {
  return MANIFEST_ACCEPT.includes(mediaType)
}

/** `application/json; charset=utf-8` → `application/json` */
export function baseMediaType (contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined
  const base = contentType.split(';', 1)[0].trim().toLowerCase()
  return base === '' ? undefined : base
}
