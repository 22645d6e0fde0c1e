import type { Credentials } from '../../shared/oci/registry-types.js'
import type { BlobRef } from './image-blobs.js'

export type PreheatState = 'PENDING' | 'RUNNING' | 'SUCCESS' | 'FAILURE'

/** What to preheat: one image reference, optionally a subset of its platforms. */
export interface PreheatRequest {
  registry: string
  repository: string
  /** Tag or digest. */
  reference: string
  /** `os/arch[/variant]`; absent or empty: every platform. */
  platforms?: string[]
  /** Used against the origin; kept only while the job runs, never reported. */
  credentials: Credentials
}

export interface LayerProgress {
  digest: string
  size: number
  state: PreheatState
  /** Bytes stored on the supernode so far. */
  bytes: number
}

/** One preheat: its request, state and per-blob progress; the manager runs it. */
export class PreheatJob {
  readonly id: string
  /** Numeric id for Dragonfly's open API. */
  readonly seq: number
  readonly image: string
  readonly platforms: string[]
  readonly createdAt = new Date()
  startedAt: Date | undefined
  finishedAt: Date | undefined
  state: PreheatState = 'PENDING'
  error: string | undefined
  layers: LayerProgress[] = []
  /** Dropped once the job finished: nothing keeps a password longer than it is needed. */
  request: PreheatRequest | undefined

  constructor (id: string, seq: number, request: PreheatRequest) {
    this.id = id
    this.seq = seq
    this.request = request
    this.platforms = request.platforms ?? []
    const sep = request.reference.includes(':') ? '@' : ':'
    this.image = `${request.registry}/${request.repository}${sep}${request.reference}`
  }

  get finished (): boolean {
    return this.state === 'SUCCESS' || this.state === 'FAILURE'
  }

  start (): void {
    this.state = 'RUNNING'
    this.startedAt = new Date()
  }

  setBlobs (blobs: BlobRef[]): void {
    this.layers = blobs.map(b => ({ digest: b.digest, size: b.size, state: 'PENDING', bytes: 0 }))
  }

  finish (err?: Error): void {
    if (this.finished) return
    this.state = err === undefined ? 'SUCCESS' : 'FAILURE'
    if (err !== undefined) this.error = `${err.name}: ${err.message}`
    this.finishedAt = new Date()
    this.request = undefined
  }

  /** The JSON view of GET /api/v1/preheat/:id. */
  toJSON (): { id: string, image: string, platforms: string[], state: PreheatState, layers: LayerProgress[], error?: string, createdAt: string, startedAt?: string, finishedAt?: string } {
    return {
      id: this.id,
      image: this.image,
      platforms: this.platforms,
      state: this.state,
      layers: this.layers.map(l => ({ ...l })),
      ...(this.error !== undefined ? { error: this.error } : {}),
      createdAt: this.createdAt.toISOString(),
      ...(this.startedAt !== undefined ? { startedAt: this.startedAt.toISOString() } : {}),
      ...(this.finishedAt !== undefined ? { finishedAt: this.finishedAt.toISOString() } : {})
    }
  }
}
