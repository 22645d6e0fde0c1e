/**
 * The bench's namespace network and its link counters, for real: one origin, one server and one
 * client namespace on a hub bridge with their tbf caps; the origin sends the client 2 MB over TCP
 * (both ends real processes inside their namespaces), and the counters read from the hub's side
 * must show it as the client's download and the origin's upload — and nothing of it at the
 * server. Taking the network down removes every namespace, the route and the counter reader.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { Cleanup } from '../bench/cleanup.js'
import { netnsTopology, type LinkBytes, type Topology } from '../bench/hosts.js'

const run = promisify(execFile)
const BYTES = 2_000_000
const PORT = 9071

// inside the origin: send BYTES to the first connection, then exit
const SENDER = `require('node:net').createServer((s) => { s.end(Buffer.alloc(${BYTES}, 7)); s.on('close', () => process.exit(0)) }).listen(${PORT}, process.argv[1], () => process.stdout.write('ready\\n'))`
// inside the client: connect, count what arrives, print it
const RECEIVER = `const s = require('node:net').connect(${PORT}, process.argv[1]); let n = 0; s.on('data', (d) => { n += d.length }); s.on('end', () => { process.stdout.write(String(n)); process.exit(0) }); s.on('error', (e) => { console.error(e.message); process.exit(1) })`

async function namespaces (): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list'])
  return stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean)
}

describe('bench network: link counters of real namespaces', () => {
  const cleanup = new Cleanup()
  let topo: Topology | undefined

  after(() => { topo?.down(); cleanup.runAll() })

  it('counts the bytes one host sends another as the sender\'s upload and the receiver\'s download', async () => {
    const before = await namespaces()
    topo = await netnsTopology(1, '100mbit', cleanup)
    const ours = (await namespaces()).filter((n) => !before.includes(n))
    assert.equal(ours.length, 4, `hub, origin, server, one client: ${ours.join(', ')}`)
    assert.ok(topo.links !== undefined, 'a namespace network has link counters')
    const start = await topo.links()
    assert.deepEqual([...start.keys()].sort(), ['c1', 'origin', 'server'])

    const sender = spawn(topo.origin.prefix[0], [...topo.origin.prefix.slice(1), process.execPath, '-e', SENDER, topo.origin.addr], { stdio: ['ignore', 'pipe', 'inherit'] })
    cleanup.pid(sender.pid, 'sender')
    await new Promise<void>((resolve, reject) => {
      sender.stdout.once('data', () => { resolve() })
      sender.once('exit', (code) => { reject(new Error(`sender exited with ${code}`)) })
    })
    const { stdout } = await run(topo.clients[0].prefix[0], [...topo.clients[0].prefix.slice(1), process.execPath, '-e', RECEIVER, topo.origin.addr], { timeout: 30_000 })
    assert.equal(Number(stdout), BYTES, 'the client received every byte')
    const end = await topo.links()

    const delta = (host: string): LinkBytes => ({ down: end.get(host)!.down - start.get(host)!.down, up: end.get(host)!.up - start.get(host)!.up })
    const c1 = delta('c1')
    const origin = delta('origin')
    const server = delta('server')
    // headers on top of the payload, and the other direction's acks are a few percent of it
    assert.ok(c1.down >= BYTES && c1.down < BYTES * 1.1, `client download ${c1.down}`)
    assert.ok(origin.up >= BYTES && origin.up < BYTES * 1.1, `origin upload ${origin.up}`)
    assert.ok(c1.up < BYTES / 10 && origin.down < BYTES / 10, `only acks the other way: ${c1.up}, ${origin.down}`)
    assert.ok(server.down < BYTES / 100 && server.up < BYTES / 100, `the server saw none of it: ${JSON.stringify(server)}`)

    topo.down()
    topo = undefined
    const left = (await namespaces()).filter((n) => ours.includes(n))
    assert.deepEqual(left, [], 'every namespace of the network removed')
  })
})
