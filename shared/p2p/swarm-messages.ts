import { Type, type Static } from '@sinclair/typebox'
import { PieceManifestWire } from '../pieces/piece-manifest.js'

/**
 * The swarm protocol (daemon ↔ daemon, SWARM_PROTOCOL), one stream per blob
 * and neighbour. The opener says hello with its bitfield; the other side
 * answers with its piece manifest and bitfield (or an error); afterwards both
 * sides send `have` as pieces complete. Piece bytes travel on the piece
 * protocol, one stream per request, so a slow transfer never blocks a `have`.
 */
export const SwarmHello = Type.Object({
  type: Type.Literal('hello'),
  digest: Type.String({ maxLength: 80 }),
  have: Type.String({ maxLength: 200_000 }),
  /** The supernode's ticket for the greeting peer; a holder of a private blob welcomes no one without it. */
  ticket: Type.Optional(Type.String({ maxLength: 1024 }))
}, { additionalProperties: false })
export type SwarmHello = Static<typeof SwarmHello>

export const SwarmWelcome = Type.Union([
  Type.Object({ type: Type.Literal('welcome'), manifest: PieceManifestWire, have: Type.String({ maxLength: 200_000 }) }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('error'), code: Type.String({ maxLength: 40 }), message: Type.String({ maxLength: 1000 }) })
])
export type SwarmWelcome = Static<typeof SwarmWelcome>

export const SwarmUpdate = Type.Object({
  type: Type.Literal('have'),
  index: Type.Integer({ minimum: 0, maximum: 1 << 20 })
}, { additionalProperties: false })
export type SwarmUpdate = Static<typeof SwarmUpdate>
