/**
 * An in-process Docker registry token server (the distribution token-auth spec): RS256 JWTs
 * whose `kid` is the libtrust key id of a key the registry trusts through a self-signed cert.
 * GET with Basic credentials (or none), and the OAuth2 POSTs of distribution's OAuth spec: a
 * `password` grant (with `access_type=offline` it also issues a refresh token, what
 * `docker login` stores as `identitytoken`) and a `refresh_token` grant that takes one back.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto'
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
  /** OAuth2 POSTs answered with a token so far, by grant type (`password`, `refresh_token`). */
  grants: (type: string) => number
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
  const grants = new Map<string, number>()
  /** refresh token → user */
  const refreshTokens = new Map<string, string>()

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
      // OAuth2: containerd's password grant (username, password, scope); a refresh_token grant
      // (refresh_token, client_id, service, scope) for a refresh token issued here
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => { chunks.push(c) })
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
        const oauthError = (status: number, error: string): void => {
          res.writeHead(status, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ error }))
        }
        const grant = form.get('grant_type')
        if (grant === 'refresh_token') {
          if ((form.get('client_id') ?? '') === '' || form.get('service') !== opts.service) { oauthError(400, 'invalid_request'); return }
          const user = refreshTokens.get(form.get('refresh_token') ?? '')
          if (user === undefined) { oauthError(400, 'invalid_grant'); return }
          grants.set(grant, (grants.get(grant) ?? 0) + 1)
          answer(res, user, form.getAll('scope'))
          return
        }
        if (grant !== 'password') { oauthError(400, 'unsupported_grant_type'); return }
        const name = form.get('username') ?? ''
        if (!Object.hasOwn(opts.users, name) || opts.users[name] !== form.get('password')) { oauthError(401, 'invalid_grant'); return }
        let refreshToken: string | undefined
        if (form.get('access_type') === 'offline') {
          refreshToken = randomBytes(24).toString('base64url')
          refreshTokens.set(refreshToken, name)
        }
        grants.set(grant, (grants.get(grant) ?? 0) + 1)
        answer(res, name, form.getAll('scope'), refreshToken)
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

  /** A token for `user` granting what it may of the requested scopes (and a refresh token, if one was issued). */
  const answer = (res: ServerResponse, user: string, scopes: string[], refreshToken?: string): void => {
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
    res.end(JSON.stringify({ token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString(), ...(refreshToken !== undefined ? { refresh_token: refreshToken } : {}) }))
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
    grants: (type: string) => grants.get(type) ?? 0,
    mint,
    stop: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}
