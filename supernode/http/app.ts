import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyBaseLogger } from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { DamselflyError, ociErrorBody } from '../../shared/errors.js'
import { ErrorResponse, HealthResponse, InfoResponse, PeersResponse, TasksResponse } from './schemas.js'
import { registerOperatorAuth } from './operator-auth.js'
import { registerPreheatRoutes } from './preheat-routes.js'
import type { PreheatManager } from '../preheat/preheat-manager.js'

export interface AppOptions {
  logger: Logger
  metrics: Registry
  /** The node's identity and addresses as peers should dial them. */
  info: () => InfoResponse
  /** True once the supernode serves (store open, libp2p listening). */
  ready: () => boolean
  /** Blobs being fetched and stored (GET /api/v1/tasks). */
  tasks?: () => Promise<TasksResponse>
  /** The tracker's view (GET /api/v1/peers). */
  peers?: () => PeersResponse
  /** Bearer token for the operator endpoints; absent: they are open. */
  apiToken?: string
  /** Require the token for /metrics and /healthz too. */
  protectMetrics?: boolean
  /** Preheat jobs (/api/v1/preheat, Dragonfly's /preheats and /oapi/v1/jobs); absent: no preheat routes. */
  preheat?: PreheatManager
}

/**
 * The supernode's operator API: health, identity, tasks, tracker peers, metrics
 * (operator endpoints behind a bearer token when one is configured). Built, never
 * listened on here: main() listens, tests use `app.inject()`.
 */
export function buildApp (opts: AppOptions): FastifyInstance {
  const log = opts.logger.child({ component: 'http' })
  // request logging off: routes log what matters, and headers (Authorization) never reach a log line
  const app = Fastify({ loggerInstance: log as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })

  app.setErrorHandler((err: FastifyError | Error, _req, reply) => {
    if (err instanceof DamselflyError) {
      void reply.code(err.status).send(ociErrorBody(err.code, err.message))
      return
    }
    const statusCode = 'statusCode' in err ? err.statusCode : undefined
    const status = typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500 ? statusCode : 500
    if (status === 500) log.error({ err: { name: err.name, message: err.message } }, 'request failed')
    void reply.code(status).send(ociErrorBody(status === 500 ? 'UNAVAILABLE' : 'UNSUPPORTED', status === 500 ? 'internal error' : err.message))
  })

  app.setNotFoundHandler((_req, reply) => {
    void reply.code(404).send(ociErrorBody('UNSUPPORTED', 'no such route'))
  })

  registerOperatorAuth(app, { token: opts.apiToken, protectMetrics: opts.protectMetrics })

  app.get('/healthz', {
    schema: { response: { 200: HealthResponse, 503: HealthResponse } }
  }, async (_req, reply) => {
    if (!opts.ready()) return await reply.code(503).send({ status: 'starting' })
    return { status: 'ok' as const }
  })

  app.get('/api/v1/info', {
    schema: { response: { 200: InfoResponse, '4xx': ErrorResponse, '5xx': ErrorResponse } }
  }, async () => opts.info())

  const tasks = opts.tasks
  if (tasks != null) {
    app.get('/api/v1/tasks', {
      schema: { response: { 200: TasksResponse, '4xx': ErrorResponse, '5xx': ErrorResponse } }
    }, async () => await tasks())
  }

  const peers = opts.peers
  if (peers != null) {
    app.get('/api/v1/peers', {
      schema: { response: { 200: PeersResponse, '4xx': ErrorResponse, '5xx': ErrorResponse } }
    }, async () => peers())
  }

  if (opts.preheat != null) registerPreheatRoutes(app, opts.preheat)

  app.get('/metrics', async (_req, reply) => {
    const text = await opts.metrics.metrics()
    return await reply.type(opts.metrics.contentType).send(text)
  })

  return app
}
