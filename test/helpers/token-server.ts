/**
 * An in-process Docker registry token server (the distribution token-auth spec): RS256 JWTs
 * whose `kid` is the libtrust key id of a key the registry trusts through a self-signed cert.
 */
import { createHash, createPrivateKey, createPublicKey, randomUUID, sign, type KeyObject } from 'node:crypto'
import { execFile } from 'node:child_process'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface TokenServerOptions {
  /** Directory for key.pem / cert.pem. */
  dir: string
  service: string
  issuer: string
  users: Record<string, string>
  /** user → repository prefixes it may access ('' = anonymous); absent: users get every repository. */
  acl?: Record<string, string[]>
  anonymousPull?: boolean
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number
}

export interface TokenServer {
  /** `http://127.0.0.1:PORT/token` */
  realm: string
  /** PEM file the registry lists as `rootcertbundle`. */
  certPath: string
  /** Tokens issued so far. */
  issued: () => number
  /** Issue a token directly (for pass-through tests). */
  mint: (subject: string, access: Access[]) => string
  stop: () => Promise<void>
}

export interface Access { type: string, name: string, actions: string[] }

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

function base32 (data: Buffer): string {
  let bits = 0
  let value = 0
  let out = ''
  for (const byte of data) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31]
  return out
}

/** libtrust key id: base32 of the first 240 bits of sha256(SPKI DER), in 12 groups of 4. */
export function libtrustKeyId (publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' })
  const b32 = base32(createHash('sha256').update(der).digest().subarray(0, 30))
  return (b32.match(/.{4}/g) ?? []).join(':')
}

function b64url (data: Buffer | string): string {
  return Buffer.from(data).toString('base64url')
}

function parseScope (scope: string): Access | undefined {
  const first = scope.indexOf(':')
  const last = scope.lastIndexOf(':')
  if (first === -1 || last === first) return undefined
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',').filter(Boolean) }
}

export async function startTokenServer (opts: TokenServerOptions): Promise<TokenServer> {
  const keyPath = join(opts.dir, 'token-key.pem')
  const certPath = join(opts.dir, 'token-cert.pem')
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath,
    '-days', '2', '-subj', '/CN=damselfly-test-token'])
  const privateKey = createPrivateKey(await readFile(keyPath))
  const kid = libtrustKeyId(createPublicKey(privateKey))
  const expiresIn = opts.expiresIn ?? 300
  let issued = 0

  const mint = (subject: string, access: Access[]): string => {
    const now = Math.floor(Date.now() / 1000)
    const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid }))
    const claims = b64url(JSON.stringify({
      iss: opts.issuer, sub: subject, aud: opts.service, exp: now + expiresIn, nbf: now - 10, iat: now, jti: randomUUID(), access
    }))
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), privateKey)
    return `${header}.${claims}.${b64url(signature)}`
  }

  const allowed = (user: string, repository: string, action: string): boolean => {
    if (user === '' && (opts.anonymousPull !== true || action !== 'pull')) return false
    if (opts.acl === undefined) return true
    return (opts.acl[user] ?? []).some((prefix) => repository.startsWith(prefix))
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    if (url.pathname !== '/token') { res.writeHead(404).end(); return }
    if (req.method === 'POST') {
      // OAuth2 (what containerd sends when it has credentials): a form with grant_type, username, password, scope
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => { chunks.push(c) })
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
        if (form.get('grant_type') !== 'password') {
          res.writeHead(400, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ error: 'unsupported_grant_type' }))
          return
        }
        const name = form.get('username') ?? ''
        if (!Object.hasOwn(opts.users, name) || opts.users[name] !== form.get('password')) {
          res.writeHead(401, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ error: 'invalid_grant' }))
          return
        }
        answer(res, name, form.getAll('scope'))
      })
      return
    }
    let user = ''
    const auth = req.headers.authorization
    if (auth !== undefined) {
      const m = /^Basic\s+(.+)$/i.exec(auth)
      const decoded = m === null ? '' : Buffer.from(m[1], 'base64').toString('utf8')
      const sep = decoded.indexOf(':')
      const name = decoded.slice(0, sep)
      if (sep === -1 || !Object.hasOwn(opts.users, name) || opts.users[name] !== decoded.slice(sep + 1)) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="token"' })
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }))
        return
      }
      user = name
    }
    answer(res, user, url.searchParams.getAll('scope'))
  }

  /** A token for `user` granting what it may of the requested scopes. */
  const answer = (res: ServerResponse, user: string, scopes: string[]): void => {
    const access: Access[] = []
    for (const scope of scopes.flatMap((s) => s.split(' '))) {
      const wanted = parseScope(scope)
      if (wanted?.type !== 'repository') continue
      const actions = wanted.actions.filter((a) => allowed(user, wanted.name, a))
      if (actions.length > 0) access.push({ type: 'repository', name: wanted.name, actions })
    }
    const token = mint(user, access)
    issued++
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() }))
  }

  const server: Server = createServer(handle)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { resolve() })
  })
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    realm: `http://127.0.0.1:${port}/token`,
    certPath,
    issued: () => issued,
    mint,
    stop: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}
