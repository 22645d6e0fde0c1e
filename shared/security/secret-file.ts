/**
 * Files that hold secrets (swarm key, API token, TLS key, node key): read them
 * and warn when group or others may read them. Secrets come from files, never
 * from command-line arguments (visible to every user in `ps`).
 */
import { readFileSync, statSync } from 'node:fs'
import type { Logger } from 'pino'
import { ConfigError } from '../errors.js'

/** True when the file's mode lets group or others read or write it. */
export function exposedMode (mode: number): boolean {
  return (mode & 0o077) !== 0
}

/** Log a warning if `path` is readable by group/others; `what` names it in the line (never its content). */
export function warnIfExposed (path: string, what: string, logger: Logger): void {
  try {
    const st = statSync(path)
    if (exposedMode(st.mode)) {
      logger.warn({ component: 'security', file: path, mode: (st.mode & 0o777).toString(8) }, `${what} file is readable by group or others; chmod 600 it`)
    }
  } catch { /* reported by the read */ }
}

/** Read a secret file as bytes (warning when others can read it); a missing file stops startup. */
export function readSecretFile (path: string, what: string, logger: Logger): Buffer {
  let data: Buffer
  try {
    data = readFileSync(path)
  } catch (err) {
    throw new ConfigError(`cannot read ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
  }
  warnIfExposed(path, what, logger)
  return data
}

/** An operator API token from its file: the first line, trimmed; at least 16 characters. */
export function readTokenFile (path: string, logger: Logger): string {
  const token = readSecretFile(path, 'API token', logger).toString('utf8').split(/\r?\n/)[0].trim()
  if (token.length < 16) throw new ConfigError(`API token in ${path} is too short (16 characters at least)`)
  return token
}
