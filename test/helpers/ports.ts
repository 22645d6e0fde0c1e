/** A TCP port that was free on 127.0.0.1 a moment ago. */
import { createServer } from 'node:net'

/**
 * Ports handed out by this process: a port is closed again before its user binds it, so the
 * kernel may offer it twice in a row — two services in one test (or one network namespace,
 * where the ports are bound later) would then collide.
 */
const handedOut = new Set<number>()

async function anyFreePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => { resolve(port) })
    })
  })
}

export async function freePort (): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await anyFreePort()
    if (handedOut.has(port)) continue
    handedOut.add(port)
    return port
  }
  throw new Error('no TCP port left that this process has not handed out already')
}
