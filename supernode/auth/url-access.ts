import type { PeerId } from '@libp2p/interface'
import { DeniedError } from '../../shared/errors.js'
import { parseDigest } from '../../shared/oci/digest.js'
import type { BlobStore } from '../../shared/store/blob-store.js'
import type { BlobVisibility } from '../../shared/security/blob-visibility.js'
import { checkFileUrl, type UrlPolicy } from '../../shared/http/url-origin.js'
import type { BlobAccess, Grant } from './blob-access.js'

export interface UrlAccessComponents {
  visibility: Pick<BlobVisibility, 'isPublic' | 'set'>
  store: Pick<BlobStore, 'getComplete'>
  /** Digests being fetched from an origin now. */
  running: () => string[]
  tickets: Pick<BlobAccess, 'ticketFor'>
  /** The operator's --allow-url list (UrlAllowlist): the URLs this supernode fetches at all. */
  urls: UrlPolicy
}

/**
 * The gate for dfget tasks. First the URL: only those on the operator's
 * allow-list are fetched, whatever the digest (a swarm member must not turn
 * the supernode into a fetch proxy). Then the digest: a URL with a claimed
 * digest proves nothing until the file has been fetched and found to hash to
 * it, so: a digest known to be public is served; one this supernode holds or
 * fetches as a private registry blob is refused (naming a URL must not unlock
 * private bytes); otherwise the asker gets a ticket for the fetch it starts or
 * joins, and once the file has been verified its digest is public.
 */
export class UrlAccess {
  private readonly c: UrlAccessComponents
  /** Digests being fetched from a URL now: joining those is fine. */
  private readonly fetching = new Set<string>()

  constructor (components: UrlAccessComponents) {
    this.c = components
  }

  /** The URL a swarm member named, parsed; throws DeniedError (UrlNotAllowedError) before anything is fetched. */
  admit (url: string): URL {
    const parsed = checkFileUrl(url)
    this.c.urls.check(parsed, false)
    return parsed
  }

  async authorize (digest: string, peer: PeerId): Promise<Grant> {
    if (this.c.visibility.isPublic(digest)) return {}
    if (!this.fetching.has(digest)) {
      const held = this.c.running().includes(digest) || await this.c.store.getComplete(parseDigest(digest)) != null
      if (held) throw new DeniedError('this digest is held as a private blob; a URL cannot unlock it')
    }
    return { ticket: await this.c.tickets.ticketFor(digest, peer) }
  }

  /** Follow the fetch of `digest` from a URL; verified bytes are public. */
  track (digest: string, done: Promise<void>): void {
    if (this.c.visibility.isPublic(digest)) return
    this.fetching.add(digest)
    done.then(async () => { await this.c.visibility.set(digest, true) }, () => {})
      .finally(() => { this.fetching.delete(digest) })
      .catch(() => {})
  }
}
