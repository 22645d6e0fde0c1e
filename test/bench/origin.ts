/**
 * The origin: the CNCF distribution registry on the origin host. Images are pushed once, before
 * the run, into a storage dir by a registry on the root namespace's loopback; each scenario then
 * starts a fresh registry on that storage inside the origin host, and the bytes it sent are read
 * from its access log (combined format: `"GET /v2/... HTTP/1.1" 200 BYTES ...`) when it stops.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { pushImage } from '../helpers/images.js'
import type { Cleanup } from './cleanup.js'
import { loopbackTopology, type Host } from './hosts.js'
import { startProc, waitHttp, type Proc } from './proc.js'
import type { ImageSpec } from './scenarios.js'

const REGISTRY_BIN = '/usr/bin/docker-registry'

export interface Origin {
  proc: Proc
  /** host:port, the registry name clients use. */
  hostPort: string
  url: string
  /** Stop it and count what it served: all response bytes, and 200/206 blob GETs; none of `ignoreRepository`'s. */
  stop: (ignoreRepository?: string) => Promise<{ bytes: number, blobBytes: number, blobGets: number }>
}

function configYaml (storage: string, addr: string): string {
  return `version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${storage}
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${addr}
  secret: ${randomBytes(16).toString('hex')}
`
}

const ACCESS = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) (\d+|-) /

export async function startOrigin (host: Host, storage: string, workDir: string, name: string, cleanup: Cleanup): Promise<Origin> {
  const port = await host.port('origin', 5000)
  const hostPort = `${host.addr}:${port}`
  const config = join(workDir, `${name}.yml`)
  await writeFile(config, configYaml(storage, hostPort))
  const proc = startProc(host, name, [REGISTRY_BIN, 'serve', config], workDir, cleanup)
  const url = `http://${hostPort}`
  try {
    await waitHttp(proc, `${url}/v2/`)
  } catch (err) {
    await proc.stop(1000)
    throw err
  }
  return {
    proc,
    hostPort,
    url,
    stop: async (ignoreRepository) => {
      await proc.stop()
      const ignored = ignoreRepository === undefined ? undefined : `/v2/${ignoreRepository}/`
      let bytes = 0
      let blobBytes = 0
      let blobGets = 0
      for (const line of (await readFile(proc.logFile, 'utf8')).split('\n')) {
        const m = ACCESS.exec(line)
        if (m === null || (ignored !== undefined && m[2].startsWith(ignored))) continue
        const n = m[4] === '-' ? 0 : Number(m[4])
        bytes += n
        if (m[1] === 'GET' && /\/blobs\/sha256:[a-f0-9]{64}/.test(m[2]) && (m[3] === '200' || m[3] === '206')) {
          blobGets++
          blobBytes += n
        }
      }
      return { bytes, blobBytes, blobGets }
    }
  }
}

export interface PreparedImage {
  spec: ImageSpec
  repository: string
  tag: string
  /** Config + layers: what a pull must move. */
  bytes: number
  blobs: Array<{ digest: string, size: number }>
}

/** Push every image into `storage` through a registry on this side's loopback (no namespaces yet). */
export async function prepareImages (images: ImageSpec[], storage: string, workDir: string, cleanup: Cleanup): Promise<PreparedImage[]> {
  await mkdir(storage, { recursive: true })
  const host = loopbackTopology(0).origin
  const reg = await startOrigin(host, storage, workDir, 'origin-push', cleanup)
  try {
    const out: PreparedImage[] = []
    for (const spec of images) {
      const repository = `bench/${spec.name.toLowerCase()}`
      const pushed = await pushImage({ url: reg.url }, {
        repository,
        tag: 'v1',
        layers: Array.from({ length: spec.layers }, (_, i) => ({ size: spec.layerBytes, seed: `damselfly-bench-${spec.name}-${i}` }))
      })
      const blobs = [pushed.config, ...pushed.layers].map((b) => ({ digest: b.digest, size: b.size }))
      out.push({ spec, repository, tag: 'v1', bytes: blobs.reduce((n, b) => n + b.size, 0), blobs })
    }
    return out
  } finally {
    await reg.stop()
  }
}
