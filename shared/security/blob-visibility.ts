import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Which blobs on this host are public: those the supernode answered without a
 * ticket. Every other blob (a ticket came with it, or it arrived without the
 * supernode's word: from DHT peers or back-to-source) is private and goes
 * only to peers with a ticket. Kept as one empty file per digest beside the
 * store (not in it: the quota counts blob data only), so a restarted daemon
 * keeps its answers. A lost mark only makes the daemon stricter.
 */
export class BlobVisibility {
  private readonly dir: string
  private readonly publicDigests = new Set<string>()

  constructor (dir: string) {
    this.dir = dir
  }

  async init (): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    for (const name of await readdir(this.dir)) {
      if (/^[a-f0-9]{64}$/.test(name)) this.publicDigests.add(`sha256:${name}`)
    }
  }

  isPublic (digest: string): boolean {
    return this.publicDigests.has(digest)
  }

  /** Record what the supernode said: no ticket means public, a ticket private. */
  async set (digest: string, isPublic: boolean): Promise<void> {
    const m = /^sha256:([a-f0-9]{64})$/.exec(digest)
    if (m == null || this.publicDigests.has(digest) === isPublic) return
    if (isPublic) {
      this.publicDigests.add(digest)
      await writeFile(join(this.dir, m[1]), '')
    } else {
      this.publicDigests.delete(digest)
      await rm(join(this.dir, m[1]), { force: true })
    }
  }
}
