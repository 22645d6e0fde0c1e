/**
 * TLS settings for upstream HTTPS (registries, token servers): the system CAs, plus an extra
 * CA bundle (`--ca-file`), or no verification at all (`--insecure-skip-verify`, an explicit
 * opt-in that is logged as a warning).
 */
import { readFileSync } from 'node:fs'
import { rootCertificates } from 'node:tls'
import type { Logger } from 'pino'
import { ConfigError } from '../errors.js'

export interface UpstreamTlsOptions {
  /** PEM bundle trusted in addition to the system CAs. */
  caFile?: string
  /** Do not verify upstream certificates at all. */
  insecureSkipVerify?: boolean
}

/** What undici's `connect` options take. */
export interface UpstreamTls {
  /** The system CAs followed by the extra bundle (Node's `ca` replaces the defaults, so both are given). */
  ca?: string[]
  rejectUnauthorized?: boolean
}

export function loadUpstreamTls (opts: UpstreamTlsOptions, logger: Logger): UpstreamTls | undefined {
  const out: UpstreamTls = {}
  if (opts.caFile != null) {
    let pem: string
    try {
      pem = readFileSync(opts.caFile, 'utf8')
    } catch (err) {
      throw new ConfigError(`cannot read CA file ${opts.caFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`CA file ${opts.caFile} holds no PEM certificate`)
    out.ca = [...rootCertificates, pem]
    logger.info({ component: 'tls', caFile: opts.caFile }, 'upstream HTTPS trusts an extra CA bundle')
  }
  if (opts.insecureSkipVerify === true) {
    out.rejectUnauthorized = false
    logger.warn({ component: 'tls' }, 'upstream TLS certificates are NOT verified (--insecure-skip-verify): anyone on the path can impersonate a registry')
  }
  return out.ca === undefined && out.rejectUnauthorized === undefined ? undefined : out
}
