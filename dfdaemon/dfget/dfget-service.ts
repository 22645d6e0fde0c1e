import type { Readable } from 'node:stream'
import { DamselflyError, UnavailableError } from '../../shared/errors.js'
import type { Digest } from '../../shared/oci/digest.js'
import { checkFileUrl } from '../../shared/http/url-origin.js'
import type { BlobProvider, BlobRequest } from '../blob-provider.js'
import type { BlobDownload } from '../swarm/blob-download.js'

/** Where a file's bytes came from, in bytes. */
export interface SourceTally {
  peer: number
  supernode: number
  origin: number
  /** Already held on this host. */
  local: number
}

export interface DfgetFile {
  digest: Digest
  size: number
  /** The file's bytes in order, each piece verified. */
  body: Readable
  /** Settles once the whole file is verified and stored here (the download's commit). */
  done: Promise<void>
  /** Bytes by source so far. */
  sources: () => SourceTally
}

export interface DfgetServiceComponents {
  blobs: Pick<BlobProvider, 'open'> & { active: (digest: string) => BlobDownload | undefined }
  /** The file's digest from the supernode, which fetches the file once to learn it. */
  resolve: (url: string, signal?: AbortSignal) => Promise<Digest>
}

/** Labels for a file's blob request: dfget blobs have no registry. */
export const DFGET_REGISTRY = 'dfget'
export const DFGET_REPOSITORY = 'dfget'

/**
 * dfget on a daemon: any HTTP(S) file as a blob of the swarm. With a digest
 * the file is that blob (the supernode fetches the URL once and checks it);
 * without one the supernode first learns the digest by fetching the file.
 * Either way the bytes then come from peers, the supernode or the URL itself
 * exactly as a layer's do. The supernode fetches only URLs on its --allow-url
 * list; its refusal (DENIED) is final: this daemon does not fetch the URL
 * itself then (only an unreachable supernode sends it back to source).
 */
export class DfgetService {
  private readonly c: DfgetServiceComponents

  constructor (components: DfgetServiceComponents) {
    this.c = components
  }

  async open (url: string, digest: Digest | undefined, signal?: AbortSignal): Promise<DfgetFile> {
    checkFileUrl(url)
    try {
      const d = digest ?? await this.c.resolve(url, signal)
      const req: BlobRequest = { registry: DFGET_REGISTRY, repository: DFGET_REPOSITORY, digest: d, url }
      const { size, body } = await this.c.blobs.open(req, undefined, signal)
      const dl = this.c.blobs.active(d.value)
      return {
        digest: d,
        size,
        body,
        done: dl?.done ?? Promise.resolve(),
        sources: () => dl == null ? { peer: 0, supernode: 0, origin: 0, local: size } : { ...dl.received, local: 0 }
      }
    } catch (err) {
      throw rootCause(err)
    }
  }
}

/** "No source could provide the blob" hides the reason a dfget user needs (404, digest mismatch). */
export function rootCause (err: unknown): unknown {
  let e = err
  while (e instanceof UnavailableError && e.cause instanceof DamselflyError) e = e.cause
  return e
}
