/**
 * `GET|HEAD /v2/<name>/blobs/<digest>`: bytes from the BlobProvider, whole or one range.
 * Headers go out with the first byte; an error before it is an OCI error answer, an error
 * after it destroys the response, so a client sees a truncated transfer, never wrong bytes.
 */
import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { InvalidRangeError, ProtocolError, UpstreamError } from '../../shared/errors.js'
import type { Digest } from '../../shared/oci/digest.js'
import type { BlobProvider, BlobRequest, ByteRange } from '../blob-provider.js'
import { contentRange, parseRange, unsatisfiedRange } from './range.js'

export interface BlobTarget {
  registry: string
  repository: string
  digest: Digest
  authorization?: string
}

export async function serveBlob (blobs: BlobProvider, target: BlobTarget, request: FastifyRequest, reply: FastifyReply, signal: AbortSignal): Promise<FastifyReply> {
  const req: BlobRequest = { registry: target.registry, repository: target.repository, digest: target.digest }
  if (target.authorization !== undefined) req.authorization = target.authorization
  const etag = `"${target.digest.value}"`

  if (request.method === 'HEAD') {
    const { size } = await blobs.stat(req, signal)
    blobHeaders(reply, target.digest, etag, size)
    return reply.code(200).send()
  }

  const rangeHeader = rangeApplies(request, etag, target.digest) ? request.headers.range : undefined
  let range: ByteRange | undefined
  if (rangeHeader !== undefined) {
    const { size } = await blobs.stat(req, signal)
    try {
      range = parseRange(rangeHeader, size)
    } catch (err) {
      if (err instanceof InvalidRangeError) reply.header('content-range', unsatisfiedRange(size))
      throw err
    }
  }

  const { size, body } = await blobs.open(req, range, signal)
  if (range !== undefined && range.end >= size) {
    body.destroy()
    throw new UpstreamError(`blob ${target.digest.value}: size changed between stat and open`)
  }
  const length = range === undefined ? size : range.end - range.start + 1
  blobHeaders(reply, target.digest, etag, length)
  if (range !== undefined) reply.code(206).header('content-range', contentRange(range, size))
  else reply.code(200)
  const out = Readable.from(exactly(body, length, target.digest.value), { objectMode: false })
  // A generator parked on a stalled provider cannot run its `finally` (nor `out` close):
  // release the provider's body directly when the client goes away.
  const release = (): void => { body.destroy() }
  signal.addEventListener('abort', release, { once: true })
  out.once('close', () => { signal.removeEventListener('abort', release) })
  return reply.send(out)
}

function blobHeaders (reply: FastifyReply, digest: Digest, etag: string, contentLength: number): void {
  reply.headers({
    'content-type': 'application/octet-stream',
    'content-length': String(contentLength),
    'docker-content-digest': digest.value,
    'accept-ranges': 'bytes',
    etag
  })
}

/** If-Range with anything but this blob's validator means "send it all" (RFC 9110 §13.1.5). */
function rangeApplies (request: FastifyRequest, etag: string, digest: Digest): boolean {
  const ifRange = request.headers['if-range']
  return ifRange === undefined || ifRange === etag || ifRange === digest.value
}

/** Exactly `length` bytes of `body` or an error: a provider that over- or under-delivers must not go unnoticed. */
async function * exactly (body: Readable, length: number, what: string): AsyncGenerator<Buffer, void, undefined> {
  let sent = 0
  try {
    for await (const chunk of body) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array)
      if (sent + buf.byteLength > length) throw new ProtocolError(`blob ${what}: more bytes than announced`)
      sent += buf.byteLength
      yield buf
    }
    if (sent < length) throw new UpstreamError(`blob ${what}: body ended after ${sent} of ${length} bytes`)
  } finally {
    body.destroy()
  }
}
