#!/usr/bin/env node
/**
 * dfget: download any HTTP(S) file through the swarm. A thin client of the
 * local dfdaemon's `GET /dfget`: the daemon (and its supernode) do the work,
 * this writes the file, shows progress and checks the digest once more.
 */
import '../shared/polyfill.js'
import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { Command } from 'commander'
import { request } from 'undici'
import { DigestHasher, isDigest } from '../shared/oci/digest.js'
import { DAEMON_DEFAULTS } from './config.js'

class DfgetFailure extends Error {
  override readonly name = 'DfgetFailure'
}

const program = new Command()
  .name('dfget')
  .description('download an HTTP(S) file through the damselfly swarm (via the local dfdaemon)')
  .argument('<url>', 'the file to download')
  .requiredOption('-o, --output <file>', 'where to write it')
  .option('--digest <sha256:hex>', 'the file\'s digest: checked, and lets the swarm start before the file was seen')
  .option('--daemon <url>', `the local dfdaemon's mirror (default http://127.0.0.1:${DAEMON_DEFAULTS.port})`)
  .option('--no-progress', 'no progress bar')
  .showHelpAfterError()

interface Opts { output: string, digest?: string, daemon?: string, progress: boolean }

async function main (): Promise<void> {
  program.parse()
  const url = program.args[0]
  const o = program.opts<Opts>()
  if (o.digest !== undefined && !isDigest(o.digest)) throw new DfgetFailure(`not a digest: ${o.digest}`)
  const daemon = o.daemon ?? `http://127.0.0.1:${DAEMON_DEFAULTS.port}`
  const target = new URL('/dfget', daemon)
  target.searchParams.set('url', url)
  if (o.digest !== undefined) target.searchParams.set('digest', o.digest)

  const started = Date.now()
  let res
  try {
    res = await request(target, { headersTimeout: 0, bodyTimeout: 120_000 })
  } catch (err) {
    throw new DfgetFailure(`no dfdaemon at ${daemon} (${(err as Error).message})`)
  }
  if (res.statusCode !== 200) throw new DfgetFailure(await errorOf(res.body, res.statusCode))
  const digest = String(res.headers['x-dfget-digest'] ?? '')
  const size = Number(res.headers['x-dfget-size'] ?? NaN)
  if (o.digest !== undefined && digest !== o.digest) {
    await res.body.dump()
    throw new DfgetFailure(`digest mismatch: the daemon serves ${digest}, expected ${o.digest}`)
  }

  const part = join(dirname(o.output), `.${basename(o.output)}.dfget-${process.pid}.part`)
  const bar = o.progress && process.stderr.isTTY ? new ProgressBar(size) : undefined
  const hasher = new DigestHasher()
  try {
    const out = createWriteStream(part, { flags: 'wx' })
    const closed = new Promise<void>((resolve, reject) => { out.once('close', resolve); out.once('error', reject) })
    for await (const chunk of res.body) {
      hasher.update(chunk as Uint8Array)
      bar?.update(hasher.length)
      if (!out.write(chunk)) await new Promise<void>(resolve => { out.once('drain', () => { resolve() }) })
    }
    out.end()
    await closed
    bar?.done()
    const result = String(res.trailers['x-dfget-result'] ?? 'UNAVAILABLE the daemon ended the transfer without a result')
    if (result !== 'ok') throw new DfgetFailure(explain(result))
    if (hasher.length !== size) throw new DfgetFailure(`got ${hasher.length} of ${size} bytes`)
    const got = hasher.digest().value
    if (got !== digest) throw new DfgetFailure(`digest mismatch: received bytes hash to ${got}, expected ${digest}`)
    await rename(part, o.output)
  } catch (err) {
    bar?.done()
    await rm(part, { force: true })
    throw err
  }
  const seconds = (Date.now() - started) / 1000
  const sources = parseSources(String(res.trailers['x-dfget-sources'] ?? ''))
  process.stderr.write(`dfget: ${o.output}: ${bytes(size)} in ${seconds.toFixed(1)} s (${bytes(size / Math.max(seconds, 0.001))}/s); ` +
    `from peers ${bytes(sources.peer ?? 0)}, supernode ${bytes(sources.supernode ?? 0)}, origin ${bytes(sources.origin ?? 0)}, local cache ${bytes(sources.local ?? 0)}; ${digest}\n`)
}

/** One clear line from the daemon's OCI error answer. */
async function errorOf (body: { text: () => Promise<string> }, status: number): Promise<string> {
  const text = await body.text().catch(() => '')
  try {
    const e = (JSON.parse(text) as { errors?: Array<{ code?: string, message?: string }> }).errors?.[0]
    if (e != null) return explain(`${e.code ?? 'UNAVAILABLE'} ${e.message ?? ''}`)
  } catch { /* not JSON */ }
  return `the daemon answered HTTP ${status}`
}

function explain (result: string): string {
  const i = result.indexOf(' ')
  const code = i < 0 ? result : result.slice(0, i)
  const message = i < 0 ? '' : result.slice(i + 1)
  if (code === 'DIGEST_INVALID') return `digest mismatch: ${message}`
  if (code === 'BLOB_UNKNOWN') return `not found: ${message}`
  return message !== '' ? message : code
}

function parseSources (s: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const kv of s.split(',')) {
    const [k, v] = kv.split('=')
    if (k !== undefined && v !== undefined) out[k] = Number(v)
  }
  return out
}

function bytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`
}

/** A one-line bar on stderr, redrawn at most ten times a second. */
class ProgressBar {
  private last = 0
  private readonly start = Date.now()
  constructor (private readonly total: number) {}

  update (done: number): void {
    const now = Date.now()
    if (now - this.last < 100 && done < this.total) return
    this.last = now
    const width = 30
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1
    const filled = Math.round(frac * width)
    const rate = done / Math.max((now - this.start) / 1000, 0.001)
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${bytes(done)} / ${bytes(this.total)} ${bytes(rate)}/s  `)
  }

  done (): void {
    process.stderr.write('\r\x1b[K')
  }
}

main().catch((err: unknown) => {
  const message = err instanceof DfgetFailure ? err.message : (err as Error)?.message ?? String(err)
  process.stderr.write(`dfget: ${message}\n`)
  process.exit(1)
})
