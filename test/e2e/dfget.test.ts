/**
 * dfget end to end: a supernode and two dfdaemons (real processes), a local
 * HTTP server with Range support serving a 40 MiB file and counting the bytes
 * it sends and the requests per path. The supernode fetches only under
 * `--allow-url <server>/pub/`. dfget through A, then through B, writes the
 * right file while the server sends it about once; a wrong digest fails
 * cleanly; a 404 too. A URL off the list, or a redirect to one, fails with one
 * line and a 403 from the daemon while the server never sees a request for it;
 * a supernode started without --allow-url refuses every URL.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { startSupernode, startDaemon, SUPERNODE_BIN, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'

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

interface FileServer { url: string, served: () => number, hits: (path: string) => number, close: () => Promise<void> }

/** Serves `files` by path with Range support and an ETag, and 302s from `redirects`; counts body bytes sent and requests per path. */
async function startFileServer (files: Record<string, Buffer>, redirects: Record<string, string> = {}): Promise<FileServer> {
  let served = 0
  const hits = new Map<string, number>()
  const server: Server = createServer((req, res) => {
    hits.set(req.url ?? '', (hits.get(req.url ?? '') ?? 0) + 1)
    const location = redirects[req.url ?? '']
    if (location != null) { res.writeHead(302, { location }).end(); return }
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
    hits: (path: string) => hits.get(path) ?? 0,
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
  /** Started without --allow-url, with daemon C of its own. */
  let closed: SupernodeProcess
  const daemons: DaemonProcess[] = []
  const big = deterministic(SIZE, 'dfget-big')
  const small = deterministic(300_000, 'dfget-small')
  const secret = deterministic(200_000, 'dfget-secret')

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-dfget-'))
    files = await startFileServer(
      { '/pub/big.bin': big, '/pub/small.bin': small, '/private/secret.bin': secret, '/publish/secret.bin': secret },
      { '/pub/moved.bin': '/pub/small.bin', '/pub/leak.bin': '/private/secret.bin', '/pub/up.bin': '/pub/../private/secret.bin' })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, extraArgs: ['--allow-url', `${files.url}/pub/`, '--allow-url', `${files.url}/mirror/`] })
    for (const name of ['a', 'b']) {
      daemons.push(await startDaemon({ name: `daemon-${name}`, supernode: supernode.url, upstream: 'http://127.0.0.1:9', dataDir: join(dir, name), logDir: dir }))
    }
    closed = await startSupernode({ name: 'supernode-closed', dataDir: join(dir, 'supernode-closed'), logDir: dir })
    daemons.push(await startDaemon({ name: 'daemon-c', supernode: closed.url, upstream: 'http://127.0.0.1:9', dataDir: join(dir, 'c'), logDir: dir }))
  })

  after(async () => {
    await Promise.allSettled([...daemons.map(async d => { await d.stop() }), supernode?.stop(), closed?.stop()])
    await files?.close()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  it('through A without a digest, then B with one: right bytes, the origin sends the file about once', async () => {
    const outA = join(dir, 'big-a.bin')
    const a = await dfget([`${files.url}/pub/big.bin`, '-o', outA, '--daemon', daemons[0].url])
    assert.equal(a.code, 0, a.stderr)
    assert.equal(sha256(await readFile(outA)), sha256(big))
    assert.match(a.stderr, /peers .*supernode .*origin .*sha256:[a-f0-9]{64}/)

    const outB = join(dir, 'big-b.bin')
    const b = await dfget([`${files.url}/pub/big.bin`, '-o', outB, '--daemon', daemons[1].url, '--digest', sha256(big)])
    assert.equal(b.code, 0, b.stderr)
    assert.equal(sha256(await readFile(outB)), sha256(big))
    assert.match(b.stderr, /from peers/)
    process.stdout.write(`# A: ${a.stderr.trim()}\n# B: ${b.stderr.trim()}\n`)

    assert.ok(files.served() <= 1.2 * SIZE, `the HTTP server sent ${files.served()} bytes for a ${SIZE}-byte file`)
  })

  it('a wrong digest fails with one line and leaves no file', async () => {
    const out = join(dir, 'small-wrong.bin')
    const wrong = `sha256:${'0'.repeat(64)}`
    const r = await dfget([`${files.url}/pub/small.bin`, '-o', out, '--daemon', daemons[0].url, '--digest', wrong])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /^dfget: .*digest/m)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.equal(await exists(out), false)
  })

  it('a missing file fails with one line', async () => {
    const out = join(dir, 'missing.bin')
    const r = await dfget([`${files.url}/pub/missing.bin`, '-o', out, '--daemon', daemons[1].url])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /^dfget: not found/m)
    assert.equal(await exists(out), false)
  })

  it('follows a redirect that stays under --allow-url', async () => {
    const out = join(dir, 'moved.bin')
    const r = await dfget([`${files.url}/pub/moved.bin`, '-o', out, '--daemon', daemons[0].url])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(sha256(await readFile(out)), sha256(small))
  })

  it('a URL off the --allow-url list fails with one line, with or without a digest, and is never fetched', async () => {
    const asked = [
      { url: `${files.url}/private/secret.bin`, daemon: daemons[0], digest: [] },
      { url: `${files.url}/private/secret.bin`, daemon: daemons[1], digest: ['--digest', sha256(secret)] },
      // a prefix ends on a segment boundary: /pub/ does not allow /publish/
      { url: `${files.url}/publish/secret.bin`, daemon: daemons[0], digest: ['--digest', sha256(secret)] },
      { url: `${files.url}/pub/%2e%2e/private/secret.bin`, daemon: daemons[1], digest: [] }
    ]
    for (const [i, a] of asked.entries()) {
      const out = join(dir, `refused-${i}.bin`)
      const r = await dfget([a.url, '-o', out, '--daemon', a.daemon.url, ...a.digest])
      assert.notEqual(r.code, 0, `${a.url}: ${r.stderr}`)
      assert.match(r.stderr, /^dfget: .*not in its --allow-url list/m)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.equal(await exists(out), false)
    }
    assert.equal(files.hits('/private/secret.bin'), 0)
    assert.equal(files.hits('/publish/secret.bin'), 0)
  })

  it('the daemon answers such a URL with 403 and an OCI DENIED error', async () => {
    for (const digest of ['', `&digest=${sha256(secret)}`]) {
      const res = await request(`${daemons[1].url}/dfget?url=${encodeURIComponent(`${files.url}/private/secret.bin`)}${digest}`)
      assert.equal(res.statusCode, 403)
      const body = await res.body.json() as { errors: Array<{ code: string, message: string }> }
      assert.equal(body.errors[0].code, 'DENIED')
    }
    assert.equal(files.hits('/private/secret.bin'), 0)
  })

  it('a redirect off the list is not followed', async () => {
    for (const [i, path] of ['/pub/leak.bin', '/pub/up.bin'].entries()) {
      const out = join(dir, `leak-${i}.bin`)
      const r = await dfget([`${files.url}${path}`, '-o', out, '--daemon', daemons[i].url, ...(i === 1 ? ['--digest', sha256(secret)] : [])])
      assert.notEqual(r.code, 0, r.stderr)
      assert.match(r.stderr, /^dfget: .*redirect .*--allow-url/m)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.equal(await exists(out), false)
      assert.ok(files.hits(path) >= 1, `the supernode asked for ${path}`)
    }
    assert.equal(files.hits('/private/secret.bin'), 0)
  })

  it('a supernode started without --allow-url fetches no URL', async () => {
    for (const digest of [[], ['--digest', sha256(small)]]) {
      const out = join(dir, `closed-${digest.length}.bin`)
      const before = files.hits('/pub/small.bin')
      const r = await dfget([`${files.url}/pub/small.bin`, '-o', out, '--daemon', daemons[2].url, ...digest])
      assert.notEqual(r.code, 0, r.stderr)
      assert.match(r.stderr, /^dfget: .*without --allow-url/m)
      assert.equal(await exists(out), false)
      assert.equal(files.hits('/pub/small.bin'), before)
    }
  })

  it('a bad --allow-url pattern, on the command line or in the config file, stops the supernode with one line', async () => {
    const config = join(dir, 'bad-allow-url.yaml')
    await writeFile(config, 'allowUrls:\n  - https://files.example.com/releases/\n  - ftp://files.example.com/\n')
    for (const args of [['--allow-url', 'https://*.example.com/'], ['--config', config]]) {
      const child = spawn(process.execPath, [SUPERNODE_BIN, '--data-dir', join(dir, 'bad-supernode'), '--port', '0', '--p2p-port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      // bounded: a supernode that accepted the pattern would run until killed (and fail the assertion)
      const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
      const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
      clearTimeout(timer)
      assert.equal(code, 2, stderr)
      assert.match(stderr, /^supernode: .*"allowUrls"/)
      assert.equal(stderr.trim().split('\n').length, 1, stderr)
    }
  })

  it('an unreachable daemon fails with one line', async () => {
    const r = await dfget([`${files.url}/pub/small.bin`, '-o', join(dir, 'x.bin'), '--daemon', 'http://127.0.0.1:9'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /^dfget: no dfdaemon at/m)
  })
})
