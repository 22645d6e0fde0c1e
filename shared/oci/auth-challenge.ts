/**
 * `WWW-Authenticate` parsing (RFC 9110 §11.6.1): one header may carry several challenges,
 * each a scheme followed by a token68 or comma-separated `name=value` / `name="quoted"` params.
 */

export interface Challenge {
  /** Lowercased scheme: `basic`, `bearer`, or whatever else the server sent. */
  scheme: 'basic' | 'bearer' | string
  /** Lowercased parameter names; quoted values unescaped. */
  params: Record<string, string>
  /** A bare token68 after the scheme, if the challenge carried one instead of params. */
  token68?: string
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/=]/

class Scanner {
  pos = 0
  constructor (readonly s: string) {}

  get done (): boolean { return this.pos >= this.s.length }
  peek (): string { return this.s[this.pos] ?? '' }

  skipWs (): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++
  }

  /** Skip whitespace and commas (empty list elements are allowed). */
  skipSeparators (): void {
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === ',') this.pos++
  }

  token (): string {
    const start = this.pos
    while (!this.done && TCHAR.test(this.peek())) this.pos++
    return this.s.slice(start, this.pos)
  }

  quoted (): string {
    this.pos++ // opening quote
    let out = ''
    while (!this.done) {
      const c = this.s[this.pos++]
      if (c === '"') return out
      if (c === '\\' && !this.done) out += this.s[this.pos++]
      else out += c
    }
    return out // unterminated: take what there is
  }
}

/** Is the text at the scanner a `name=` (a parameter) rather than the next challenge's scheme? */
function atParam (sc: Scanner): boolean {
  const save = sc.pos
  const name = sc.token()
  sc.skipWs()
  const isParam = name !== '' && sc.peek() === '=' && sc.s[sc.pos + 1] !== '='
  sc.pos = save
  return isParam
}

function readToken68 (sc: Scanner): string | undefined {
  const start = sc.pos
  while (!sc.done && TOKEN68_CHAR.test(sc.peek())) sc.pos++
  const end = sc.pos
  sc.skipWs()
  if (end > start && (sc.done || sc.peek() === ',')) return sc.s.slice(start, end)
  sc.pos = start
  return undefined
}

/** Parse every challenge in a `WWW-Authenticate` header; unparseable tails are dropped. */
export function parseChallenges (header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return []
  if (Array.isArray(header)) return header.flatMap((h) => parseChallenges(h))
  const sc = new Scanner(header)
  const out: Challenge[] = []
  for (;;) {
    sc.skipSeparators()
    if (sc.done) break
    const scheme = sc.token()
    if (scheme === '') break // garbage: stop rather than guess
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} }
    out.push(challenge)
    sc.skipWs()
    if (!atParam(sc)) {
      const t68 = readToken68(sc)
      if (t68 !== undefined) challenge.token68 = t68
    }
    for (;;) {
      sc.skipSeparators()
      if (sc.done || !atParam(sc)) break
      const name = sc.token().toLowerCase()
      sc.skipWs()
      sc.pos++ // '='
      sc.skipWs()
      const value = sc.peek() === '"' ? sc.quoted() : sc.token()
      if (!Object.hasOwn(challenge.params, name)) challenge.params[name] = value
    }
  }
  return out
}

/** The first challenge with `scheme`, if any. */
export function findChallenge (challenges: Challenge[], scheme: 'basic' | 'bearer'): Challenge | undefined {
  return challenges.find((c) => c.scheme === scheme)
}
