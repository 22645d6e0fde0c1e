/**
 * `GET|HEAD /v2/<name>/manifests/<reference>`: forwarded to the upstream through the
 * ManifestSource; the upstream's status, the headers a client needs and the body come back.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RegistryEndpoint } from '../../shared/oci/endpoints.js'
import type { ManifestSource } from './manifest-proxy.js'

export interface ManifestTarget {
  endpoint: RegistryEndpoint
  repository: string
  reference: string
  authorization?: string
}

/** `onServed`: called with a 200 GET's manifest bytes (when the source read them whole) as they go to the client. */
export async function serveManifest (manifests: ManifestSource, target: ManifestTarget, request: FastifyRequest, reply: FastifyReply, signal: AbortSignal,
  onServed?: (bytes: Buffer, contentType: string | undefined) => void): Promise<FastifyReply> {
  const method = request.method === 'HEAD' ? 'HEAD' : 'GET'
  const result = await manifests.fetch({
    endpoint: target.endpoint,
    repository: target.repository,
    reference: target.reference,
    method,
    accept: acceptValues(request.raw.rawHeaders),
    ...(target.authorization !== undefined ? { authorization: target.authorization } : {}),
    signal
  })
  reply.code(result.status).headers(result.headers)
  if (method === 'HEAD' || result.body === undefined) {
    result.body?.destroy()
    return reply.send()
  }
  if (result.status === 200 && result.bytes !== undefined) onServed?.(result.bytes, result.headers['content-type'])
  return reply.send(result.body)
}

/**
 * Every Accept header line as sent. Node joins repeated lines into one comma-separated
 * value in `headers`; the raw list keeps them apart.
 */
export function acceptValues (rawHeaders: string[]): string[] {
  const out: string[] = []
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() === 'accept') out.push(rawHeaders[i + 1])
  }
  return out
}
