import { Type, type Static } from '@sinclair/typebox'

/** Most blobs in one announce, and most peers handed out per blob. */
export const MAX_ANNOUNCED_BLOBS = 256
export const MAX_PEERS_PER_BLOB = 50

/**
 * The tracker protocol (daemon → supernode, TRACKER_PROTOCOL): a daemon says
 * where it can be reached and, per blob, which pieces it holds (a base64
 * bitfield); for the blobs it asks about it gets back a bounded list of peers.
 * Announces are soft state: a daemon repeats them while it downloads or seeds,
 * and drops out when it stops.
 */
export const TrackerAnnounce = Type.Object({
  /** The daemon's own multiaddrs (ending in its /p2p/ id). */
  addrs: Type.Array(Type.String({ maxLength: 300 }), { maxItems: 16 }),
  blobs: Type.Array(Type.Object({
    digest: Type.String({ maxLength: 80 }),
    /** Number of pieces of the blob. */
    pieces: Type.Integer({ minimum: 0, maximum: 1 << 20 }),
    /** Bitfield of held pieces, base64 (omitted when complete). */
    have: Type.Optional(Type.String({ maxLength: 200_000 })),
    complete: Type.Boolean(),
    /** Whether the daemon wants peers for this blob in the reply. */
    wantPeers: Type.Boolean()
  }, { additionalProperties: false }), { maxItems: MAX_ANNOUNCED_BLOBS })
}, { additionalProperties: false })
export type TrackerAnnounce = Static<typeof TrackerAnnounce>

export const TrackerPeer = Type.Object({
  peerId: Type.String({ maxLength: 100 }),
  addrs: Type.Array(Type.String({ maxLength: 300 }), { maxItems: 16 }),
  complete: Type.Boolean(),
  /** How many pieces it held when it last announced. */
  have: Type.Integer({ minimum: 0 })
})
export type TrackerPeer = Static<typeof TrackerPeer>

export const TrackerReply = Type.Object({
  blobs: Type.Array(Type.Object({
    digest: Type.String({ maxLength: 80 }),
    peers: Type.Array(TrackerPeer, { maxItems: MAX_PEERS_PER_BLOB })
  }), { maxItems: MAX_ANNOUNCED_BLOBS }),
  /** Seconds after which an announce is forgotten unless repeated. */
  ttl: Type.Integer({ minimum: 1 })
})
export type TrackerReply = Static<typeof TrackerReply>

/**
 * The tracker's answer when it will not record an announce (an address naming
 * another peer, a malformed address or digest): the OCI code of the error and
 * a message. A request that breaks the framing or the schema gets no answer:
 * its stream is aborted.
 */
export const TrackerRefusal = Type.Object({
  error: Type.Object({
    code: Type.String({ maxLength: 40 }),
    message: Type.String({ maxLength: 2000 })
  }, { additionalProperties: false })
}, { additionalProperties: false })
export type TrackerRefusal = Static<typeof TrackerRefusal>

/** What the tracker sends back for one announce: a reply or a refusal. */
export const TrackerAnswer = Type.Union([TrackerReply, TrackerRefusal])
export type TrackerAnswer = Static<typeof TrackerAnswer>
