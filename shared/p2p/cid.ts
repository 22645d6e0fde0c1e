import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createMultihash } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import type { Digest } from '../oci/digest.js'

/**
 * The DHT key of a blob: CIDv1, raw codec, whose multihash is the blob's own
 * sha256 (the OCI digest) — so any daemon derives it from the digest alone.
 */
export function blobCid (digest: Digest): CID {
  return CID.createV1(raw.code, createMultihash(sha256.code, Buffer.from(digest.hex, 'hex')))
}
