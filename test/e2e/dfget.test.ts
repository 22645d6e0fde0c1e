/**
 * dfget end to end: a supernode and two dfdaemons (real processes), a local
 * HTTP server with Range support serving a 40 MiB file and counting the bytes
 * it sends. dfget through A, then through B, writes the right file while the
 * server sends it about once; a wrong digest fails cleanly; a 404 too.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startSupernode, startDaemon, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'

const DFGET_BIN = fileURLToPath(new URL('../../dfdaemon/dfget.js', import.meta.url))
const SIZE = 40 << 20

function deterministic (size: number, seed: string): Buffer {
  const out = Buffer.allocUnsafe(size)
  let block = createHash('sha256').update(seed).digest()
  for (let off = 0; off < size; off += block.length) {
    block.copy(out, off)
    block = createHash('sha256').update(block).digest()
  }
  return out
}

interface FileServer { url: string, served: () => number, close: () => Promise<void> }

/** Serves `files` by path with Range support and an ETag; counts body bytes sent. */
async function startFileServer (files: Record<string, Buffer>): Promise<FileServer> {
  let served = 0
  const server: Server = createServer((req, res) => {
    const file = files[req.url ?? '']
    if (file == null) { res.writeHead(404).end(); return }
    const etag = `"${createHash('sha256').update(file).digest('hex').slice(0, 16)}"`
    let start = 0
    let end = file.length - 1
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    if (m != null) {
      start = Number(m[1])
      end = m[2] !== '' ? Math.min(Number(m[2]), end) : end
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${file.length}`, etag, 'accept-ranges': 'bytes' })
    } else {
      res.writeHead(200, { 'content-length': file.length, etag, 'accept-ranges': 'bytes' })
    }
    if (req.method === 'HEAD') { res.end(); return }
    served += end - start + 1
    res.end(file.subarray(start, end + 1))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${addr.port}`,
    served: () => served,
    close: async () => { server.closeAllConnections(); await new Promise<void>(resolve => server.close(() => { resolve() })) }
  }
}

async function dfget (args: string[]): Promise<{ code: number | null, stderr: string }> {
  const child = spawn(process.execPath, [DFGET_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
  return { code, stderr }
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
const exists = async (p: string): Promise<boolean> => await stat(p).then(() => true, () => false)

describe('dfget', () => {
  let dir: string
  let files: FileServer
  let supernode: SupernodeProcess
  const daemons: DaemonProcess[] = []
  const big = deterministic(SIZE, 'dfget-big')
  const small = deterministic(300_000, 'dfget-small')

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-dfget-'))
    files = await startFileServer({ '/big.bin': big, '/small.bin': small })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    for (const name of ['a', 'b']) {
      daemons.push(await startDaemon({ name: `daemon-${name}`, supernode: supernode.url, upstream: 'http://127.0.0.1:9', dataDir: join(dir, name), logDir: dir }))
    }
  })

  after(async () => {
    await Promise.allSettled([...daemons.map(async d => { await d.stop() }), supernode?.stop()])
    await files?.close()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  it('through A without a digest, then B with one: right bytes, the origin sends the file about once', async () => {
    const outA = join(dir, 'big-a.bin')
    const a = await dfget([`${files.url}/big.bin`, '-o', outA, '--daemon', daemons[0].url])
    assert.equal(a.code, 0, a.stderr)
    assert.equal(sha256(await readFile(outA)), sha256(big))
    assert.match(a.stderr, /peers .*supernode .*origin .*sha256:[a-f0-9]{64}/)

    const outB = join(dir, 'big-b.bin')
    const b = await dfget([`${files.url}/big.bin`, '-o', outB, '--daemon', daemons[1].url, '--digest', sha256(big)])
    assert.equal(b.code, 0, b.stderr)
    assert.equal(sha256(await readFile(outB)), sha256(big))
    assert.match(b.stderr, /from peers/)
    process.stdout.write(`# A: ${a.stderr.trim()}\n# B: ${b.stderr.trim()}\n`)

    assert.ok(files.served() <= 1.2 * SIZE, `the HTTP server sent ${files.served()} bytes for a ${SIZE}-byte file`)
  })

  it('a wrong digest fails with one line and leaves no file', async () => {
    const out = join(dir, 'small-wrong.bin')
    const wrong = `sha256:${'0'.repeat(64)}`
    const r = await dfget([`${files.url}/small.bin`, '-o', out, '--daemon', daemons[0].url, '--digest', wrong])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /^dfget: .*digest/m)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.equal(await exists(out), false)
  })

  it('a missing file fails with one line', async () => {
    const out = join(dir, 'missing.bin')
    const r = await dfget([`${files.url}/missing.bin`, '-o', out, '--daemon', daemons[1].url])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /^dfget: not found/m)
    assert.equal(await exists(out), false)
  })

  it('an unreachable daemon fails with one line', async () => {
    const r = await dfget([`${files.url}/small.bin`, '-o', join(dir, 'x.bin'), '--daemon', 'http://127.0.0.1:9'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /^dfget: no dfdaemon at/m)
  })
})
