import { join } from 'node:path'
import type { Digest } from '../oci/digest.js'

/**
 * Where the store keeps things under its root directory:
 *   blobs/sha256/<hex>/data            a complete, verified blob
 *   blobs/sha256/<hex>/manifest.json   its piece manifest
 *   partial/sha256/<hex>/data          a sparse file written at piece offsets
 *   partial/sha256/<hex>/state.json    its piece manifest and bitfield (resume)
 * Only these paths are ever created, read or deleted: quota and GC count only them.
 */
export class StoreLayout {
  constructor (readonly root: string) {}

  get blobsDir (): string { return join(this.root, 'blobs', 'sha256') }
  get partialDir (): string { return join(this.root, 'partial', 'sha256') }

  completeDir (d: Digest): string { return join(this.blobsDir, d.hex) }
  completeData (d: Digest): string { return join(this.completeDir(d), 'data') }
  completeManifest (d: Digest): string { return join(this.completeDir(d), 'manifest.json') }

  partialEntry (d: Digest): string { return join(this.partialDir, d.hex) }
  partialData (d: Digest): string { return join(this.partialEntry(d), 'data') }
  partialState (d: Digest): string { return join(this.partialEntry(d), 'state.json') }
}
