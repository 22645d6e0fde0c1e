import { Counter, Gauge, type Registry } from 'prom-client'

/** The daemon's own metrics, all on one registry given by the composition root. */
export class DaemonMetrics {
  readonly pieceBytes: Counter<'source'>
  readonly pieces: Counter<'source'>
  readonly wastedBytes: Counter<'source'>
  readonly pieceFailures: Counter<'source' | 'reason'>
  readonly uploadBytes: Counter
  readonly piecesInFlight: Gauge
  readonly downloads: Counter<'result'>
  readonly localHits: Counter
  readonly corruptPieces: Counter
  readonly trackerAnnounces: Counter<'result'>
  readonly dhtLookups: Counter<'result'>
  readonly dhtProvides: Counter<'result'>
  readonly neighbours: Gauge

  constructor (registry: Registry, sample: { connections?: () => number } = {}) {
    const registers = [registry]
    const connections = sample.connections
    if (connections != null) {
      new Gauge({ name: 'damselfly_dfdaemon_peers_connected', help: 'libp2p connections open (supernode and neighbours)', registers, collect () { this.set(connections()) } })
    }
    this.pieceBytes = new Counter({ name: 'damselfly_dfdaemon_piece_bytes_total', help: 'Verified piece bytes received and stored, by source', labelNames: ['source'], registers })
    this.pieces = new Counter({ name: 'damselfly_dfdaemon_pieces_total', help: 'Verified pieces received, by source', labelNames: ['source'], registers })
    this.wastedBytes = new Counter({ name: 'damselfly_dfdaemon_piece_bytes_wasted_total', help: 'Verified piece bytes received after another source had delivered the piece (endgame duplicates)', labelNames: ['source'], registers })
    this.pieceFailures = new Counter({ name: 'damselfly_dfdaemon_piece_failures_total', help: 'Piece requests that failed, by source and reason', labelNames: ['source', 'reason'], registers })
    this.uploadBytes = new Counter({ name: 'damselfly_dfdaemon_upload_bytes_total', help: 'Piece bytes served to peers', registers })
    this.piecesInFlight = new Gauge({ name: 'damselfly_dfdaemon_pieces_in_flight', help: 'Piece requests in flight', registers })
    this.downloads = new Counter({ name: 'damselfly_dfdaemon_blob_downloads_total', help: 'Blob downloads finished, by result', labelNames: ['result'], registers })
    this.localHits = new Counter({ name: 'damselfly_dfdaemon_local_hits_total', help: 'Blob requests served from the local store', registers })
    this.corruptPieces = new Counter({ name: 'damselfly_dfdaemon_corrupt_pieces_total', help: 'Pieces read from the local store that failed their hash (the blob is dropped and fetched again)', registers })
    this.trackerAnnounces = new Counter({ name: 'damselfly_dfdaemon_tracker_announces_total', help: 'Announces to the supernode tracker, by result', labelNames: ['result'], registers })
    this.dhtLookups = new Counter({ name: 'damselfly_dfdaemon_dht_lookups_total', help: 'DHT provider lookups, by result', labelNames: ['result'], registers })
    this.dhtProvides = new Counter({ name: 'damselfly_dfdaemon_dht_provides_total', help: 'DHT provider records published, by result', labelNames: ['result'], registers })
    this.neighbours = new Gauge({ name: 'damselfly_dfdaemon_neighbours', help: 'Neighbours exchanging pieces with this daemon, over all blobs', registers })
    for (const source of ['supernode', 'peer', 'origin']) {
      this.pieceBytes.inc({ source }, 0)
      this.pieces.inc({ source }, 0)
    }
  }
}
