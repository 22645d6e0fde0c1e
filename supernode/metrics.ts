import { Counter, Gauge, type Registry } from 'prom-client'

/** The supernode's own metrics; one place names them. */
export interface SupernodeMetrics {
  /** Bytes read from origin registries. */
  originBytes: Counter
  /** Origin fetches by result: `ok`, or the lowercased OCI code of the error. */
  originFetches: Counter<'result'>
  /** Piece bytes sent to peers. */
  uploadBytes: Counter
  /** Piece requests refused so daemons trade the piece among themselves (super-seeding). */
  superSeedRefusals: Counter
  /**
   * Task requests (a daemon asking for a blob) by result: `ok`, `abandoned` (the daemon
   * left first: a renewal takes the first answer only), or the lowercased OCI code of the
   * refusal or failure (`denied` for a registry outside --allow-registry, too).
   */
  tasks: Counter<'result'>
  /** Tracker announces by result: `ok`, `refused` (answered with an error) or `failed` (stream aborted). */
  trackerAnnounces: Counter<'result'>
  /** Blobs the tracker knows at least one live peer of. */
  trackerBlobs: Gauge
  /** Peers the tracker knows at least one live blob of. */
  trackerPeers: Gauge
}

export function createSupernodeMetrics (registry: Registry): SupernodeMetrics {
  return {
    originBytes: new Counter({
      name: 'damselfly_supernode_origin_bytes_total',
      help: 'Bytes read from origin registries',
      registers: [registry]
    }),
    originFetches: new Counter({
      name: 'damselfly_supernode_origin_fetches_total',
      help: 'Blob fetches from origin registries, by result',
      labelNames: ['result'] as const,
      registers: [registry]
    }),
    uploadBytes: new Counter({
      name: 'damselfly_supernode_upload_bytes_total',
      help: 'Piece bytes served to peers',
      registers: [registry]
    }),
    superSeedRefusals: new Counter({
      name: 'damselfly_supernode_superseed_refusals_total',
      help: 'Piece requests refused so the daemons trade the piece among themselves',
      registers: [registry]
    }),
    tasks: new Counter({
      name: 'damselfly_supernode_tasks_total',
      help: 'Task requests (a daemon asking for a blob), by result',
      labelNames: ['result'] as const,
      registers: [registry]
    }),
    trackerAnnounces: new Counter({
      name: 'damselfly_supernode_tracker_announces_total',
      help: 'Tracker announces received, by result',
      labelNames: ['result'] as const,
      registers: [registry]
    }),
    trackerBlobs: new Gauge({
      name: 'damselfly_supernode_tracker_blobs',
      help: 'Blobs the tracker knows at least one live peer of',
      registers: [registry]
    }),
    trackerPeers: new Gauge({
      name: 'damselfly_supernode_tracker_peers',
      help: 'Peers the tracker knows at least one live blob of',
      registers: [registry]
    })
  }
}
