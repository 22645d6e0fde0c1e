import type { FastifyInstance } from 'fastify'
import { parseReference, referenceTarget } from '../../shared/oci/reference.js'
import type { PreheatManager } from '../preheat/preheat-manager.js'
import type { PreheatJob } from '../preheat/preheat-job.js'
import { fromDragonfly } from '../preheat/dragonfly-request.js'
import { ErrorResponse } from './schemas.js'
import {
  JobIdParams, LegacyPreheatBody, LegacyPreheatCreated, LegacyPreheatStatus, OapiJob, OapiJobBody, OapiJobParams,
  PreheatBody, PreheatCreated, PreheatJobResponse
} from './preheat-schemas.js'

const errors = { '4xx': ErrorResponse, '5xx': ErrorResponse }
const LEGACY_STATUS = { PENDING: 'WAITING', RUNNING: 'RUNNING', SUCCESS: 'SUCCESS', FAILURE: 'FAILED' } as const

/**
 * Preheat over HTTP: `/api/v1/preheat` (damselfly's own), `/_ping` and
 * `/preheats` (Dragonfly's legacy API, Harbor's long-standing provider) and
 * `/oapi/v1/jobs` (Dragonfly's open API). One manager behind all three.
 */
export function registerPreheatRoutes (app: FastifyInstance, preheat: PreheatManager): void {
  app.post<{ Body: PreheatBody }>('/api/v1/preheat', {
    schema: { body: PreheatBody, response: { 202: PreheatCreated, ...errors } }
  }, async (req, reply) => {
    const ref = parseReference(req.body.image)
    const creds = req.body.credentials
    const job = preheat.submit({
      registry: ref.registry,
      repository: ref.repository,
      reference: referenceTarget(ref),
      platforms: req.body.platforms,
      credentials: creds === undefined ? { kind: 'anonymous' } : { kind: 'basic', ...creds }
    })
    return await reply.code(202).send({ id: job.id })
  })

  app.get<{ Params: JobIdParams }>('/api/v1/preheat/:id', {
    schema: { params: JobIdParams, response: { 200: PreheatJobResponse, ...errors } }
  }, async (req) => preheat.get(req.params.id).toJSON())

  app.get('/_ping', async (_req, reply) => await reply.type('text/plain').send('OK'))

  app.post<{ Body: LegacyPreheatBody }>('/preheats', {
    schema: { body: LegacyPreheatBody, response: { 200: LegacyPreheatCreated, ...errors } }
  }, async (req) => ({ ID: preheat.submit(fromDragonfly(req.body)).id }))

  app.get<{ Params: JobIdParams }>('/preheats/:id', {
    schema: { params: JobIdParams, response: { 200: LegacyPreheatStatus, ...errors } }
  }, async (req) => {
    const job = preheat.get(req.params.id)
    return {
      ID: job.id,
      status: LEGACY_STATUS[job.state],
      startTime: (job.startedAt ?? job.createdAt).toISOString(),
      finishTime: job.finishedAt?.toISOString() ?? '',
      errorMsg: job.error ?? ''
    }
  })

  app.post<{ Body: OapiJobBody }>('/oapi/v1/jobs', {
    schema: { body: OapiJobBody, response: { 200: OapiJob, ...errors } }
  }, async (req) => oapiJob(preheat.submit(fromDragonfly(req.body.args)), req.body.args.url))

  app.get<{ Params: OapiJobParams }>('/oapi/v1/jobs/:id', {
    schema: { params: OapiJobParams, response: { 200: OapiJob, ...errors } }
  }, async (req) => {
    const job = preheat.getBySeq(req.params.id)
    return oapiJob(job, '')
  })
}

/** Dragonfly's job model, without the credentials the request carried. */
function oapiJob (job: PreheatJob, url: string): OapiJobView {
  const state = job.state === 'SUCCESS' || job.state === 'FAILURE' ? job.state : 'PENDING'
  return {
    id: job.seq,
    type: 'preheat',
    state,
    created_at: job.createdAt.toISOString(),
    updated_at: (job.finishedAt ?? job.startedAt ?? job.createdAt).toISOString(),
    args: { type: 'image', url: url !== '' ? url : job.image, platform: job.platforms[0] ?? '' },
    result: { state, ...(job.error !== undefined ? { error: job.error } : {}) }
  }
}

interface OapiJobView {
  id: number
  type: 'preheat'
  state: 'PENDING' | 'SUCCESS' | 'FAILURE'
  created_at: string
  updated_at: string
  args: { type: string, url: string, platform: string }
  result: { state: string, error?: string }
}
