/**
 * Build real (runnable-by-unpacking) images from deterministic layers and push them to a
 * registry through the distribution HTTP API.
 */
import { hash as oneShotHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import pino from 'pino'
import { digestOf } from '../../shared/oci/digest.js'
import { endpointFromUrl, type RegistryEndpoint } from '../../shared/oci/endpoints.js'
import * as mt from '../../shared/oci/media-types.js'
import { RegistryClient } from '../../shared/oci/registry-client.js'
import type { Credentials } from '../../shared/oci/registry-types.js'

export interface LayerSpec { size: number, seed?: string }
export interface Descriptor { mediaType: string, digest: string, size: number }
export interface PushedManifest extends Descriptor { platform: string, body: Buffer, config: Descriptor }

export interface PushImageOptions {
  repository: string
  tag: string
  layers: LayerSpec[]
  credentials?: { username: string, password: string }
  /** `os/arch[/variant]`; more than one → an index (OCI) / manifest list (docker). */
  platforms?: string[]
  format?: 'oci' | 'docker'
}

export interface PushedImage {
  /** The first (or only) image manifest. */
  manifestDigest: string
  /** The index the tag points at, when several platforms were pushed. */
  indexDigest?: string
  /** What the tag resolves to: indexDigest ?? manifestDigest. */
  tagDigest: string
  manifests: PushedManifest[]
  index?: { digest: string, size: number, mediaType: string, body: Buffer }
  config: { digest: string, size: number }
  layers: Array<{ digest: string, size: number, diffId: string }>
}

/** `size` deterministic incompressible bytes: sha256 in counter mode over the seed. */
export function deterministicBytes (seed: string, size: number): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(size / 32) * 32)
  const block = Buffer.alloc(Buffer.byteLength(seed) + 8)
  block.write(seed)
  for (let i = 0; i * 32 < size; i++) {
    block.writeBigUInt64BE(BigInt(i), block.length - 8)
    out.set(oneShotHash('sha256', block, 'buffer') as unknown as Buffer, i * 32)
  }
  return out.subarray(0, size)
}

function tarHeader (name: string, size: number, type: '0' | '5'): Buffer {
  const h = Buffer.alloc(512)
  const field = (value: string, offset: number, len: number): void => { h.write(value, offset, len, 'ascii') }
  field(name, 0, 100)
  field(type === '5' ? '0000755\0' : '0000644\0', 100, 8)
  field('0000000\0', 108, 8)
  field('0000000\0', 116, 8)
  field(size.toString(8).padStart(11, '0') + '\0', 124, 12)
  field((1_700_000_000).toString(8).padStart(11, '0') + '\0', 136, 12)
  field('        ', 148, 8)
  field(type, 156, 1)
  field('ustar\0', 257, 6)
  field('00', 263, 2)
  let sum = 0
  for (const b of h) sum += b
  field(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8)
  return h
}

/** A gzip'd tar holding `data/layer-<id>.bin`; same size and seed → same bytes → same digest. */
export function makeLayer (spec: LayerSpec, fallbackSeed: string): { blob: Buffer, diffId: string } {
  const seed = spec.seed ?? fallbackSeed
  const data = deterministicBytes(seed, spec.size)
  const id = digestOf(`${seed}/${spec.size}`).hex.slice(0, 12)
  const pad = Buffer.alloc((512 - (spec.size % 512)) % 512)
  const tar = Buffer.concat([tarHeader('data/', 0, '5'), tarHeader(`data/layer-${id}.bin`, spec.size, '0'), data, pad, Buffer.alloc(1024)])
  return { blob: gzipSync(tar, { level: 1 }), diffId: digestOf(tar).value }
}

function parsePlatform (p: string): { os: string, architecture: string, variant?: string } {
  const [os, architecture, variant] = p.split('/')
  return variant === undefined ? { os, architecture } : { os, architecture, variant }
}

export async function pushBlob (client: RegistryClient, ep: RegistryEndpoint, repository: string, blob: Buffer, credentials: Credentials): Promise<string> {
  const digest = digestOf(blob).value
  const scope = `repository:${repository}:pull,push`
  const head = await client.request(ep, `/v2/${repository}/blobs/${digest}`, { method: 'HEAD', credentials, scope })
  await head.body.dump()
  if (head.status === 200) return digest
  const start = await client.request(ep, `/v2/${repository}/blobs/uploads/`, { method: 'POST', credentials, scope })
  await start.body.dump()
  const location = start.headers.location
  if (start.status !== 202 || typeof location !== 'string') throw new Error(`upload start answered ${start.status}`)
  const target = new URL(location, ep.url)
  target.searchParams.set('digest', digest)
  const put = await client.request(ep, `${target.pathname}${target.search}`, {
    method: 'PUT', credentials, scope, body: blob, headers: { 'content-type': 'application/octet-stream' }
  })
  await put.body.dump()
  if (put.status !== 201) throw new Error(`blob upload answered ${put.status}`)
  return digest
}

export async function pushManifest (client: RegistryClient, ep: RegistryEndpoint, repository: string, reference: string, mediaType: string, body: Buffer, credentials: Credentials): Promise<string> {
  const res = await client.request(ep, `/v2/${repository}/manifests/${reference}`, {
    method: 'PUT', credentials, scope: `repository:${repository}:pull,push`, body, headers: { 'content-type': mediaType }
  })
  const text = await res.body.text()
  if (res.status !== 201) throw new Error(`manifest PUT answered ${res.status}: ${text}`)
  return digestOf(body).value
}

export async function pushImage (reg: { url: string }, opts: PushImageOptions): Promise<PushedImage> {
  const docker = opts.format === 'docker'
  const types = docker
    ? { manifest: mt.DOCKER_MANIFEST_V2, index: mt.DOCKER_MANIFEST_LIST, config: mt.DOCKER_CONFIG, layer: mt.DOCKER_LAYER_GZIP }
    : { manifest: mt.OCI_MANIFEST, index: mt.OCI_INDEX, config: mt.OCI_CONFIG, layer: mt.OCI_LAYER_GZIP }
  const credentials: Credentials = opts.credentials === undefined ? { kind: 'anonymous' } : { kind: 'basic', ...opts.credentials }
  const ep = endpointFromUrl(reg.url)
  const client = new RegistryClient({ logger: pino({ level: 'silent' }), userAgent: 'damselfly-test-push' })
  try {
    const layers: PushedImage['layers'] = []
    for (const [i, spec] of opts.layers.entries()) {
      const { blob, diffId } = makeLayer(spec, `${opts.repository}:${opts.tag}:${i}`)
      layers.push({ digest: await pushBlob(client, ep, opts.repository, blob, credentials), size: blob.length, diffId })
    }
    const manifests: PushedManifest[] = []
    for (const platform of opts.platforms ?? ['linux/amd64']) {
      const configBody = Buffer.from(JSON.stringify({
        ...parsePlatform(platform),
        created: '2024-01-01T00:00:00Z',
        config: { Cmd: ['/bin/true'] },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
        history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'damselfly test' }))
      }))
      const config: Descriptor = { mediaType: types.config, digest: await pushBlob(client, ep, opts.repository, configBody, credentials), size: configBody.length }
      const body = Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: types.manifest,
        config,
        layers: layers.map((l) => ({ mediaType: types.layer, digest: l.digest, size: l.size }))
      }))
      const single = (opts.platforms ?? []).length <= 1
      const digest = await pushManifest(client, ep, opts.repository, single ? opts.tag : digestOf(body).value, types.manifest, body, credentials)
      manifests.push({ platform, mediaType: types.manifest, digest, size: body.length, body, config })
    }
    const result: PushedImage = {
      manifestDigest: manifests[0].digest,
      tagDigest: manifests[0].digest,
      manifests,
      config: { digest: manifests[0].config.digest, size: manifests[0].config.size },
      layers
    }
    if (manifests.length > 1) {
      const body = Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: types.index,
        manifests: manifests.map((m) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: parsePlatform(m.platform) }))
      }))
      const digest = await pushManifest(client, ep, opts.repository, opts.tag, types.index, body, credentials)
      result.indexDigest = digest
      result.tagDigest = digest
      result.index = { digest, size: body.length, mediaType: types.index, body }
    }
    return result
  } finally {
    await client.close()
  }
}
