import { pino, type Logger, type LoggerOptions } from 'pino'

export type { Logger }

export interface LoggingConfig {
  level: string
  /** Process name, e.g. supernode or dfdaemon. */
  name: string
}

/** Paths that may hold credentials; pino replaces them before a line is written. */
export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'request.headers.authorization',
  'credentials',
  'password',
  'token',
  '*.authorization',
  '*.password',
  '*.token',
  // cookies, proxy credentials, tickets and bearer secrets, at the top level, in headers, one level down
  'headers.cookie',
  'headers["proxy-authorization"]',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'request.headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  'ticket',
  '*.ticket',
  'psk',
  'apiToken',
  '*.apiToken'
]

/** The process logger: structured JSON on stderr, credentials redacted. Components take `.child({ component })`. */
export function createLogger (config: LoggingConfig, destination: NodeJS.WritableStream = process.stderr): Logger {
  const options: LoggerOptions = {
    name: config.name,
    level: config.level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid }
  }
  return pino(options, destination as pino.DestinationStream)
}
