import { Type, type Static } from '@sinclair/typebox'
import { PieceManifestWire } from '../pieces/piece-manifest.js'

/**
 * The task protocol (daemon → supernode, TASK_PROTOCOL): one request, then a
 * stream of answers — the piece manifest so far, a `piece` message as each
 * further piece completes on the supernode, and finally `done` or `error`.
 */
export const TaskRequest = Type.Object({
  /** Registry name as clients know it: docker.io, ghcr.io, 127.0.0.1:5000. */
  registry: Type.String({ minLength: 1, maxLength: 255 }),
  repository: Type.String({ minLength: 1, maxLength: 255 }),
  digest: Type.String({ maxLength: 80 }),
  /** The client's Authorization header, forwarded to the origin; never logged. */
  authorization: Type.Optional(Type.String({ maxLength: 16384 })),
  /**
   * dfget: the blob is this HTTP(S) file rather than a registry blob (registry
   * and repository are then only labels). With `digest` empty, the supernode
   * fetches the file first and its first answer's manifest names the digest.
   */
  url: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 }))
}, { additionalProperties: false })
export type TaskRequest = Static<typeof TaskRequest>

export const TaskAnswer = Type.Union([
  Type.Object({
    type: Type.Literal('manifest'),
    manifest: PieceManifestWire,
    /** Private blob: the supernode's signed ticket for the asking peer (see shared/security/ticket.ts). */
    ticket: Type.Optional(Type.String({ maxLength: 1024 }))
  }),
  Type.Object({ type: Type.Literal('piece'), index: Type.Integer({ minimum: 0 }), sha256: Type.String({ pattern: '^[a-f0-9]{64}$' }) }),
  Type.Object({ type: Type.Literal('done') }),
  Type.Object({
    type: Type.Literal('error'),
    code: Type.String({ maxLength: 40 }),
    message: Type.String({ maxLength: 2000 }),
    challenge: Type.Optional(Type.String({ maxLength: 4096 }))
  })
])
export type TaskAnswer = Static<typeof TaskAnswer>

/** How long a daemon waits for the next task answer before it calls the task stalled. */
export const TASK_PROGRESS_TIMEOUT_MS = 60_000
