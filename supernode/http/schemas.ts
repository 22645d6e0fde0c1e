import { Type, type Static } from '@sinclair/typebox'

export const HealthResponse = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('starting')])
})
export type HealthResponse = Static<typeof HealthResponse>

export const InfoResponse = Type.Object({
  peerId: Type.String(),
  multiaddrs: Type.Array(Type.String())
})
export type InfoResponse = Static<typeof InfoResponse>

export const ErrorResponse = Type.Object({
  errors: Type.Array(Type.Object({
    code: Type.String(),
    message: Type.String()
  }))
})

export const TasksResponse = Type.Object({
  tasks: Type.Array(Type.Object({
    digest: Type.String(),
    state: Type.Union([Type.Literal('fetching'), Type.Literal('stored')])
  }))
})
export type TasksResponse = Static<typeof TasksResponse>

export const PeersResponse = Type.Object({
  peers: Type.Array(Type.Object({
    peerId: Type.String(),
    addrs: Type.Array(Type.String()),
    blobs: Type.Integer()
  }))
})
export type PeersResponse = Static<typeof PeersResponse>
