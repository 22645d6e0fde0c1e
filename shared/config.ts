import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { Type, type Static, type TObject } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { ConfigError } from './errors.js'

/**
 * Typed configuration: defaults, then a YAML/JSON config file, then command-line
 * flags, checked against one schema. An unknown key or a bad value stops startup
 * with one line naming the key. Only entry points call this; components receive
 * the resulting object.
 */
export function loadConfig<S extends TObject> (schema: S, defaults: Static<S>, options: { file?: string, flags?: Record<string, unknown> }): Static<S> {
  const fromFile = options.file != null ? readConfigFile(options.file) : {}
  const flags = Object.fromEntries(Object.entries(options.flags ?? {}).filter(([, v]) => v !== undefined))
  const merged: Record<string, unknown> = { ...defaults, ...fromFile, ...flags }
  for (const key of Object.keys(merged)) {
    // own keys only: `in` would let toString, constructor or __proto__ through as known
    if (!Object.hasOwn(schema.properties, key)) throw new ConfigError(`unknown configuration key "${key}"`)
  }
  const converted = Value.Convert(schema, merged) as Record<string, unknown>
  const first = Value.Errors(schema, converted).First()
  if (first != null) {
    const key = first.path.replace(/^\//, '').replace(/\//g, '.') || '(root)'
    throw new ConfigError(`invalid value for "${key}": ${first.message}`)
  }
  return converted as Static<S>
}

function readConfigFile (path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
  }
  let value: unknown
  try {
    value = parseYaml(text)
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  if (value == null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`config file ${path} must hold a mapping of keys to values`)
  return value as Record<string, unknown>
}

/** Parse a byte size: 1048576, 512K, 100M, 2G (binary units); undefined passes through. */
export function parseBytes (input: string | number | undefined): number | undefined {
  if (input === undefined || typeof input === 'number') return input
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(input.trim())
  if (m == null) throw new ConfigError(`not a byte size: "${input}"`)
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T']
  return Math.floor(Number(m[1]) * mult)
}

/** A config value in bytes: an integer, or a size with a binary unit (512K, 100M, 2G). */
export const ByteSize = Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: '^\\d+(\\.\\d+)?\\s*[KMGTkmgt]?i?[Bb]?$' })])
