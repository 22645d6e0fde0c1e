/**
 * Upstream TLS: a registry on 127.0.0.1 over HTTPS with a self-signed certificate (made with
 * openssl) is refused with the system CAs, reached with --ca-file, and with --insecure-skip-verify.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createServer, type Server } from 'node:https'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { RegistryClient } from '../../shared/oci/registry-client.js'
import { endpointFromUrl, type RegistryEndpoint } from '../../shared/oci/endpoints.js'
import { digestOf } from '../../shared/oci/digest.js'
import { loadUpstreamTls } from '../../shared/oci/upstream-tls.js'
import { createSupernode, type Supernode } from '../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../supernode/config.js'
import { createNode, type DamselflyNode } from '../../shared/p2p/node.js'
import { TaskAnswer } from '../../shared/p2p/task-messages.js'
import { collect } from '../helpers/assertions.js'
import { askTask } from '../helpers/task.js'

const run = promisify(execFile)
const logger = pino({ level: 'silent' })
const REPO = 'team/app'

async function selfSigned (dir: string, name: string): Promise<{ cert: string, key: string }> {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'])
  return { cert, key }
}

describe('upstream TLS (--ca-file, --insecure-skip-verify)', () => {
  let dir: string
  let server: Server
  let ep: RegistryEndpoint
  let caFile: string
  let otherCa: string
  const blob = Buffer.alloc(300 << 10, 7)
  const digest = digestOf(blob).value

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-tls-'))
    const pair = await selfSigned(dir, 'registry')
    caFile = pair.cert
    otherCa = (await selfSigned(dir, 'other')).cert
    server = createServer({ cert: await readFile(pair.cert), key: await readFile(pair.key) }, (req, res) => {
      const path = (req.url ?? '').replace(/\?.*$/, '')
      if (path === '/v2/') {
        res.writeHead(200, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' })
        res.end('{}')
      } else if (path === `/v2/${REPO}/blobs/${digest}`) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(blob.length), 'docker-content-digest': digest })
        res.end(req.method === 'HEAD' ? undefined : blob)
      } else {
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"not here"}]}')
      }
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    ep = endpointFromUrl(`https://127.0.0.1:${(server.address() as AddressInfo).port}`)
  })

  after(async () => {
    server?.closeAllConnections()
    await new Promise<void>((resolve) => { if (server != null) server.close(() => { resolve() }); else resolve() })
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  async function fetchWith (tls: ReturnType<typeof loadUpstreamTls>): Promise<Buffer> {
    const client = new RegistryClient({ logger, tls })
    try {
      assert.equal((await client.ping(ep)).status, 200)
      const res = await client.getBlob(ep, REPO, digest)
      return await collect(res.body)
    } finally {
      await client.close()
    }
  }

  it('fails with only the system CAs, and with another CA', async () => {
    await assert.rejects(fetchWith(undefined), (err: Error) => err.name === 'UpstreamError' || err.name === 'TimeoutError' ? /cert|self.signed|verify/i.test(`${err.message} ${String((err.cause as Error | undefined)?.message)}`) : false)
    await assert.rejects(fetchWith(loadUpstreamTls({ caFile: otherCa }, logger)))
  })

  it('works with --ca-file (the extra CA is added to the system ones)', async () => {
    const tls = loadUpstreamTls({ caFile }, logger)
    assert.ok((tls?.ca?.length ?? 0) > 1, 'system CAs kept')
    assert.deepEqual(await fetchWith(tls), blob)
  })

  it('works with --insecure-skip-verify, logged as a warning', async () => {
    let out = ''
    const sink = new Writable({ write (chunk, _enc, cb) { out += String(chunk); cb() } })
    const tls = loadUpstreamTls({ insecureSkipVerify: true }, pino({ level: 'info' }, sink))
    assert.match(out, /"level":40.*NOT verified/)
    assert.deepEqual(await fetchWith(tls), blob)
  })

  it('rejects a CA file that holds no certificate', async () => {
    const bad = join(dir, 'bad.pem')
    await writeFile(bad, 'not a certificate\n')
    assert.throws(() => loadUpstreamTls({ caFile: bad }, logger), /no PEM certificate/)
  })

  for (const [label, extra] of [['--ca-file', () => ({ caFile })], ['--insecure-skip-verify', () => ({ insecureSkipVerify: true })]] as const) {
    it(`a supernode configured with ${label} fetches from the HTTPS origin (and fails without it)`, async () => {
      const sdir = await mkdtemp(join(dir, 'supernode-'))
      const nodes: Supernode[] = []
      let peer: DamselflyNode | undefined
      try {
        peer = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
        await peer.start()
        const ask = async (sn: Supernode): Promise<TaskAnswer[]> => await askTask(peer as DamselflyNode, multiaddr(sn.multiaddrs[0]), { registry: 'tls.registry.test', repository: REPO, digest })
        const base = { ...SUPERNODE_DEFAULTS, host: '127.0.0.1', port: 0, p2pPort: 0, logLevel: 'silent' as const, registryEndpoints: { 'tls.registry.test': ep.url } }
        const plain = await createSupernode({ ...base, dataDir: join(sdir, 'plain') }, { logger })
        nodes.push(plain)
        await plain.start()
        const refused = await ask(plain)
        assert.equal(refused.at(-1)?.type, 'error')

        const configured = await createSupernode({ ...base, dataDir: join(sdir, 'tls'), ...extra() }, { logger })
        nodes.push(configured)
        await configured.start()
        const answers = await ask(configured)
        assert.equal(answers[0]?.type, 'manifest')
        assert.equal(answers.at(-1)?.type, 'done')
      } finally {
        await peer?.stop()
        for (const sn of nodes) await sn.stop()
      }
    })
  }
})
