/**
 * A network namespace with only loopback, for processes whose fallbacks must not leave the
 * machine (dockerd falls back to Docker Hub when its mirror fails). Processes are started in it
 * with `nsenter --net=` (not `ip netns exec`, which remounts /sys and hides the cgroup mounts
 * dockerd needs). The test process stays in its own namespace and reaches a port inside through
 * `forward(port)`: a TCP listener on this side's 127.0.0.1 piped through a unix socket to a small
 * relay running inside, which connects to 127.0.0.1:port there. `expose(port)` is the way out, for
 * a server the test runs itself (the token server): a relay inside listens on 127.0.0.1:port
 * and pipes each connection through a unix socket to 127.0.0.1:port on this side, so the same
 * URL works on both sides.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface Netns {
  name: string
  /** Prefix for a command that must run inside: `['nsenter', '--net=/run/netns/NAME']`. */
  prefix: string[]
  /** A URL (`http://127.0.0.1:P`) on this side that reaches 127.0.0.1:`port` inside. */
  forward: (port: number) => Promise<string>
  /** Make 127.0.0.1:`port` inside reach 127.0.0.1:`port` on this side (the port must be free inside). */
  expose: (port: number) => Promise<void>
  /** Stop the relays and delete the namespace (after the processes in it were stopped). */
  remove: () => Promise<void>
}

// Inside the namespace: listen on a unix socket, connect each client to 127.0.0.1:PORT.
const RELAY = `
const net = require('node:net')
const [sock, port] = process.argv.slice(1)
net.createServer((c) => {
  const u = net.connect(Number(port), '127.0.0.1')
  c.pipe(u).pipe(c)
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy())
}).listen(sock, () => process.stdout.write('ready\\n'))
`

// Inside the namespace: listen on 127.0.0.1:PORT, connect each client to a unix socket.
const EXPOSE = `
const net = require('node:net')
const [sock, port] = process.argv.slice(1)
net.createServer((c) => {
  const u = net.connect(sock)
  c.pipe(u).pipe(c)
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy())
}).listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\\n'))
`

/** Creates `dfly-<random>` with lo up. `sockDir` holds the relays' unix sockets. */
export async function createNetns (sockDir: string): Promise<Netns> {
  const name = `dfly-${randomBytes(4).toString('hex')}`
  await run('ip', ['netns', 'add', name])
  const prefix = ['nsenter', `--net=/run/netns/${name}`]
  const relays: ChildProcess[] = []
  const servers: Server[] = []
  const sockets = new Set<Socket>()
  try {
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  } catch (err) {
    await run('ip', ['netns', 'del', name]).catch(() => undefined)
    throw err
  }

  const startRelay = async (script: string, sock: string, port: number): Promise<void> => {
    const relay = spawn(prefix[0], [...prefix.slice(1), process.execPath, '-e', script, sock, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
    relays.push(relay)
    await new Promise<void>((resolve, reject) => {
      relay.once('exit', (code) => { reject(new Error(`relay exited with ${code}`)) })
      relay.stdout?.once('data', () => { resolve() })
    })
  }
  /** A server (the caller says where it listens) piping each client to a fresh `target()`. */
  const pipeServer = (target: () => Socket): Server => createServer((client) => {
    const upstream = target()
    sockets.add(client)
    sockets.add(upstream)
    client.pipe(upstream).pipe(client)
    const done = (): void => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream) }
    client.on('error', done).on('close', done)
    upstream.on('error', done).on('close', done)
  })

  const forward = async (port: number): Promise<string> => {
    const sock = join(sockDir, `relay-${name}-${port}.sock`)
    await startRelay(RELAY, sock, port)
    const server = pipeServer(() => connect(sock))
    servers.push(server)
    await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', () => { resolve() }) })
    const addr = server.address()
    return `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`
  }

  const expose = async (port: number): Promise<void> => {
    const sock = join(sockDir, `expose-${name}-${port}.sock`)
    const server = pipeServer(() => connect(port, '127.0.0.1'))
    servers.push(server)
    await new Promise<void>((resolve, reject) => { server.once('error', reject).listen(sock, () => { resolve() }) })
    await startRelay(EXPOSE, sock, port)
  }

  return {
    name,
    prefix,
    forward,
    expose,
    remove: async () => {
      for (const s of sockets) s.destroy()
      await Promise.all(servers.map(async (s) => await new Promise<void>((resolve) => { s.close(() => { resolve() }) })))
      await Promise.all(relays.map(async (r) => {
        if (r.exitCode !== null || r.signalCode !== null) return
        const gone = new Promise<void>((resolve) => { r.once('exit', () => { resolve() }) })
        r.kill('SIGKILL')
        await gone
      }))
      await run('ip', ['netns', 'del', name])
    }
  }
}
