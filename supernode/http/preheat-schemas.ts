/** Bodies and answers of the preheat endpoints: damselfly's own, and Dragonfly's two shapes. */
import { Type, type Static } from '@sinclair/typebox'

const State = Type.Union(['PENDING', 'RUNNING', 'SUCCESS', 'FAILURE'].map(s => Type.Literal(s)))
const Platform = Type.String({ pattern: '^[a-z0-9_.-]+/[a-z0-9_.-]+(/[a-z0-9_.-]+)?$', maxLength: 100 })
const Headers = Type.Record(Type.String(), Type.Union([Type.String({ maxLength: 8192 }), Type.Array(Type.String({ maxLength: 8192 }), { maxItems: 8 })]))

export const PreheatBody = Type.Object({
  image: Type.String({ minLength: 1, maxLength: 800 }),
  platforms: Type.Optional(Type.Array(Platform, { maxItems: 32 })),
  credentials: Type.Optional(Type.Object({
    username: Type.String({ maxLength: 1024 }),
    password: Type.String({ maxLength: 8192 })
  }, { additionalProperties: false }))
}, { additionalProperties: false })
export type PreheatBody = Static<typeof PreheatBody>

export const PreheatCreated = Type.Object({ id: Type.String() })

export const PreheatJobResponse = Type.Object({
  id: Type.String(),
  image: Type.String(),
  platforms: Type.Array(Type.String()),
  state: State,
  layers: Type.Array(Type.Object({
    digest: Type.String(),
    size: Type.Integer(),
    state: State,
    bytes: Type.Integer()
  })),
  error: Type.Optional(Type.String()),
  createdAt: Type.String(),
  startedAt: Type.Optional(Type.String()),
  finishedAt: Type.Optional(Type.String())
})

export const JobIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) })
export type JobIdParams = Static<typeof JobIdParams>

/** Harbor's legacy provider; it may send fields we do not use (image, tag, digest, scope). */
export const LegacyPreheatBody = Type.Object({
  type: Type.Literal('image'),
  url: Type.String({ minLength: 1, maxLength: 2048 }),
  headers: Type.Optional(Headers)
})
export type LegacyPreheatBody = Static<typeof LegacyPreheatBody>

export const LegacyPreheatCreated = Type.Object({ ID: Type.String() })

export const LegacyPreheatStatus = Type.Object({
  ID: Type.String(),
  status: Type.Union(['WAITING', 'RUNNING', 'SUCCESS', 'FAILED'].map(s => Type.Literal(s))),
  startTime: Type.String(),
  finishTime: Type.String(),
  errorMsg: Type.String()
})

/** Dragonfly's open API (`/oapi/v1/jobs`), as Harbor's newer provider calls it. */
export const OapiJobBody = Type.Object({
  type: Type.Literal('preheat'),
  args: Type.Object({
    type: Type.Literal('image'),
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    platform: Type.Optional(Type.String({ maxLength: 100 })),
    headers: Type.Optional(Headers),
    username: Type.Optional(Type.String({ maxLength: 1024 })),
    password: Type.Optional(Type.String({ maxLength: 8192 }))
  })
})
export type OapiJobBody = Static<typeof OapiJobBody>

export const OapiJobParams = Type.Object({ id: Type.Integer({ minimum: 1 }) })
export type OapiJobParams = Static<typeof OapiJobParams>

export const OapiJob = Type.Object({
  id: Type.Integer(),
  type: Type.Literal('preheat'),
  state: Type.Union(['PENDING', 'SUCCESS', 'FAILURE'].map(s => Type.Literal(s))),
  created_at: Type.String(),
  updated_at: Type.String(),
  args: Type.Object({ type: Type.String(), url: Type.String(), platform: Type.String() }),
  result: Type.Object({
    state: Type.String(),
    error: Type.Optional(Type.String())
  })
})
