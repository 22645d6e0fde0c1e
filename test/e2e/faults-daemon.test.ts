/**
 * Faults of a daemon itself, caused for real: killed with SIGKILL in the
 * middle of a download and restarted on the same data dir (it resumes from
 * its persisted bitfield, re-downloads nothing it had verified, serves no torn
 * piece); clients that go away mid-blob (the download goes on for the store,
 * and nothing leaks: file descriptors and libp2p streams come back to their
 * baseline); and startup with a broken configuration (one line on stderr
 * naming the key or the file, a non-zero exit).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Client, request } from 'undici'
import { Bitfield } from '../../shared/pieces/bitfield.js'
import { pieceRange } from '../../shared/pieces/piece-math.js'
import { manifestFromWire } from '../../shared/pieces/piece-manifest.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { createDaemon, type Daemon } from '../../dfdaemon/daemon.js'
import { DAEMON_DEFAULTS } from '../../dfdaemon/config.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, DFDAEMON_BIN, SUPERNODE_BIN, type SupernodeProcess, type RunningProcess } from '../helpers/processes.js'
import { until } from '../helpers/until.js'

const PIECE_BYTES = 'damselfly_dfdaemon_piece_bytes_total'

async function pieceBytes (url: string): Promise<number> {
  return await scrapeMetric(url, PIECE_BYTES)
}

/** GET a blob through a mirror; the sha256 of what came back. */
async function getBlobSha (mirror: string, repository: string, digest: string): Promise<{ status: number, sha: string, size: number }> {
  const res = await request(`${mirror}/v2/${repository}/blobs/${digest}`)
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return { status: res.statusCode, sha: `sha256:${hash.digest('hex')}`, size }
}

describe('a daemon killed mid-download resumes on restart', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let supernode: SupernodeProcess | undefined
  const procs: RunningProcess[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-faults-daemon-'))
    origin = await startRegistry({ auth: 'none' })
    image = await pushImage(origin, { repository: 'crash/app', tag: 'v1', layers: [{ size: 48 << 20, seed: 'crash-big' }] })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
  })

  after(async () => {
    await Promise.allSettled([...procs.map(async p => { await p.stop() }), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  it('re-downloads no verified piece, holds no torn one, and serves the right bytes', { timeout: 300_000 }, async () => {
    const sn = supernode as SupernodeProcess
    const layer = image.layers[0]
    const digest = parseDigest(layer.digest)
    const dataDir = join(dir, 'crashy')
    const args = { name: 'crashy', supernode: sn.url, upstream: origin.url, dataDir, logDir: dir, extraArgs: ['--download-limit', '6M'] }
    const first = await startDaemon(args)
    procs.push(first)
    // a client pulls the layer; the daemon is slowed down so the kill lands mid-download
    const pull = request(`${first.url}/v2/crash/app/blobs/${layer.digest}`).then(async res => { await res.body.dump() }).catch(() => {})
    const midway = await until(async () => await pieceBytes(first.url) >= layer.size / 4, 1200)
    const before = await pieceBytes(first.url)
    assert.ok(midway, `the first pieces arrived (${before} bytes)`)
    assert.ok(before < layer.size, 'the kill lands before the download is over')
    await first.kill()
    await pull

    // what the killed daemon left: a partial entry whose held pieces are all whole
    const entry = join(dataDir, 'store', 'partial', 'sha256', digest.hex)
    const state = JSON.parse(await readFile(join(entry, 'state.json'), 'utf8')) as { manifest: unknown, bitfield: string }
    const manifest = manifestFromWire(state.manifest)
    const held = Bitfield.fromBase64(manifest.pieces.length, state.bitfield)
    assert.ok(held.count > 0, 'the state on disk records verified pieces')
    assert.ok(!held.complete, 'and not all of them')
    let heldBytes = 0
    const fh = await open(join(entry, 'data'), 'r')
    try {
      for (let i = 0; i < manifest.pieces.length; i++) {
        if (!held.has(i)) continue
        const { start, end } = pieceRange(manifest.size, manifest.pieceSize, i)
        const buf = Buffer.alloc(end - start)
        await fh.read(buf, 0, buf.length, start)
        assert.equal(createHash('sha256').update(buf).digest('hex'), manifest.pieces[i], `held piece ${i} is whole on disk`)
        heldBytes += buf.length
      }
    } finally {
      await fh.close()
    }
    assert.ok(heldBytes <= before, 'the state never claims a piece that was not counted as received')

    // restarted on the same data dir: only the missing pieces travel
    const second = await startDaemon({ ...args, name: 'crashy-restarted' })
    procs.push(second)
    const got = await getBlobSha(second.url, 'crash/app', layer.digest)
    assert.equal(got.status, 200)
    assert.equal(got.size, layer.size)
    assert.equal(got.sha, layer.digest, 'the blob after the restart hashes to its digest')
    const after = await pieceBytes(second.url)
    process.stdout.write(`# resume: ${before} bytes before the kill, ${heldBytes} persisted, ${after} after the restart, blob ${layer.size}\n`)
    assert.equal(after, layer.size - heldBytes, 'after the restart exactly the pieces not held were downloaded')
    assert.ok(before + after < 2 * layer.size)
    // the client has its last byte a moment before the blob is committed
    assert.ok(await until(async () => await scrapeMetric(second.url, 'damselfly_dfdaemon_blob_downloads_total', { result: 'success' }) === 1), 'the download finished')
    // and the finished blob moved out of the partial area
    const partials = await readdir(join(dataDir, 'store', 'partial', 'sha256')).catch(() => [])
    assert.deepEqual(partials, [], 'no partial entry is left')
  })
})

describe('clients that disconnect mid-blob', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let supernode: SupernodeProcess | undefined
  let daemon: Daemon | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-faults-client-'))
    origin = await startRegistry({ auth: 'none' })
    image = await pushImage(origin, { repository: 'leave/app', tag: 'v1', layers: [{ size: 24 << 20, seed: 'leave-big' }, { size: 3 << 20, seed: 'leave-small' }, { size: 12 << 20, seed: 'leave-fresh' }] })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir })
    // in this process, so its libp2p streams can be counted; its descriptors are ours
    daemon = await createDaemon({
      ...DAEMON_DEFAULTS,
      supernode: supernode.url,
      upstream: origin.url,
      dataDir: join(dir, 'daemon'),
      port: 0,
      p2pPort: 0,
      downloadLimit: '8M',
      logLevel: 'silent'
    }, { logger: pino({ level: 'silent' }) })
    await daemon.start()
  })

  after(async () => {
    await daemon?.stop().catch(() => {})
    await supernode?.stop()
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  /** GET a blob on its own connection, read at least `atLeast` bytes, then destroy the connection. */
  async function getAndLeave (url: string, path: string, atLeast: number): Promise<number> {
    const client = new Client(url, { pipelining: 0 })
    let read = 0
    try {
      const res = await client.request({ method: 'GET', path })
      for await (const chunk of res.body) {
        read += (chunk as Buffer).length
        if (read >= atLeast) break // leaving the loop destroys the body mid-blob
      }
    } finally {
      await client.destroy()
    }
    return read
  }

  const openFds = async (): Promise<number> => (await readdir(`/proc/${process.pid}/fd`)).length
  const openStreams = (): number => (daemon as Daemon).node.getConnections().reduce((n, c) => n + c.streams.length, 0)

  it('the download goes on for the store; a later request is a local hit', { timeout: 300_000 }, async () => {
    const d = daemon as Daemon
    const sn = supernode as SupernodeProcess
    const layer = image.layers[0]
    const read = await getAndLeave(d.mirrorUrl, `/v2/leave/app/blobs/${layer.digest}`, 1)
    assert.ok(read > 0 && read < layer.size, `the client left after ${read} bytes`)
    const finished = await until(async () => await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_blob_downloads_total', { result: 'success' }) >= 1, 1200)
    assert.ok(finished, 'the download finished without its client')
    assert.equal(await pieceBytes(d.mirrorUrl), layer.size)
    const supernodeUpload = await scrapeMetric(sn.url, 'damselfly_supernode_upload_bytes_total')
    const hits = await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_local_hits_total')

    const head = await request(`${d.mirrorUrl}/v2/leave/app/blobs/${layer.digest}`, { method: 'HEAD' })
    await head.body.dump()
    assert.equal(head.statusCode, 200)
    assert.equal(head.headers['content-length'], String(layer.size))
    const got = await getBlobSha(d.mirrorUrl, 'leave/app', layer.digest)
    assert.equal(got.sha, layer.digest)
    assert.ok(await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_local_hits_total') > hits, 'the GET was a local hit')
    assert.equal(await pieceBytes(d.mirrorUrl), layer.size, 'no piece was fetched again')
    assert.equal(await scrapeMetric(sn.url, 'damselfly_supernode_upload_bytes_total'), supernodeUpload, 'the supernode sent nothing more')
  })

  it('many aborted requests leak no descriptor and no libp2p stream', { timeout: 300_000 }, async () => {
    const d = daemon as Daemon
    const small = image.layers[1]
    const big = image.layers[0]
    // warm up: the small layer is fetched once (connections, files, caches in place)
    assert.equal((await getBlobSha(d.mirrorUrl, 'leave/app', small.digest)).sha, small.digest)
    await until(async () => openStreams() === 0, 100)
    const fds = await openFds()
    const streams = openStreams()
    const downloads = await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_blob_downloads_total', { result: 'success' })
    // 30 clients leave mid-blob: local hits of two layers, and mid-download of a third and of the config
    const fresh = image.layers[2]
    const cfg = image.config
    for (let i = 0; i < 30; i++) {
      const blob = [fresh, big, small, cfg][i % 4]
      await getAndLeave(d.mirrorUrl, `/v2/leave/app/blobs/${blob.digest}`, 1 + i * 1000)
    }
    // the downloads the leavers started run to their end without them (bounded)
    await until(async () => await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_blob_downloads_total', { result: 'success' }) >= downloads + 2, 1200)
    assert.equal(await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_blob_downloads_total', { result: 'success' }) >= downloads + 2, true, 'the fresh layer and the config were stored')
    // descriptors and streams come back to the baseline (a small slack for sockets closing)
    const settled = await until(async () => await openFds() <= fds + 3 && openStreams() <= streams + 1, 300)
    const nowFds = await openFds()
    process.stdout.write(`# leak check: fds ${fds} → ${nowFds}, libp2p streams ${streams} → ${openStreams()}\n`)
    assert.ok(settled, `fds ${fds} → ${nowFds}, streams ${streams} → ${openStreams()}`)
    assert.equal(await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_pieces_in_flight'), 0, 'no piece request left in flight')
    // and it keeps serving
    assert.equal((await getBlobSha(d.mirrorUrl, 'leave/app', big.digest)).sha, big.digest)
    assert.equal((await getBlobSha(d.mirrorUrl, 'leave/app', fresh.digest)).sha, fresh.digest)
    assert.equal((await getBlobSha(d.mirrorUrl, 'leave/app', cfg.digest)).sha, cfg.digest)
  })
  /** A request with the path and headers exactly as given; status, Content-Range and body. */
  async function raw (path: string, headers: Record<string, string> = {}): Promise<{ status: number, contentRange: string | undefined, body: string }> {
    const url = new URL((daemon as Daemon).mirrorUrl)
    return await new Promise((resolve, reject) => {
      const req = httpRequest({ host: url.hostname, port: url.port, method: 'GET', path, headers, agent: false }, (res) => {
        let body = ''
        res.on('data', (c: Buffer) => { body += c.toString() })
        res.on('close', () => { resolve({ status: res.statusCode ?? 0, contentRange: res.headers['content-range'], body }) })
      })
      req.on('error', reject)
      req.end()
    })
  }

  it('bad input at the running daemon is refused, touches nothing, and it keeps serving', async () => {
    const d = daemon as Daemon
    const layer = image.layers[1]
    const storeDir = join(dir, 'daemon', 'store')
    const listing = async (): Promise<string[]> => (await readdir(storeDir, { recursive: true })).sort()
    const files = await listing()
    const downloads = await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_blob_downloads_total')
    const fresh = 'sha256:' + 'a'.repeat(64)
    assert.equal((await raw(`/v2/leave/app/blobs/${fresh}`, { 'x-big': 'b'.repeat(20_000) })).status, 431)
    assert.equal((await raw(`/v2/leave/app/blobs/${fresh}?pad=${'p'.repeat(4000)}`)).status, 414)
    assert.equal((await raw(`/v2/${'a/'.repeat(20_000)}b/blobs/${fresh}`)).status, 431)
    assert.equal((await raw(`/v2/leave/../app/blobs/${fresh}`)).status, 400)
    for (const range of ['bytes=-5-10', 'bytes=0-99999999999999999999', `bytes=${layer.size}-`, 'bytes=9007199254740993-', `bytes=${'1'.repeat(300)}-`]) {
      const res = await raw(`/v2/leave/app/blobs/${layer.digest}`, { range })
      assert.equal(res.status, 416, `Range ${range.slice(0, 40)}`)
      assert.equal(res.contentRange, `bytes */${layer.size}`)
      assert.equal(JSON.parse(res.body).errors[0].code, 'RANGE_INVALID')
    }
    assert.deepEqual(await listing(), files, 'nothing on disk changed')
    assert.equal(await scrapeMetric(d.mirrorUrl, 'damselfly_dfdaemon_blob_downloads_total'), downloads, 'no download started')
    const part = await raw(`/v2/leave/app/blobs/${layer.digest}`, { range: 'bytes=-10' })
    assert.equal(part.status, 206)
    assert.equal(part.contentRange, `bytes ${layer.size - 10}-${layer.size - 1}/${layer.size}`)
  })
})

describe('startup with a broken configuration', () => {
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-faults-config-'))
    await mkdir(join(dir, 'a-directory'))
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  /** Run an entry point to its exit (bounded); its code and stderr. */
  async function run (bin: string, args: string[]): Promise<{ code: number | null, stderr: string }> {
    return await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
      const timer = setTimeout(() => { child.kill('SIGKILL') }, 30_000)
      child.once('error', reject)
      child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stderr }) })
    })
  }

  async function configFile (name: string, text: string): Promise<string> {
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }

  const sides = [
    { name: 'supernode', bin: SUPERNODE_BIN, base: (d: string) => ['--data-dir', d, '--port', '0', '--p2p-port', '0'] },
    { name: 'dfdaemon', bin: DFDAEMON_BIN, base: (d: string) => ['--data-dir', d, '--supernode', 'http://127.0.0.1:9', '--port', '0', '--p2p-port', '0'] }
  ]

  for (const side of sides) {
    const cases: Array<{ label: string, args: () => Promise<string[]>, names: string }> = [
      { label: 'an unknown key in the file', args: async () => ['--config', await configFile(`${side.name}-unknown.yaml`, 'logLevel: info\nbogusSetting: 3\n')], names: 'bogusSetting' },
      { label: 'a bad value in the file', args: async () => ['--config', await configFile(`${side.name}-bad.yaml`, 'logLevel: loud\n')], names: 'logLevel' },
      { label: 'a bad value on the command line', args: async () => ['--p2p-port', '70000'], names: 'p2pPort' },
      { label: 'a bad byte size', args: async () => ['--max-disk', 'lots'], names: 'maxDisk' },
      { label: 'a config file that does not exist', args: async () => ['--config', join(dir, 'missing.yaml')], names: 'missing.yaml' },
      { label: 'a config file that cannot be read', args: async () => ['--config', join(dir, 'a-directory')], names: 'a-directory' },
      { label: 'a config file that is not YAML', args: async () => ['--config', await configFile(`${side.name}-broken.yaml`, 'port: [1, 2\n')], names: `${side.name}-broken.yaml` }
    ]
    for (const c of cases) {
      it(`${side.name}: ${c.label} stops startup with one line naming it`, async () => {
        const dataDir = join(dir, `data-${side.name}`)
        // the flag under test comes after the base flags, so it wins
        const { code, stderr } = await run(side.bin, [...side.base(dataDir), ...await c.args()])
        assert.notEqual(code, 0, 'a non-zero exit')
        assert.notEqual(code, null, 'it exited by itself')
        const lines = stderr.trimEnd().split('\n')
        assert.equal(lines.length, 1, `exactly one line on stderr, got:\n${stderr}`)
        assert.ok(lines[0].includes(c.names), `the line names ${c.names}: ${lines[0]}`)
      })
    }
  }
})
