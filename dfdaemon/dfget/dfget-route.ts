/**
 * `GET /dfget?url=…[&digest=sha256:…]` on the mirror port, for loopback
 * clients only (it makes this host fetch URLs): the file's bytes, chunked, with
 * `x-dfget-digest` and `x-dfget-size` up front and the outcome in trailers —
 * `x-dfget-result` (`ok`, or an error code and message: a transfer that fails
 * after the first byte still says why) and `x-dfget-sources` (bytes by source).
 * A failure before the first byte is an OCI error answer, e.g. `403 DENIED`
 * for a URL the supernode refuses (not on its --allow-url list).
 */
import { once } from 'node:events'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { DamselflyError, DeniedError } from '../../shared/errors.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { rootCause, type DfgetService, type SourceTally } from './dfget-service.js'

const DfgetQuery = Type.Object({
  url: Type.String({ minLength: 1, maxLength: 8192 }),
  digest: Type.Optional(Type.String({ maxLength: 80 }))
})
type DfgetQuery = Static<typeof DfgetQuery>

export const DFGET_PATH = '/dfget'

export function registerDfgetRoute (app: FastifyInstance, service: DfgetService): void {
  app.get<{ Querystring: DfgetQuery }>(DFGET_PATH, { schema: { querystring: DfgetQuery } }, async (request, reply) => {
    if (!isLoopback(request.socket.remoteAddress)) throw new DeniedError('dfget is for local clients only')
    const digest = request.query.digest !== undefined ? parseDigest(request.query.digest) : undefined
    const gone = new AbortController()
    reply.raw.once('close', () => { if (!reply.raw.writableFinished) gone.abort(new Error('client went away')) })
    const file = await service.open(request.query.url, digest, gone.signal)
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'x-dfget-digest': file.digest.value,
      'x-dfget-size': String(file.size),
      trailer: 'x-dfget-result, x-dfget-sources'
    })
    let failure: unknown
    try {
      for await (const chunk of file.body) {
        if (!res.write(chunk)) await once(res, 'drain', { signal: gone.signal })
      }
      // the last piece may be out before the whole file was checked against its digest
      await file.done
    } catch (err) {
      failure = rootCause(err)
    } finally {
      file.body.destroy()
    }
    if (gone.signal.aborted) return
    res.addTrailers({ 'x-dfget-result': resultOf(failure), 'x-dfget-sources': formatSources(file.sources()) })
    res.end()
  })
}

function resultOf (err: unknown): string {
  if (err === undefined) return 'ok'
  const code = err instanceof DamselflyError ? err.code : 'UNAVAILABLE'
  const message = err instanceof Error ? err.message : String(err)
  // a trailer is one header line of visible ASCII
  return `${code} ${message}`.replace(/[^\x20-\x7e]/g, ' ').slice(0, 500)
}

export function formatSources (s: SourceTally): string {
  return `peer=${s.peer},supernode=${s.supernode},origin=${s.origin},local=${s.local}`
}

function isLoopback (addr: string | undefined): boolean {
  if (addr == null) return false
  return addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.')
}
