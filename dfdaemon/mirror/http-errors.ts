/**
 * Every error the mirror answers with, as the OCI error body `{errors:[{code,message}]}`.
 * Typed errors keep their code and status; fastify's own request errors keep their 4xx;
 * anything else is a 500 that says nothing about our internals.
 */
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { DamselflyError, InvalidRangeError, UnauthorizedError } from '../../shared/errors.js'
import type { Logger } from '../../shared/logging.js'

export const API_VERSION_HEADER = 'docker-distribution-api-version'
export const API_VERSION = 'registry/2.0'

export interface HttpError {
  status: number
  /** An OCI error code, or UNKNOWN (distribution's code for an internal error). */
  code: string
  message: string
  challenge?: string
}

/** Headers of a successful blob/manifest answer that must not survive on an error answer. */
const CONTENT_HEADERS = ['docker-content-digest', 'accept-ranges', 'etag', 'content-range', 'www-authenticate', 'content-encoding']

export function isV2Url (url: string | undefined): boolean {
  if (url === undefined) return false
  return url === '/v2' || url.startsWith('/v2/') || url.startsWith('/v2?')
}

export function toHttpError (err: unknown): HttpError {
  if (err instanceof DamselflyError) {
    // A 5xx message may carry upstream URLs or internals: the client gets the class's default.
    const message = err.status < 500 ? err.message : (err.constructor as typeof DamselflyError).defaultMessage
    const out: HttpError = { status: err.status, code: err.code, message }
    if (err instanceof UnauthorizedError && err.challenge !== undefined) out.challenge = err.challenge
    return out
  }
  const e = err as { statusCode?: unknown, code?: unknown, message?: unknown, validation?: unknown } | null
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500
  if (status >= 400 && status < 500) {
    return { status, code: codeForClientError(status, e?.validation !== undefined), message: typeof e?.message === 'string' ? e.message : 'bad request' }
  }
  return { status: 500, code: 'UNKNOWN', message: 'internal server error' }
}

function codeForClientError (status: number, validation: boolean): string {
  if (validation) return 'NAME_INVALID' // the only validated input is ?ns=, a registry name
  switch (status) {
    case 400: return 'NAME_INVALID' // FST_ERR_BAD_URL: an undecodable path
    case 401: return 'UNAUTHORIZED'
    case 403: return 'DENIED'
    case 413: return 'SIZE_INVALID'
    case 414: return 'NAME_INVALID'
    case 416: return 'RANGE_INVALID'
    case 429: return 'TOOMANYREQUESTS'
    default: return 'UNSUPPORTED'
  }
}

/** The one place an error becomes a response (error handler, 404 handler, framework errors). */
export function sendError (err: unknown, request: FastifyRequest, reply: FastifyReply, log: Logger): FastifyReply {
  const httpError = toHttpError(err)
  if (httpError.status >= 500) log.error({ err, url: request.url, method: request.method }, 'request failed')
  else log.debug({ code: httpError.code, url: request.url, method: request.method }, 'request refused')

  const keepRange = err instanceof InvalidRangeError
  for (const name of CONTENT_HEADERS) {
    if (keepRange && name === 'content-range') continue
    reply.removeHeader(name)
    if (!reply.raw.headersSent) reply.raw.removeHeader(name)
  }
  if (httpError.challenge !== undefined) reply.header('www-authenticate', httpError.challenge)
  if (isV2Url(request.url)) reply.header(API_VERSION_HEADER, API_VERSION)
  return reply
    .code(httpError.status)
    .type('application/json; charset=utf-8')
    .send({ errors: [{ code: httpError.code, message: httpError.message }] })
}

/** Malformed HTTP before fastify sees a request (header overflow, bad request line, timeout). */
export function clientErrorHandler (err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, reason, message] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'Request Header Fields Too Large', 'request headers too large']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout', 'request timed out']
      : [400, 'Bad Request', 'malformed request']
  const body = JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message }] })
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy(err)
}

